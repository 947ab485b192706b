"""Shared fixtures: a real, private redis-server on a free port; free ports; the shared venv."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# The suite runs in development mode (public development keys and no API key accepted), like
# `slicetwin demo`; child processes inherit it. Tests of the production refusals remove it
# (monkeypatch.delenv / an explicit environment), tests/test_security_*.py.
os.environ["SLICETWIN_ENV"] = "dev"


def sign_dev(path, kind: str) -> None:
    """Write ``<path>.sig`` with the public development promotion key: what a model file needs
    to be loaded by a service in development mode (``slicetwin models sign`` in production)."""
    from slicetwin.core.signing import DEV_PROMOTION_KEY, Signer
    from slicetwin.registry.model_files import sign_file

    sign_file(path, Signer(DEV_PROMOTION_KEY), kind)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throw-away redis-server we own, so tests may stop and restart it."""

    def __init__(self, port: int, workdir: Path, extra_args: list[str] | None = None):
        self.port = port
        self.extra_args = list(extra_args or [])
        self.url = f"redis://127.0.0.1:{port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("redis-server exited (bad arguments or ACL file?)") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    srv = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture()
def redis_url(redis_server):
    """URL of the private Redis, flushed before each test."""
    import redis

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    return redis_server.url


@pytest.fixture()
def cli_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread: on a 2-core machine torch's spinning threads cost up to 5x."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
