"""Transitions closed in the cell memory's commit (``controller/cells.py``, issue 18): the Lua
call that stores a cell's memory also appends the transition it closes, so memory and transition
are stored together or not at all. A replica killed right after answering then loses no
transition (tests/system/test_scale_haproxy.py kills one under load); here, on a real
redis-server and on a real Redis Cluster (where a cell's key carries its stream shard's hash
tag), the entries must be the very transitions the sink path writes, for every decision
endpoint, a refused report or batch must write nothing, and on a cluster a batch is all or
nothing per stream shard.
"""

from __future__ import annotations

import time

import pytest
import redis
from fastapi.testclient import TestClient

from controller.app import create_app
from controller.cells import CellMemory, Close, RedisCellStore, WindowConflict
from controller.settings import ControllerSettings
from controller.sinks import RedisStreamSink
from slicetwin.core.actions import ActionCodec
from slicetwin.core.transition_wire import Transition, decode
from slicetwin.platform.redis_client import connect
from slicetwin.platform.stream_shards import shard_keys
from tests.integration.test_controller import _columnar
from tests.support.controller import report
from tests.unit.controller.test_controller_kpm import kpm


def _stream(url: str, prefix: str, shards: int = 1) -> list[dict]:
    r = connect(url)
    try:
        return [decode(f) for key in shard_keys(prefix + "transitions", shards)
                for _, f in r.xrange(key)]
    finally:
        r.close()


def _drive(url: str, prefix: str, in_commit: bool, shards: int) -> tuple[list[dict], str]:
    """The same reports through every endpoint; the stream's transitions and /metrics (on a
    cluster the sink also has each one confirmed by a replica: written_total counts them
    then)."""
    s = ControllerSettings(redis_url=url, cell_store="redis", transitions_sink="redis",
                           registry_prefix=prefix, model_source="init", init_seed=3,
                           transitions_in_commit=in_commit, transition_shards=shards)
    app = create_app(s)
    assert app.state.cells.closes_transitions is in_commit
    alloc = [{"slice": n, "bandwidth_hz": hz, "prb_ratio": hz / 20e6} for n, hz in
             (("volte", 2e6), ("video", 14e6), ("urllc", 4e6))]
    with TestClient(app) as c:
        for w in range(4):
            rep = report("s", w, arrived=(100 + w, 900, 12), se=1.5)
            if w == 2:
                rep["allocation"] = alloc  # the allocation that ran differs: learnt from it
            assert c.post("/v1/reports", json=rep).status_code == 200
            assert c.post("/v1/reports:batch", json={"reports": [
                report(f"b{i}", w, arrived=(50 + i, 700, 5 + w)) for i in range(3)]}
            ).status_code == 200
            assert c.post("/v1/reports:columns", json=_columnar(
                [report(f"q{i}", w) for i in range(2)])).status_code == 200
            assert c.post("/v1/e2/kpm", json=kpm("k", w, "label")).status_code == 200
        # refused: a duplicate single report, a batch with one backward window (all or nothing)
        assert c.post("/v1/reports", json=report("s", 3)).status_code == 409
        bad = {"reports": [report("b0", 4), report("b1", 2)]}
        assert c.post("/v1/reports:batch", json=bad).status_code == 422
        # a gap closes nothing
        assert c.post("/v1/reports", json=report("s", 6)).status_code == 200
        assert app.state.sink.flush(10)
        metrics = c.get("/metrics").text
    return _stream(url, prefix, shards), metrics


