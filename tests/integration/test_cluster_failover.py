"""Failover of a real Redis Cluster's master: what SliceTwin wrote survives, and it goes on.

Each test starts its own cluster (3 masters, a replica each; ``cluster-node-timeout`` 1 s) and
SIGKILLs the master that holds the slot under test; ``RedisCluster.kill_master`` returns once a
replica has taken over and the cluster says ``cluster_state:ok``.
"""

from __future__ import annotations

import queue
import threading
import time

import pytest

from controller.cells import CellMemory, Close, RedisCellStore
from controller.sinks import RedisStreamSink
from slicetwin.core.transition_wire import Transition, cell_number, decode
from slicetwin.ops.simfeed import sim_transitions
from slicetwin.platform.redis_client import connect
from slicetwin.registry.store import MemoryRegistry, RedisRegistry
from tests.support.redis import drain_until, private_cluster
from tests.support.worker import STREAM, fast_settings
from trainer.worker import TrainerWorker

KEY = "test-key"


@pytest.fixture()
def own_cluster(tmp_path):
    with private_cluster(tmp_path / "cluster") as c:
        yield c




def test_registry_survives_failover_of_its_master(own_cluster):
    """Promote, kill the master of the ``{models}`` slot, wait for the failover: the promoted
    version is still served, and a new promotion, a rollback and the watcher all work."""
    reg = RedisRegistry(own_cluster.url, KEY)
    reg.publish("policy", b"one", version="v1", promote=True)
    reg.publish("policy", b"two", version="v2", promote=True)
    q: queue.Queue = queue.Queue()
    w = reg.watch("policy", q.put, poll_s=0.05)
    try:
        drain_until(q, "v2")
        master = own_cluster.master_for_key(reg._k("policy", "current"))
        own_cluster.kill_master(master)
        assert own_cluster.master_for_key(reg._k("policy", "current")) != master
        assert reg.fetch_served("policy")[0].version == "v2"  # replicated before the kill
        assert reg.history("policy") == ["v1"]
        reg.publish("policy", b"three", version="v3", promote=True)
        drain_until(q, "v3")
        assert reg.rollback("policy") == "v2"
        drain_until(q, "v2")
        fresh = RedisRegistry(own_cluster.url, KEY)  # a service started after the failover
        assert fresh.fetch_served("policy")[0].version == "v2"
        fresh.close()
    finally:
        w.stop()
        reg.close()


@pytest.mark.slow  # ~20 s: a cluster, a failover, a restart and the drain
def test_no_transition_lost_across_a_shard_failover(own_cluster, tmp_path):
    """The controller's sink and the trainer's worker run while the master of one shard is
    SIGKILLed: the sink keeps what no replica confirmed and sends it again to the new master,
    the worker re-joins its consumer groups; every (cell, window) ends up in the dataset once.
    The killed node then returns (as a replica), so the shard is replicated again."""
    resent: list[int] = []
    sink = RedisStreamSink(own_cluster.url, STREAM, shards=6, flush_interval_s=0.01, batch=300,
                           on_resent=resent.append)
    sink.start()
    s = fast_settings(tmp_path, own_cluster.url, transition_shards=6, min_transitions=10**9,
                      backoff_initial_s=0.05, backoff_max_s=0.3)
    w = TrainerWorker(s, registry=MemoryRegistry())
    w.start_ingest()
    feed = sim_transitions(cells=30, windows=10_000, seed=21)
    sent: list[tuple[str, int]] = []
    stop = threading.Event()

    def produce() -> None:  # one window of 30 cells every 10 ms (3,000 transitions/s)
        while not stop.is_set():
            ts = [next(feed) for _ in range(30)]
            sink.put_many(ts)
            sent.extend((t.cell_id, t.window) for t in ts)
            time.sleep(0.01)

    _fail_over_shard_zero_while(produce, stop, own_cluster, sink)
    assert sink.flush(30), f"sink still holds {len(sink)} ({sink.last_error})"
    assert sink.dropped == 0 and sink.written == len(sent) and sink.unconfirmed == 0
    assert sum(resent) == sink.resent  # what slicetwin_transitions_resent_total counts
    want = sorted((cell_number(c), win) for c, win in sent)
    deadline = time.time() + 30
    got: list = []
    while time.time() < deadline:
        data, _ = w.store.load()
        got = sorted(zip(data.cell.tolist(), data.window.tolist(), strict=True))
        if len(got) >= len(want):
            break
        time.sleep(0.2)
    w.close()
    sink.close()
    missing = set(want) - set(got)
    assert not missing, f"{len(missing)} of {len(want)} transitions lost"
    assert got == want  # each (cell, window) once in what training reads
    print(f"\nshard failover: {len(want)} transitions, {sink.resent} re-sent, "
          f"{len(w.store) - len(want)} duplicate rows on disk (dropped when loading), "
          f"{sink.unconfirmed_waits} unconfirmed WAITs")


