"""The sharded transitions stream end to end, on a single Redis and on a Redis Cluster: the
controller's real sink writes each cell to its shard, the trainer's real worker reads every
shard through consumer groups, persists, acknowledges, and re-claims what a crash left pending.
"""

from __future__ import annotations

import pytest

from controller.sinks import RedisStreamSink
from slicetwin.ops.simfeed import sim_transitions
from slicetwin.platform.redis_client import connect
from slicetwin.platform.stream_shards import shard_keys, shard_of
from slicetwin.registry.store import MemoryRegistry
from tests.support.worker import STREAM, fast_settings
from trainer.worker import TrainerWorker


def _worker(tmp_path, url, shards, name="trainer-1", **kw):
    s = fast_settings(tmp_path, url, consumer_name=name, transition_shards=shards, **kw)
    return TrainerWorker(s, registry=MemoryRegistry())


def _write(url, shards, transitions, **kw) -> list[tuple[str, int]]:
    sink = RedisStreamSink(url, STREAM, shards=shards, **kw)
    ts = list(transitions)
    sink.put_many(ts)
    assert sink.flush(20), f"sink held {len(sink)} ({sink.last_error})"
    sink.close()
    assert sink.written == len(ts) and sink.dropped == 0
    return [(t.cell_id, t.window) for t in ts]


def _stored(w: TrainerWorker) -> list[tuple[int, int]]:
    data, _ = w.store.load()
    return list(zip(data.cell.tolist(), data.window.tolist(), strict=True))


def _expected(pairs):
    from slicetwin.core.transition_wire import cell_number

    return sorted((cell_number(c), win) for c, win in pairs)


@pytest.mark.parametrize("shards", [1, 4])
def test_sink_to_worker_through_every_shard(tmp_path, any_redis_url, shards):
    sent = _write(any_redis_url, shards, sim_transitions(cells=24, windows=30, seed=1))
    r = connect(any_redis_url)
    keys = shard_keys(STREAM, shards)
    lengths = [r.xlen(k) for k in keys]
    assert sum(lengths) == len(sent) == 720 and all(n > 0 for n in lengths)
    first = sim_transitions(cells=24, windows=1, seed=1)
    for t in first:  # each cell went to its own shard only
        sid, fields = r.xrange(keys[shard_of(t.cell_id, shards)], count=1000)[0]
        assert fields  # the shard holds entries (its cells' windows)
    w = _worker(tmp_path, any_redis_url, shards)
    assert w.ingest() == 720
    assert sorted(_stored(w)) == _expected(sent)
    assert all(r.xpending(k, "trainer")["pending"] == 0 for k in keys)
    assert w.source.lag() == 0
    w.close()
    r.close()


def test_restart_across_crash_windows_on_every_shard(tmp_path, any_redis_url):
    """Delivered-not-persisted and persisted-not-acknowledged entries on several shards: the
    restarted worker re-reads its pending entries and stores each transition once."""
    from slicetwin.core.transition_wire import to_transitions

    shards = 3
    sent = _write(any_redis_url, shards, sim_transitions(cells=12, windows=20, seed=2))
    w = _worker(tmp_path, any_redis_url, shards, read_count=40)
    lost = w.source.poll(40, 0)  # crash window 1: delivered, never persisted
    p = w.source.poll(40, 0)  # crash window 2: persisted, never acknowledged
    assert lost.ids and p.ids and all("@" in i for i in p.ids)
    w.store.append(to_transitions(p.entries), p.ids)
    w.close()
    w2 = _worker(tmp_path, any_redis_url, shards)
    w2.ingest()
    assert sorted(_stored(w2)) == _expected(sent)
    _, ids = w2.store.load()
    assert len(set(ids.tolist())) == len(ids) == 240
    assert w2.skipped_duplicates == len(p.ids)
    w2.close()


def test_a_dead_consumers_pending_entries_are_claimed(tmp_path, any_redis_url):
    shards = 2
    sent = _write(any_redis_url, shards, sim_transitions(cells=6, windows=10, seed=3))
    dead = _worker(tmp_path / "dead", any_redis_url, shards, name="trainer-dead")
    got = dead.source.poll(1000, 0)  # delivered to a consumer that never comes back
    assert len(got.ids) > 0
    dead.source.close()
    w = _worker(tmp_path / "new", any_redis_url, shards, name="trainer-new")
    w.source.claim_idle_ms = 0  # (deployments: a minute)
    w.ingest()
    assert sorted(_stored(w)) == _expected(sent)
    assert w.source.claimed == len(got.ids)
    w.close()


def test_shard_settings_resolve_the_same_on_both_sides(any_redis_url):
    from controller.settings import ControllerSettings
    from trainer.worker import WorkerSettings

    c = ControllerSettings(redis_url=any_redis_url)
    t = WorkerSettings(redis_url=any_redis_url)
    sink = RedisStreamSink(any_redis_url, c.registry_prefix + c.transitions_stream,
                           shards=c.transition_shards)
    w = TrainerWorker(t, registry=MemoryRegistry())
    assert sink.keys == w.source.keys
    assert len(sink.keys) == (6 if "cluster" in any_redis_url else 1)
    assert sink.wait_replicas == (1 if "cluster" in any_redis_url else 0)
    sink.close()
    w.close()