@pytest.mark.parametrize("shards", [1, 3, 6])
def test_entries_written_in_the_commit_equal_the_sink_path(any_redis_url, shards):
    """... into the cell's own shard when the stream is sharded (a batch spans shards); on a
    cluster too (one shard: every cell in the bare stream key's slot)."""
    via_commit, m1 = _drive(any_redis_url, "a:", True, shards)
    via_sink, m2 = _drive(any_redis_url, "b:", False, shards)
    key = lambda t: (t["cell_id"], t["window"])  # noqa: E731
    strip = lambda t: {k: v for k, v in t.items() if k != "ts"}  # noqa: E731
    assert len(via_commit) == 3 * (1 + 3 + 2 + 1) == len(via_sink)
    assert sorted(map(strip, via_commit), key=key) == sorted(map(strip, via_sink), key=key)
    learnt = next(t for t in via_commit if key(t) == ("s", 2))  # window 2 reports ``alloc``
    assert learnt["action"] == ActionCodec().encode([10, 70, 20])
    for m in (m1, m2):
        assert "slicetwin_transitions_closed_total 21.0" in m
        assert "slicetwin_transitions_written_total 21.0" in m


def test_reported_allocation_and_previous_memory_form_the_entry(redis_url):
    """Store level: state, action (or the reported one), version and flags come from the
    previous memory, the rest from the report, digits intact; a conflict writes nothing."""
    st = RedisCellStore(redis_url, "c:", streams=("c:transitions",))
    mem = lambda w, a: CellMemory(w, [w / 3, 0.1 + w, 1e-7], a, 'v"1', w == 0, False)  # noqa: E731
    close = lambda w, rep=-1: Close(f'["x",{w},', f"0.5,0.25,{[w / 3, 0.1 + w, 1e-7]},"  # noqa: E731
                                    "[1,2,3],[1,1,1],1.5", "123.5", rep)
    st.commit("x", mem(0, 11), close(0))
    st.commit("x", mem(1, 12), close(1))
    st.commit("x", mem(2, 13), close(2, rep=40))
    try:
        st.commit_many([("y", mem(0, 1)), ("x", mem(2, 14))], [close(0), close(2)])
        raise AssertionError("duplicate accepted")
    except WindowConflict as e:
        assert e.kind == "duplicate_window"
    rows = _stream(redis_url, "c:")
    assert [(t["window"], t["action"]) for t in rows] == [(1, 11), (2, 40)]
    first = rows[0]
    assert first["state"] == [0.0, 0.1, 1e-7] and first["next_state"] == [1 / 3, 1.1, 1e-7]
    assert first["policy_version"] == 'v"1' and first["fallback"] is True
    assert first["explored"] is False and first["ts"] == 123.5 and first["reward"] == 0.5
    assert rows[1]["state"] == [1 / 3, 1.1, 1e-7] and rows[1]["fallback"] is False
    r = redis.Redis.from_url(redis_url)
    assert not r.exists("c:cells:y")  # the refused batch stored nothing
    r.close()
    st.close()


def test_the_controller_acl_user_may_close_in_the_commit(tmp_path):
    """The compose ACL (``slicetwin keys init``) lets the controller's Redis user run the
    commit that appends to the stream (both keys are its own)."""
    from slicetwin.ops.procs import RedisServer
    from slicetwin.platform.keys import fresh_keys
    from slicetwin.platform.redis_acl import passwords_from_env, render_acl

    keys = fresh_keys()
    (tmp_path / "users.acl").write_text(render_acl(passwords_from_env(keys), "p:"))
    srv = RedisServer(workdir=tmp_path, extra_args=["--aclfile", str(tmp_path / "users.acl")])
    srv.start()
    try:
        url = f"redis://controller:{keys['REDIS_CONTROLLER_PASSWORD']}@127.0.0.1:{srv.port}/0"
        st = RedisCellStore(url, "p:", streams=("p:transitions",))
        for w in range(3):
            st.commit("z", CellMemory(w, [0.1, 0.2, 0.3], 5, "v", False, False),
                      Close(f'["z",{w},', "1,2,[0.1,0.2,0.3],[1,2,3],[1,1,1],1", "1.0"))
        st.close()
        admin = redis.Redis(port=srv.port, username="controller",
                            password=keys["REDIS_CONTROLLER_PASSWORD"])
        assert admin.xlen("p:transitions") == 2
        admin.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("backend, wait", [("single", None), ("single", 1), ("cluster", None)])
