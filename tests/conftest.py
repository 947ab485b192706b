"""Fixtures every layer shares: a real, private redis-server on a free port, development mode.
Helpers (processes, Redis, ports, paths) live in ``tests/support``."""

from __future__ import annotations

import os

import pytest

from tests.support.paths import PYTHON, ROOT  # noqa: F401 - fixtures below and older imports
from tests.support.redis import flushed, flushed_cluster, private_cluster, private_redis

# The suite runs in development mode (public development keys and no API key accepted), like
# `slicetwin demo`; child processes inherit it. Tests of the production refusals remove it
# (monkeypatch.delenv / an explicit environment), tests/*/test_security_*.py.
os.environ["SLICETWIN_ENV"] = "dev"
# Most tests exercise a served model, so the suite starts services from a random student as the
# demo does (cold_start=init); the safe-heuristic cold start of a deployment has its own tests,
# which set the cold start explicitly (tests/integration/test_cold_start.py).
os.environ["SLICETWIN_COLD_START"] = "init"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    with private_redis(tmp_path_factory.mktemp("redis")) as srv:
        yield srv


@pytest.fixture()
def redis_url(redis_server):
    """URL of the private Redis, flushed before each test."""
    return flushed(redis_server)


@pytest.fixture(scope="session")
def redis_cluster():
    """A real Redis Cluster (3 masters with a replica each) shared by the session; tests that
    kill a master start their own (tests.support.redis.private_cluster)."""
    with private_cluster() as c:
        yield c


@pytest.fixture()
def cluster_url(redis_cluster):
    """``redis+cluster://`` URL of the session's cluster, flushed before each test."""
    return flushed_cluster(redis_cluster)


@pytest.fixture(params=["single", "cluster"])
def any_redis_url(request):
    """The same test on a single Redis and on a Redis Cluster."""
    return request.getfixturevalue("redis_url" if request.param == "single" else "cluster_url")


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
