"""The Redis cell store when Redis goes away: answers from the local cache, window order still
enforced, transitions held, and the compare-and-set re-sync when Redis returns (one replica, two
replicas that both accepted windows, a write whose reply was lost). Real redis-server processes
(RDB snapshots as in the compose file: a stop saves, a start restores), no fakes.
"""

from __future__ import annotations

import shutil
import time

import pytest
import redis
from fastapi.testclient import TestClient

from controller.app import create_app
from controller.cell_cache import ShadowedCellStore
from controller.cells import CellMemory, Close, RedisCellStore, Stored, WindowConflict
from controller.metrics import ControllerMetrics
from controller.sinks import MemorySink
from slicetwin.core.transition_wire import Transition
from slicetwin.ops.procs import RedisServer, free_port
from slicetwin.platform.cell_keys import cell_key
from slicetwin.platform.redis_client import connect
from slicetwin.platform.stream_shards import shard_keys

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server binary not installed")

PREFIX = "t:"


@pytest.fixture()
def rdb_redis(tmp_path):
    """A private Redis that keeps its data across stop/start (RDB saved at shutdown)."""
    srv = RedisServer(free_port(), tmp_path, ["--save", "10 1"])
    srv.start()
    yield srv
    srv.stop()


def _mem(w: int, action: int = 7) -> CellMemory:
    return CellMemory(w, [w / 10, 0.5, 0.1], action, "v1", False, False)


def _t(cell: str, w: int) -> Transition:
    return Transition(cell, w, [0.0] * 3, 7, 1.0, 2.0, [0.0] * 3, [1, 2, 3], [1, 2, 3], 1.0,
                      "v1", False, False, time.time())


def _store(url: str, probe_s: float = 60.0):
    """A shadowed store whose probe thread stays asleep (the test calls try_recover)."""
    m, sink = ControllerMetrics(), MemorySink()
    rs = RedisCellStore(url, PREFIX, timeout_s=0.25)
    return ShadowedCellStore(rs, sink, m, probe_s=probe_s), sink, m


def _decide(store: ShadowedCellStore, cell: str, w: int) -> bool:
    """What the engine does per report: record, then close the transition. True if degraded."""
    prev, held = store.record(cell, _mem(w))
    if prev is not None and prev.window == w - 1:
        if held is None:
            store._sink.put(_t(cell, w))
        else:
            store.hold(held, _t(cell, w))
    return held is not None


def _written(sink: MemorySink) -> list[tuple[str, int]]:
    sink.flush()  # not started: drains in this thread
    return [(t.cell_id, t.window) for t in sink.items]


def _value(m: ControllerMetrics, name: str, **labels) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def _redis_window(url: str, cell: str) -> int | None:
    r = redis.Redis.from_url(url)
    w = r.hget(cell_key(PREFIX, cell), "window")
    r.close()
    return None if w is None else int(w)


def test_outage_answers_from_cache_keeps_order_and_resyncs(rdb_redis):
    store, sink, m = _store(rdb_redis.url)
    for w in range(1, 4):
        for c in ("a", "b"):
            assert _decide(store, c, w) is False
    assert len(_written(sink)) == 4  # windows 2 and 3 of a and b
    rdb_redis.stop()
    t0 = time.perf_counter()
    assert _decide(store, "a", 4) is True  # the call that finds Redis gone: one short timeout
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for w in range(5, 55):
        assert _decide(store, "a", w) is True
    rest = time.perf_counter() - t0
    assert first < 1.0 and rest < 0.25, (first, rest)  # later decisions never ask Redis
    assert not store.up and store.held_transitions() == 51
    # order still enforced from the cache: duplicate 409, backwards 422, nothing held for them
    with pytest.raises(WindowConflict) as e:
        store.record("a", _mem(54))
    assert e.value.kind == "duplicate_window" and e.value.status == 409
    with pytest.raises(WindowConflict) as e:
        store.record("b", _mem(2))
    assert e.value.kind == "window_backwards" and e.value.status == 422
    assert store.try_recover() is False  # Redis still away: nothing changes
    assert _value(m, "slicetwin_cell_store_outages_total") == 1

    rdb_redis.start()
    assert store.try_recover() is True and store.up
    assert _redis_window(rdb_redis.url, "a") == 54 and _redis_window(rdb_redis.url, "b") == 3
    windows = _written(sink)
    assert windows == [(c, w) for w in (2, 3) for c in ("a", "b")] + [("a", w)
                                                                       for w in range(4, 55)]
    assert _value(m, "slicetwin_held_transitions_total", outcome="delivered") == 51
    assert _value(m, "slicetwin_cell_resync_total", outcome="stored") == 1
    assert _value(m, "slicetwin_transitions_dropped_total") == 0
    # the window accepted during the outage is refused by Redis now
    with pytest.raises(WindowConflict) as e:
        store.record("a", _mem(54))
    assert e.value.kind == "duplicate_window"
    assert _decide(store, "a", 55) is False
    store.close()


