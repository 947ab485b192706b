"""A private redis-server a test (or a module, or the session) owns, flushed where asked."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from slicetwin.ops.procs import RedisServer


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
