"""Failover of a real Redis Cluster's master: what SliceTwin wrote survives, and it goes on.

Each test starts its own cluster (3 masters, a replica each; ``cluster-node-timeout`` 1 s) and
SIGKILLs the master that holds the slot under test; ``RedisCluster.kill_master`` returns once a
replica has taken over and the cluster says ``cluster_state:ok``.
"""

from __future__ import annotations

import queue
import time

import pytest

from slicetwin.registry.store import RedisRegistry
from tests.support.redis import private_cluster

KEY = "test-key"


@pytest.fixture()
def own_cluster(tmp_path):
    with private_cluster(tmp_path / "cluster") as c:
        yield c


def _until(q: queue.Queue, want: str, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        try:
            v = q.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(v)
        if v == want:
            return
    raise AssertionError(f"watcher never delivered {want!r} (saw {seen})")


def test_registry_survives_failover_of_its_master(own_cluster):
    """Promote, kill the master of the ``{models}`` slot, wait for the failover: the promoted
    version is still served, and a new promotion, a rollback and the watcher all work."""
    reg = RedisRegistry(own_cluster.url, KEY)
    reg.publish("policy", b"one", version="v1", promote=True)
    reg.publish("policy", b"two", version="v2", promote=True)
    q: queue.Queue = queue.Queue()
    w = reg.watch("policy", q.put, poll_s=0.05)
    try:
        _until(q, "v2")
        master = own_cluster.master_for_key(reg._k("policy", "current"))
        own_cluster.kill_master(master)
        assert own_cluster.master_for_key(reg._k("policy", "current")) != master
        assert reg.fetch_served("policy")[0].version == "v2"  # replicated before the kill
        assert reg.history("policy") == ["v1"]
        reg.publish("policy", b"three", version="v3", promote=True)
        _until(q, "v3")
        assert reg.rollback("policy") == "v2"
        _until(q, "v2")
        fresh = RedisRegistry(own_cluster.url, KEY)  # a service started after the failover
        assert fresh.fetch_served("policy")[0].version == "v2"
        fresh.close()
    finally:
        w.stop()
        reg.close()