def test_resync_conflict_newer_memory_wins(rdb_redis):
    """Replica A answers a cell from its cache while B (which reaches Redis) moves the same cell
    on: at A's re-sync B's memory stays, A's held transitions are dropped and counted, and A's
    cache takes B's memory (so A refuses B's windows afterwards)."""
    a, sink_a, ma = _store(rdb_redis.url)
    for w in (1, 2):
        _decide(a, "c", w)
        _decide(a, "quiet", w)
    rdb_redis.stop()
    for w in (3, 4, 5):
        assert _decide(a, "c", w) is True
    assert _decide(a, "quiet", 3) is True
    rdb_redis.start()
    b, sink_b, _ = _store(rdb_redis.url)
    for w in (3, 4):  # B accepts windows A also accepted: only one of them may be stored
        assert _decide(b, "c", w) is False
    assert a.try_recover() is True
    assert _redis_window(rdb_redis.url, "c") == 4  # B's memory, not A's window 5
    assert _redis_window(rdb_redis.url, "quiet") == 3  # A's, nobody else touched it
    held_a = _written(sink_a)
    assert ("quiet", 3) in held_a and not any(c == "c" and w >= 3 for c, w in held_a)
    assert _written(sink_b) == [("c", 3), ("c", 4)]
    assert _value(ma, "slicetwin_cell_resync_total", outcome="conflict") == 1
    assert _value(ma, "slicetwin_held_transitions_total", outcome="conflict") == 3
    assert _value(ma, "slicetwin_transitions_dropped_total") == 3
    with pytest.raises(WindowConflict):  # A's cache now holds B's window 4
        a.record("c", _mem(4))
    assert _decide(a, "c", 5) is False
    a.close()
    b.close()


def test_resync_recognises_its_own_write_after_a_lost_reply(rdb_redis):
    """A commit that reached Redis but whose reply was lost (a hung Redis, a cut connection):
    the replica answered that window from its cache; the re-sync finds its own write (``by``)
    and stores, instead of calling it a conflict and dropping the transition."""
    store, sink, m = _store(rdb_redis.url)
    _decide(store, "c", 1)
    store._redis.commit("c", _mem(2))  # the write lands, its reply never reaches the cache
    rdb_redis.stop()
    assert _decide(store, "c", 2) is True  # answered from the cache (which still had window 1)
    rdb_redis.start()
    assert store.try_recover() is True
    assert _value(m, "slicetwin_cell_resync_total", outcome="conflict") == 0
    assert _written(sink) == [("c", 2)]
    assert _redis_window(rdb_redis.url, "c") == 2
    store.close()


def _close(w: int) -> Close:
    return Close(f'["c",{w},', "1.0,2.0,[0.0,0.0,0.0],[1,2,3],[1,2,3],1.0", "1.5")


def test_a_landed_commit_that_closed_its_transition_is_not_stored_twice(rdb_redis):
    """The CI failure of 2026-12-07 (``windows_accepted_twice: 1`` in ``bench soak``): with
    transitions closed in the commit, a commit that landed (memory and transition in one Lua
    call) but whose reply was lost was answered again from the cache, and its held transition
    went to the sink at the re-sync: the same window twice. The re-sync now sees its own write
    and releases only what the landed commits did not already store."""
    m, sink = ControllerMetrics(), MemorySink()
    rs = RedisCellStore(rdb_redis.url, PREFIX, timeout_s=0.25, streams=(PREFIX + "tr",))
    store = ShadowedCellStore(rs, sink, m, probe_s=60.0)
    assert store.closes_transitions
    for w in (1, 2):
        assert store.record("c", _mem(w), _close(w)) == (_mem(w - 1) if w > 1 else None, None)
    rs.commit("c", _mem(3), _close(3))  # lands with its transition; the reply is "lost"
    rdb_redis.stop()
    for w in (3, 4):  # window 3 again from the cache (it still had 2), then 4
        prev, held = store.record("c", _mem(w), _close(w))
        assert held is not None and prev.window == w - 1
        store.hold(held, _t("c", w))
    rdb_redis.start()
    assert store.try_recover() is True
    r = redis.Redis.from_url(rdb_redis.url)
    in_stream = [int(f[b"t"].split(b",")[1]) for _, f in r.xrange(PREFIX + "tr")]
    r.close()
    assert in_stream == [2, 3]  # by the commits, window 3 once
    assert _written(sink) == [("c", 4)]  # only what no commit stored
    assert _value(m, "slicetwin_held_transitions_total", outcome="already_stored") == 1
    assert _value(m, "slicetwin_held_transitions_total", outcome="delivered") == 1
    assert _value(m, "slicetwin_transitions_written_total") == 1
    assert _redis_window(rdb_redis.url, "c") == 4
    store.close()