def test_in_commit_also_where_a_replica_must_confirm(request, backend, wait):
    """The commit writes the transition on a single Redis and on a Redis Cluster, also where a
    replica must confirm each stream write (SINK_WAIT_REPLICAS > 0, the cluster's default): the
    sink then only confirms the entries the commit appended (no second copy), and counts them
    written once a replica has them."""
    url = request.getfixturevalue("redis_url" if backend == "single" else "cluster_url")
    s = ControllerSettings(redis_url=url, cell_store="redis", transitions_sink="redis",
                           registry_prefix="w:", model_source="init", sink_wait_replicas=wait)
    app = create_app(s)
    with TestClient(app) as c:
        for w in range(3):
            assert c.post("/v1/reports", json=report("w", w)).status_code == 200
        assert app.state.cells.closes_transitions
        sink = app.state.sink
        assert sink.confirms_written is (backend == "cluster" or wait == 1)
        if backend == "single" and wait:  # no replica here: in the stream, held unconfirmed
            deadline = time.monotonic() + 10
            while sink.unconfirmed < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sink.unconfirmed == 2 and "slicetwin_transitions_written_total 0.0" in (
                c.get("/metrics").text)
        else:
            assert sink.flush(10)
            assert "slicetwin_transitions_written_total 2.0" in c.get("/metrics").text
        assert sink.resent == 0
    assert [t["window"] for t in _stream(url, "w:", len(sink.keys))] == [1, 2]


def test_cluster_transitions_are_in_the_stream_when_the_answer_leaves(cluster_url):
    """What a killed replica loses on a cluster: nothing. The sink is set never to flush during
    the test, yet every answered report's transition is already in its stream shard, and the
    cell memory sits in that shard's slot (SIGKILL would lose only the sink's confirmation,
    not the entry)."""
    s = ControllerSettings(redis_url=cluster_url, cell_store="redis", transitions_sink="redis",
                           registry_prefix="k:", model_source="init",
                           sink_flush_interval_s=3600, sink_buffer=10_000)
    app = create_app(s)
    sink = app.state.sink
    sink.start = lambda: sink  # the writer thread never runs: as if killed after answering
    cells = [f"k{i}" for i in range(24)]
    with TestClient(app) as c:
        for w in range(3):
            for cid in cells[:12]:
                assert c.post("/v1/reports", json=report(cid, w)).status_code == 200
            assert c.post("/v1/reports:batch", json={"reports": [
                report(cid, w) for cid in cells[12:]]}).status_code == 200
        stored = {(t["cell_id"], t["window"]) for t in _stream(cluster_url, "k:", 6)}
        assert stored == {(cid, w) for cid in cells for w in (1, 2)}
        keys = app.state.cells._redis.keys
        r = connect(cluster_url)
        for cid in cells:
            assert r.keyslot(keys.of(cid)) == r.keyslot(keys.streams[keys.shard(cid)])
            assert int(r.hget(keys.of(cid), "window")) == 2
        r.close()


