"""The Redis cell store behaves the same on a single Redis and on a Redis Cluster: window order,
all-or-nothing batches, the re-sync's compare-and-set and the exploration budget; on a cluster
each cell's keys share the slot of the cell's stream shard, so cells spread over the masters as
the shards do."""

from __future__ import annotations

import pytest

from controller.cells import CellMemory, RedisCellStore, Stored, WindowConflict
from slicetwin.platform.cell_keys import cell_keys, slot_tag
from slicetwin.platform.redis_client import connect

PREFIX = "t:"


def _mem(w: int, action: int = 7) -> CellMemory:
    return CellMemory(w, [w / 10, 0.5, 0.1], action, "v1", False, False)


@pytest.fixture()
def store(any_redis_url):
    s = RedisCellStore(any_redis_url, PREFIX)
    yield s
    s.close()


def test_order_and_batches_all_or_nothing(store):
    assert store.commit("a", _mem(1)) is None
    assert store.commit("a", _mem(2)).window == 1
    with pytest.raises(WindowConflict) as e:
        store.commit("a", _mem(2))
    assert e.value.kind == "duplicate_window"
    cells = [f"c{i}" for i in range(40)]
    prevs = store.commit_many([(c, _mem(5)) for c in cells])
    assert prevs == [None] * 40
    prevs = store.commit_many([(c, _mem(6, action=i)) for i, c in enumerate(cells)])
    assert [p.window for p in prevs] == [5] * 40
    # one backward window refuses the whole batch: nothing of it is written
    batch = [(c, _mem(7)) for c in cells]
    batch[17] = (cells[17], _mem(3))
    with pytest.raises(WindowConflict) as e:
        store.commit_many(batch)
    assert e.value.kind == "window_backwards" and e.value.index == 17
    assert {store.peek(c).window for c in cells} == {6}
    assert store.peek("c9").action == 9


def test_resync_compare_and_set(store):
    store.commit("x", _mem(4))
    store.commit("y", _mem(2))
    verdicts = store.push_if_unmoved([("x", 5, _mem(6)), ("y", 3, _mem(9)), ("z", 1, _mem(1))])
    assert verdicts[1:] == [Stored(2), Stored(-1)]  # y: its own window 2; z: new
    assert verdicts[0] == Stored(4)  # x: window 4 is this store's own write ("by")
    assert store.peek("y").window == 9 and store.peek("z").window == 1


def test_resync_refuses_over_another_replicas_window(any_redis_url):
    a, b = RedisCellStore(any_redis_url, PREFIX), RedisCellStore(any_redis_url, PREFIX)
    b.commit("x", _mem(4))
    verdicts = a.push_if_unmoved([("x", 3, _mem(5)), ("w", 1, _mem(2))])
    assert verdicts[0].window == 4 and verdicts[1] == Stored(-1)
    assert a.peek("x").window == 4
    a.close()
    b.close()


def test_exploration_budget(store):
    assert [store.take_exploration("e", 2) for _ in range(4)] == [True, True, False, False]


def test_cells_spread_over_slots(any_redis_url, store):
    cells = [f"cell-{i}" for i in range(64)]
    store.commit_many([(c, _mem(1)) for c in cells])
    store.take_exploration("cell-1", 5)
    r = connect(any_redis_url)
    keys = sorted(k.decode() for k in r.scan_iter(match=PREFIX + "cells:*", count=1000))
    layout = cell_keys(PREFIX, store.cluster)  # the one place that names a cell's key
    assert keys == sorted([layout.of(c) for c in cells] + [layout.of("cell-1") + ":explored"])
    if not store.cluster:
        assert layout.of("cell-0") == "t:cells:{cell-0}"
    else:  # in its stream shard's slot: the six shards' slots, on all three masters
        assert layout.of("cell-0") == f"t:cells:{{{slot_tag(layout.streams[layout.shard('cell-0')])}}}:cell-0"
        assert {r.keyslot(k) for k in keys} == {r.keyslot(s) for s in layout.streams}
        assert len({r.get_node_from_key(k).name for k in keys}) == 3
        for c in cells:
            assert r.keyslot(layout.of(c)) == r.keyslot(layout.streams[layout.shard(c)])
        assert r.keyslot(layout.of("cell-1")) == r.keyslot(layout.of("cell-1") + ":explored")
    r.close()