def test_a_landed_commit_is_not_stored_twice_on_a_cluster(cluster_url):
    """The same on a Redis Cluster, where the commit appends the transition to the cell's shard
    (the cell's key is in that shard's slot) and the re-sync pushes per shard: the breaker is
    opened by hand here (the shared cluster is not stopped), as a lost reply would open it."""
    m, sink = ControllerMetrics(), MemorySink()
    streams = shard_keys(PREFIX + "tr", 6)
    rs = RedisCellStore(cluster_url, PREFIX, timeout_s=0.25, streams=streams)
    store = ShadowedCellStore(rs, sink, m, probe_s=60.0)
    assert store.closes_transitions and rs.cluster
    other = next(f"d{i}" for i in range(100) if rs.keys.shard(f"d{i}") != rs.keys.shard("c"))
    for w in (1, 2):
        assert store.record("c", _mem(w), _close(w)) == (_mem(w - 1) if w > 1 else None, None)
    rs.commit("c", _mem(3), _close(3))  # lands with its transition; the reply is "lost"
    store._trip(redis.ConnectionError("reply lost"))
    for w in (3, 4):
        prev, held = store.record("c", _mem(w), _close(w))
        assert held is not None and prev.window == w - 1
        store.hold(held, _t("c", w))
    assert store.record(other, _mem(1))[1] is not None  # a second shard in the same re-sync
    assert store.try_recover() is True
    r = connect(cluster_url)
    in_stream = [int(f[b"t"].split(b",")[1]) for _, f in r.xrange(streams[rs.keys.shard("c")])]
    assert in_stream == [2, 3]  # by the commits, window 3 once
    assert int(r.hget(rs.keys.of(other), "window")) == 1
    r.close()
    assert _written(sink) == [("c", 4)]
    assert _value(m, "slicetwin_held_transitions_total", outcome="already_stored") == 1
    assert rs.peek("c").window == 4
    store.close()


def test_probe_thread_resyncs_without_help(rdb_redis):
    """The breaker's own probe (0.1 s here) notices Redis and re-syncs; shutdown while Redis is
    away drops what is held and counts it."""
    store, sink, m = _store(rdb_redis.url, probe_s=0.1)
    _decide(store, "p", 1)
    rdb_redis.stop()
    _decide(store, "p", 2)
    time.sleep(0.3)
    assert not store.up
    rdb_redis.start()
    deadline = time.time() + 10
    while not store.up and time.time() < deadline:
        time.sleep(0.05)
    assert store.up and _written(sink) == [("p", 2)]
    rdb_redis.stop()
    _decide(store, "p", 3)
    store.close()
    assert _value(m, "slicetwin_held_transitions_total", outcome="shutdown") == 1
    assert _value(m, "slicetwin_transitions_dropped_total") == 1


def test_a_key_of_another_type_never_blocks_the_resync(rdb_redis):
    """A held cell whose key became something else than a cell hash while Redis was away
    (WRONGTYPE) is refused at the re-sync; the other cells are stored and the breaker closes."""
    store, sink, m = _store(rdb_redis.url)
    for c in ("ok", "odd"):
        _decide(store, c, 1)
    rdb_redis.stop()
    for c in ("ok", "odd"):
        assert _decide(store, c, 2) is True
    rdb_redis.start()
    r = redis.Redis.from_url(rdb_redis.url)
    r.delete(cell_key(PREFIX, "odd"))
    r.set(cell_key(PREFIX, "odd"), "not a hash")
    r.close()
    assert store.try_recover() is True
    assert _written(sink) == [("ok", 2)]
    assert _value(m, "slicetwin_cell_resync_total", outcome="conflict") == 1
    assert _redis_window(rdb_redis.url, "ok") == 2
    store.close()


