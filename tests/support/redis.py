"""A private redis-server a test (or a module, or the session) owns, flushed where asked."""

from __future__ import annotations

import queue
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from slicetwin.ops.procs import RedisServer
from slicetwin.ops.redis_cluster import RedisCluster
from slicetwin.platform.redis_client import connect


@contextmanager
def private_redis(workdir: Path) -> Iterator[RedisServer]:
    """Start one on a free port (skip the test when the binary is missing); stop it after."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    srv = RedisServer(workdir=workdir).start()
    try:
        yield srv
    finally:
        srv.stop()


def flushed(srv: RedisServer) -> str:
    """``srv``'s URL, with nothing left from an earlier test."""
    r = redis.Redis.from_url(srv.url)
    r.flushall()
    r.close()
    return srv.url


@contextmanager
def private_cluster(workdir: Path | None = None, masters: int = 3,
                    replicas: int = 1) -> Iterator[RedisCluster]:
    """A real local Redis Cluster (3 masters, a replica each) on free ports; skips the test
    when redis-server or redis-cli is missing; killed and removed after."""
    missing = RedisCluster.available()
    if missing:
        pytest.skip(f"no local Redis Cluster: {missing}")
    with RedisCluster(masters, replicas, workdir=workdir) as c:
        yield c


def flushed_cluster(c: RedisCluster) -> str:
    """``c``'s URL, every master flushed (and its replicas with it)."""
    r = connect(c.url)
    r.flushall(target_nodes="primaries")
    r.close()
    return c.url


def drain_until(q: queue.Queue, want: str, timeout: float = 5.0) -> list:
    """Read a registry watcher's deliveries until ``want`` arrives; returns what was seen."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = q.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(v)
        if v == want:
            return seen
    raise AssertionError(f"watcher never delivered {want!r} (saw {seen})")