def _cells_in_shards(store: RedisCellStore, n: int, shards: set[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in shards}
    i = 0
    while any(len(v) < n for v in out.values()):
        cid = f"s{i}"
        i += 1
        if store.keys.shard(cid) in out and len(out[store.keys.shard(cid)]) < n:
            out[store.keys.shard(cid)].append(cid)
    return out


def _close(cid: str, w: int) -> Close:
    return Close(f'["{cid}",{w},', "0.5,0.25,[0.1,0.2,0.3],[1,2,3],[1,1,1],1.5", "1.0")


def _mem(w: int) -> CellMemory:
    return CellMemory(w, [0.1, 0.2, 0.3], 3, "v", False, False)


def test_cluster_batch_is_all_or_nothing_per_shard(cluster_url, monkeypatch):
    """A batch over two shards where another replica moved one cell on *after* the batch's
    pre-read (the race the pre-read cannot see): that cell's whole shard is refused (its other
    cells' memory and transitions are not written), the other shard commits, and the batch
    answers the conflict."""
    st = RedisCellStore(cluster_url, "p:", streams=shard_keys("p:transitions", 6))
    other = RedisCellStore(cluster_url, "p:", streams=st.streams)
    by = _cells_in_shards(st, 3, {0, 3})
    cells = by[0] + by[3]
    st.commit_many([(c, _mem(1)) for c in cells], [_close(c, 1) for c in cells])
    racer = by[0][1]
    real_read = st._read_windows

    def read_then_race(items):  # the other replica commits right after our read
        out = real_read(items)
        other.commit(racer, _mem(2), _close(racer, 2))
        return out

    monkeypatch.setattr(st, "_read_windows", read_then_race)
    with pytest.raises(WindowConflict) as e:
        st.commit_many([(c, _mem(2)) for c in cells], [_close(c, 2) for c in cells])
    assert e.value.kind == "duplicate_window" and e.value.index == 1
    assert [st.peek(c).window for c in by[0]] == [1, 2, 1]  # shard 0: only the racer's
    assert [st.peek(c).window for c in by[3]] == [2, 2, 2]  # shard 3 committed
    stored = sorted((t["cell_id"], t["window"]) for t in _stream(cluster_url, "p:", 6))
    assert stored == sorted([(racer, 2)] + [(c, 2) for c in by[3]])  # each window once
    st.close()
    other.close()


def test_cluster_batch_in_one_shard_is_one_atomic_call(cluster_url, monkeypatch):
    """Cells of one shard: no pre-read, one script; a conflict anywhere writes nothing."""
    st = RedisCellStore(cluster_url, "o:", streams=shard_keys("o:transitions", 6))
    cells = _cells_in_shards(st, 4, {2})[2]
    monkeypatch.setattr(st, "_read_windows", lambda items: pytest.fail("pre-read"))
    st.commit_many([(c, _mem(1)) for c in cells], [_close(c, 1) for c in cells])
    st.commit(cells[2], _mem(5), _close(cells[2], 5))
    with pytest.raises(WindowConflict) as e:
        st.commit_many([(c, _mem(2)) for c in cells], [_close(c, 2) for c in cells])
    assert e.value.kind == "window_backwards" and e.value.index == 2
    assert [st.peek(c).window for c in cells] == [1, 1, 5, 1]
    assert _stream(cluster_url, "o:", 6) == []  # 1 -> 5 is a gap: closes nothing
    st.close()


def test_cluster_sink_resends_only_what_a_moved_master_took(cluster_url):
    """The sink's part of in-commit on a cluster: an entry the commit appended is confirmed on
    its master's replica and never written again; if the shard's master changed since the
    commit (a failover that may have lost it), it is sent again to the new master."""
    st = RedisCellStore(cluster_url, "m:", streams=shard_keys("m:transitions", 6))
    sink = RedisStreamSink(cluster_url, "m:transitions", shards=6)
    assert sink.confirms_written and sink.keys == st.streams
    for cid in ("x", "y"):
        st.commit(cid, _mem(1), _close(cid, 1))
        st.commit(cid, _mem(2), _close(cid, 2))
    t = lambda cid: Transition(cid, 2, [0.1, 0.2, 0.3], 3, 0.5, 0.25, [0.1, 0.2, 0.3],  # noqa: E731
                               [1, 2, 3], [1, 1, 1], 1.5, "v", False, False, 1.0)
    sink.put_written(t("x"))  # its master is the one the commit used
    real = sink._node_or_none
    sink._node_or_none = lambda key: "10.0.0.1:1"  # the master at y's commit is gone
    sink.put_written(t("y"))
    sink._node_or_none = real
    assert sink.flush(10) and sink.unconfirmed == 0
    assert sink.written == 2 and sink.resent == 1
    stored = sorted((t["cell_id"], t["window"]) for t in _stream(cluster_url, "m:", 6))
    assert stored == [("x", 2), ("y", 2), ("y", 2)]  # y re-sent (the trainer keeps one)
    sink.close()
    st.close()