def test_every_decision_endpoint_answers_flagged_while_redis_is_away(rdb_redis):
    """The real app (in-process ASGI) with the Redis cell store and the Redis sink: single,
    batch, columnar and KPM answers are 200 and flagged during the outage, all-or-nothing
    order checks still hold from the cache, and after the re-sync the stream has every
    transition once."""

    from controller.settings import ControllerSettings
    from slicetwin.core.transition_wire import decode
    from tests.integration.test_controller import _columnar
    from tests.support.controller import assert_allocation_ok, report
    from tests.unit.controller.test_controller_kpm import kpm

    s = ControllerSettings(redis_url=rdb_redis.url, cell_store="redis", transitions_sink="redis",
                           registry_prefix=PREFIX, cell_store_probe_s=60, model_source="init")
    app = create_app(s)
    cells = app.state.cells
    batch = lambda w: {"reports": [report(f"b{i}", w) for i in range(5)]}  # noqa: E731
    with TestClient(app) as c:
        assert c.post("/v1/reports:batch", json=batch(1)).status_code == 200
        assert c.post("/v1/reports:columns", json=_columnar(
            [report(f"q{i}", 1) for i in range(4)])).status_code == 200
        assert c.post("/v1/reports", json=report("s", 1)).json().get("degraded") is None
        assert c.post("/v1/e2/kpm", json=kpm("k", 1, "label")).status_code == 200
        rdb_redis.stop()
        r = c.post("/v1/reports:batch", json=batch(2))
        assert r.status_code == 200, r.text
        for d in r.json()["decisions"]:
            assert d["degraded"] == "cell_store"
            assert_allocation_ok(d)
        r = c.post("/v1/reports:columns", json=_columnar([report(f"q{i}", 2) for i in range(4)]))
        assert r.status_code == 200 and r.json()["degraded"] == "cell_store"
        r = c.post("/v1/reports", json=report("s", 2))
        assert r.status_code == 200 and r.json()["degraded"] == "cell_store"
        assert_allocation_ok(r.json())
        r = c.post("/v1/e2/kpm", json=kpm("k", 2, "label"))
        assert r.status_code == 200 and r.json()["degraded"] == "cell_store"
        # all or nothing from the cache: one duplicate refuses the batch, nothing moves
        mixed = {"reports": [report("b0", 3), report("b1", 2)]}
        r = c.post("/v1/reports:batch", json=mixed)
        assert r.status_code == 409 and r.json()["detail"][0]["loc"] == [
            "body", "reports", 1, "window"]
        assert c.post("/v1/reports", json=report("b0", 3)).status_code == 200
        m = c.get("/metrics").text
        assert 'slicetwin_degraded_decisions_total{reason="cell_store"} 12.0' in m
        assert "slicetwin_cell_store_up 0.0" in m
        rdb_redis.start()
        assert cells.try_recover()
        again = {"reports": [report(f"b{i}", 2) for i in range(1, 5)]}
        assert c.post("/v1/reports:batch", json=again).status_code == 409  # Redis refuses now
        assert c.post("/v1/reports", json=report("s", 3)).json().get("degraded") is None
        assert app.state.sink.flush(10)
    rr = redis.Redis.from_url(rdb_redis.url)
    keys = [(t["cell_id"], t["window"]) for t in
            (decode(f) for _, f in rr.xrange(PREFIX + "transitions"))]
    rr.close()
    want = ({(f"b{i}", 2) for i in range(5)} | {(f"q{i}", 2) for i in range(4)}
            | {("s", 2), ("s", 3), ("k", 2), ("b0", 3)})
    assert sorted(keys) == sorted(want)


def test_the_controller_acl_user_may_resync(tmp_path):
    """The compose ACL (slicetwin keys init) lets the controller's user run the re-sync
    script: its reads and writes stay inside ``cells:*``."""
    from slicetwin.platform.keys import fresh_keys
    from slicetwin.platform.redis_acl import passwords_from_env, render_acl

    keys = fresh_keys()
    (tmp_path / "users.acl").write_text(render_acl(passwords_from_env(keys), PREFIX))
    srv = RedisServer(free_port(), tmp_path, ["--aclfile", str(tmp_path / "users.acl")])
    srv.start()
    try:
        url = (f"redis://controller:{keys['REDIS_CONTROLLER_PASSWORD']}@127.0.0.1:"
               f"{srv.port}/0")
        rs = RedisCellStore(url, PREFIX)
        rs.commit("c", _mem(1))
        assert rs.push_if_unmoved([("c", 2, _mem(3)), ("new", 5, _mem(5))]) == [Stored(1),
                                                                                 Stored(-1)]
        assert rs.peek("c").window == 3
        rs.close()
    finally:
        srv.stop()
