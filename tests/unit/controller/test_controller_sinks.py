"""Transition sinks: bounded buffer drops are counted; a dead Redis never blocks decisions."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from controller.app import create_app
from controller.settings import ControllerSettings
from controller.sinks import MemorySink
from slicetwin.core.transition_wire import Transition, decode, encode, to_transitions
from slicetwin.ops.procs import free_port
from tests.support.controller import report


def _t(i: int) -> Transition:
    return Transition(f"c{i}", i + 1, [0.1, 0.2, 0.3], 7, 1.0, 2.5, [0.2, 0.3, 0.4],
                      [20, 300, 4], [10, 150, 2], 1.5, "v1", False, False, 123.0)


def test_bounded_buffer_counts_drops_and_round_trips():
    written, dropped = [], []
    s = MemorySink(buffer=5, on_written=written.append, on_dropped=dropped.append)
    for i in range(8):
        s.put(_t(i))
    assert s.dropped == 3 and sum(dropped) == 3
    assert s.put_many([_t(9), _t(10)]) == 0 and s.dropped == 5
    s.flush()
    assert s.written == 5 and sum(written) == 5 and [t.cell_id for t in s.items] == [
        "c0", "c1", "c2", "c3", "c4"]
    d = decode(encode(_t(3)))
    assert d["cell_id"] == "c3" and d["window"] == 4 and d["arrived"] == [20, 300, 4]
    tr = to_transitions([d, decode(encode(_t(4)))])
    assert len(tr) == 2 and tr.state.shape == (2, 3) and tr.action.tolist() == [7, 7]


def test_file_sink_writes_json_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    app = create_app(ControllerSettings(transitions_sink="file", transitions_file=str(path)))
    with TestClient(app) as c:
        for w in range(4):
            assert c.post("/v1/reports", json=report("f", w)).status_code == 200
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["window"] for r in rows] == [1, 2, 3]
    assert all(r["cell_id"] == "f" and len(r["state"]) == 3 for r in rows)


def test_dead_redis_sink_buffers_and_counts_but_decisions_flow():
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = create_app(ControllerSettings(redis_url=dead, cell_store="local"))  # model: auto
    with TestClient(app) as c:
        t0 = time.perf_counter()
        for w in range(6):
            r = c.post("/v1/reports", json=report("d", w))
            assert r.status_code == 200 and not r.json()["fallback"]
        assert time.perf_counter() - t0 < 5  # never waited on Redis
        deadline = time.time() + 10
        while app.state.sink.failures < 2 and time.time() < deadline:
            time.sleep(0.05)
        # held in the bounded buffer and retried (not dropped) while Redis is away
        assert app.state.sink.failures >= 2 and not app.state.sink.healthy
        assert len(app.state.sink) == 5 and app.state.sink.dropped == 0
        assert app.state.sink.written == 0
        ready = c.get("/readyz")
        # degraded, still serving: a Redis outage never takes the controller out of rotation
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] is False
        assert ready.json()["degraded"] == ["redis"]
    # shutdown with Redis still away: what could not be written is dropped and counted
    assert app.state.sink.dropped == 5 and len(app.state.sink) == 0