@pytest.mark.slow  # ~20 s: a cluster, a failover, a restart
def test_transitions_closed_in_the_commit_survive_a_shard_failover(own_cluster):
    """The controller's default on a cluster: each commit appends its transition to the cell's
    shard (same slot as the cell's memory) and hands it to the sink, which only confirms it on
    a replica (SINK_WAIT_REPLICAS 1). The master of shard 0 is SIGKILLed under load: what the
    old master acknowledged but had not replicated is sent again by the sink to the new master,
    so every transition a commit closed is in the stream afterwards (duplicates are allowed:
    the trainer keeps one per (cell, window))."""
    sink = RedisStreamSink(own_cluster.url, "f:transitions", shards=6, flush_interval_s=0.01)
    sink.start()
    store = RedisCellStore(own_cluster.url, "f:", timeout_s=0.5, streams=sink.keys)
    assert sink.confirms_written and store.closes_transitions
    cells = [f"f{i}" for i in range(30)]
    closed: list[tuple[str, int]] = []
    stop = threading.Event()

    def produce() -> None:  # one window of 30 cells every 10 ms, each cell its own commit
        w = 0
        while not stop.is_set():
            for cid in cells:
                close = Close(f'["{cid}",{w},', "0.5,0.25,[0.1,0.2,0.3],[1,2,3],[1,1,1],1.5",
                              "1.0")
                try:
                    prev = store.commit(cid, CellMemory(w, [0.1, 0.2, 0.3], 3, "v", False,
                                                        False), close)
                except Exception:  # noqa: BLE001 - failing over: the real store holds it
                    continue
                if prev is not None and prev.window == w - 1:
                    closed.append((cid, w))
                    sink.put_written(Transition(cid, w, prev.state, 3, 0.5, 0.25,
                                                [0.1, 0.2, 0.3], [1, 2, 3], [1, 1, 1], 1.5,
                                                "v", False, False, 1.0))
            w += 1
            time.sleep(0.01)

    _fail_over_shard_zero_while(produce, stop, own_cluster, sink)
    assert sink.flush(30), f"sink still holds {len(sink)} ({sink.last_error})"
    assert sink.unconfirmed == 0 and sink.written == len(closed)
    r = connect(own_cluster.url)
    stored = [(t["cell_id"], t["window"]) for key in sink.keys
              for _, f in r.xrange(key) for t in [decode(f)]]
    r.close()
    missing = set(closed) - set(stored)
    assert not missing, f"{len(missing)} of {len(closed)} closed transitions lost"
    print(f"\nin-commit shard failover: {len(closed)} closed, {sink.resent} re-sent, "
          f"{len(stored) - len(set(stored))} duplicate entries")
    store.close()
    sink.close()


def _fail_over_shard_zero_while(produce, stop: threading.Event, cluster, sink) -> None:
    """Run ``produce`` in a thread while the master of the sink's shard 0 is SIGKILLed (the call
    returns once its replica took over) and restarted (back as the new master's replica)."""
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        time.sleep(1.0)
        victim = cluster.master_for_key(sink.keys[0])
        cluster.kill_master(victim)
        time.sleep(1.0)
        cluster.restart(victim)
        time.sleep(0.5)
    finally:
        stop.set()
        producer.join(5)
