"""``slicetwin bench ingest``: how fast the worker drains the stream into its durable dataset.

Fills a private redis-server's stream with controller-format transitions (simulator traffic),
then times ``TrainerWorker.ingest()``: XREADGROUP, decode, fsync'd chunk + index, XACK.
This rate bounds the stream cap a deployment needs (docs/trainer_worker.md, the trim bound).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

from slicetwin.ops.procs import free_port, wait_port
from slicetwin.ops.simfeed import sim_transitions, xadd_all
from slicetwin.registry.store import MemoryRegistry
from trainer.worker import TrainerWorker, WorkerSettings


def run_ingest_bench(entries: int = 20_000, read_count: int = 2000) -> dict:
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
        return {"bench": "ingest", "entries": n, "persisted": m, "seconds": round(dt, 3),
                "entries_per_s": round(m / dt), "read_count": read_count,
                "chunks": w.store.n_chunks}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
