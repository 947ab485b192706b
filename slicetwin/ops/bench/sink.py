"""``slicetwin bench sink``: the controller's transitions writer against a real Redis.

Times ``RedisStreamSink`` (the controller's sink: one Lua ``XADD`` call per shard and batch)
writing ``transitions`` synthetic transitions of ``cells`` cells, on a private single
redis-server (with one replica when ``wait_replicas`` > 0) or a private 3-master Redis Cluster
(a replica each), with and without the durability step (``WAIT`` for a replica after each call).
One JSON line per configuration: wall rate, and the writer's CPU per transition.
"""

from __future__ import annotations

import time

from controller.sinks import RedisStreamSink
from slicetwin.core.transition_wire import Transition
from slicetwin.ops.procs import RedisServer
from slicetwin.ops.redis_cluster import RedisCluster
from slicetwin.platform.redis_client import connect


def _transitions(n: int, cells: int) -> list[Transition]:
    ts = time.time()
    return [Transition(f"cell-{i % cells}", 1_000_000 + i // cells, [0.1, 0.2, 0.3], 7, 0.5,
                       1.25, [0.2, 0.3, 0.4], [110.0, 1240.0, 12.0], [108.0, 400.0, 9.0], 1.7,
                       "v1", False, False, ts) for i in range(n)]


def _time_sink(url: str, items: list[Transition], shards: int, wait_replicas: int,
               batch: int) -> dict:
    sink = RedisStreamSink(url, "bench:transitions", shards=shards,
                           wait_replicas=wait_replicas, batch=batch, buffer=len(items) + 1)
    sink.put_many(items[:batch])  # warm up: scripts loaded, connections open
    sink.flush(30)
    sink.start()
    t0 = time.perf_counter()
    p0 = time.process_time()
    sink.put_many(items)
    ok = sink.flush(600)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - p0
    sink.close()
    if not ok:
        raise RuntimeError(f"sink did not drain ({sink.last_error})")
    return {"transitions": len(items), "seconds": round(dt, 3),
            "transitions_per_s": round(len(items) / dt), "cpu_us_per_transition":
            round(cpu / len(items) * 1e6, 2), "shards": len(sink.keys),
            "unconfirmed_waits": sink.unconfirmed_waits, "resent": sink.resent}


def run_sink_bench(redis: str = "single", wait_replicas: int = 0, transitions: int = 50_000,
                   cells: int = 256, shards: int = 0, batch: int = 2000) -> dict:
    items = _transitions(transitions, cells)
    base = {"bench": "sink", "redis": redis, "wait_replicas": wait_replicas, "cells": cells,
            "batch": batch}
    if redis == "cluster":
        with RedisCluster(3, 1) as c:
            return {**base, **_time_sink(c.url, items, shards, wait_replicas, batch)}
    if redis != "single":
        raise ValueError(f"redis must be single or cluster, not {redis!r}")
    master = RedisServer().start()
    replica = None
    try:
        if wait_replicas:
            replica = RedisServer(extra_args=["--replicaof", "127.0.0.1",
                                              str(master.port)]).start()
            _wait_replica(master.url)
        return {**base, **_time_sink(master.url, items, shards, wait_replicas, batch)}
    finally:
        if replica is not None:
            replica.cleanup()
        master.cleanup()


def _wait_replica(url: str, timeout: float = 20.0) -> None:
    r = connect(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            info = r.info("replication")
            if info.get("connected_slaves", 0) >= 1 and info.get("slave0", {}).get(
                    "state") == "online":
                return
            time.sleep(0.05)
    finally:
        r.close()
    raise RuntimeError("the replica did not come online")
