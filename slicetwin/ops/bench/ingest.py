"""``slicetwin bench ingest``: how fast the worker drains the stream into its durable dataset.

Fills a private redis-server's stream (or, ``redis="cluster"``, the 6 shards of a private
3-master Redis Cluster, through the controller's sink) with controller-format transitions
(simulator traffic), then times ``TrainerWorker.ingest()``: XREADGROUP, decode, fsync'd chunk +
index, XACK. This rate bounds the stream cap a deployment needs (docs/trainer_worker.md, the
trim bound).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

from controller.sinks import RedisStreamSink
from slicetwin.ops.procs import free_port, wait_port
from slicetwin.ops.redis_cluster import RedisCluster
from slicetwin.ops.simfeed import sim_transitions, xadd_all
from slicetwin.registry.store import MemoryRegistry
from trainer.worker import TrainerWorker, WorkerSettings


def run_ingest_bench(entries: int = 20_000, read_count: int = 2000,
                     redis: str = "single") -> dict:
    if redis == "cluster":
        return _cluster_ingest(entries, read_count)
    if redis != "single":
        raise ValueError(f"redis must be single or cluster, not {redis!r}")
    tmp = tempfile.mkdtemp(prefix="ingest-bench-")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                             "", "--appendonly", "no", "--dir", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        url = f"redis://127.0.0.1:{port}/0"
        cells = 8
        n = xadd_all(url, "slicetwin:transitions",
                     sim_transitions(cells=cells, windows=-(-entries // cells), seed=0))
        w = TrainerWorker(WorkerSettings(redis_url=url, data_dir=tmp + "/trainer",
                                         read_count=read_count), registry=MemoryRegistry())
        t = time.perf_counter()
        m = w.ingest(max_polls=10**6)
        dt = time.perf_counter() - t
        w.close()
        return {"bench": "ingest", "redis": "single", "shards": 1, "entries": n, "persisted": m,
                "seconds": round(dt, 3), "entries_per_s": round(m / dt),
                "read_count": read_count, "chunks": w.store.n_chunks}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def _cluster_ingest(entries: int, read_count: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="ingest-bench-")
    try:
        with RedisCluster(3, 1) as c:
            cells = 8
            sink = RedisStreamSink(c.url, "slicetwin:transitions", wait_replicas=0,
                                   buffer=entries + cells)
            n = sink.put_many(list(sim_transitions(cells=cells, windows=-(-entries // cells),
                                                   seed=0)))
            if not sink.flush(300):
                raise RuntimeError(f"could not fill the cluster's stream ({sink.last_error})")
            sink.close()
            w = TrainerWorker(WorkerSettings(redis_url=c.url, data_dir=tmp + "/trainer",
                                             read_count=read_count), registry=MemoryRegistry())
            t = time.perf_counter()
            m = w.ingest(max_polls=10**6)
            dt = time.perf_counter() - t
            w.close()
            return {"bench": "ingest", "redis": "cluster", "shards": len(sink.keys),
                    "entries": n, "persisted": m, "seconds": round(dt, 3),
                    "entries_per_s": round(m / dt), "read_count": read_count,
                    "chunks": w.store.n_chunks}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
