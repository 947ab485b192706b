"""Redis outage with the compose configuration (cell memory in Redis, transitions to the Redis
stream): decisions never wait on Redis. Real parts only: a private redis-server with RDB
snapshots as in the compose file (stopped with SIGTERM and started again on the same port and
directory), a real ``slicetwin controller`` process (uvicorn), the open-loop load generator.

Checked: no failed request except the conflicting ones injected on purpose; answers during the
outage are flagged ``degraded`` and keep the allocation invariants; a duplicate window is
refused during the outage (from the cache) and again after the re-sync (by Redis); after
recovery each cell's memory in Redis is its last answered window, and the stream holds exactly
the transitions of the answered consecutive windows, none twice.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import redis

from slicetwin.core.schemas import Decision
from slicetwin.core.transition_wire import decode
from slicetwin.ops.loadgen import LoadConfig, drive
from slicetwin.ops.procs import ControllerProcess, RedisServer, http_get
from slicetwin.ops.soak import SoakConfig, run_soak, wait_drained
from slicetwin.platform.cell_keys import cell_key
from tests.support.paths import ROOT

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server binary not installed")

SLICE = {"delivered_packets": 90, "sla_met_packets": 80, "throughput_bps": 1e6,
         "spectral_efficiency": 1.0}


def _report(cell: str, window: int) -> bytes:
    return json.dumps({"cell_id": cell, "window": window, "window_ms": 200, "slices": [
        {"slice": s, "arrived_packets": 100, **SLICE} for s in ("volte", "video", "urllc")]}
    ).encode()


def _post(url: str, cell: str, window: int) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/v1/reports", _report(cell, window),
                                 {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _valid_allocation(body: dict) -> bool:
    d = Decision.model_validate(body)  # the documented schema accepts the flag
    bw = [a.bandwidth_hz for a in d.allocation]
    return abs(sum(bw) - 20e6) < 1e-3 and min(a.prb_ratio for a in d.allocation) >= 0.01


@pytest.fixture()
def compose_like():
    """Private RDB Redis + controller with SLICETWIN_CELL_STORE=redis and the Redis sink."""
    rs = RedisServer(persist=True).start()
    env = {"SLICETWIN_REDIS_URL": rs.url, "SLICETWIN_CELL_STORE": "redis",
           "SLICETWIN_TRANSITIONS_SINK": "redis", "SLICETWIN_MODEL_SOURCE": "init"}
    try:
        with ControllerProcess(env) as ctl:
            yield rs, ctl
    finally:
        rs.cleanup()


def test_redis_outage_with_redis_cell_store_answers_everything(compose_like):
    rs, ctl = compose_like
    injected: dict[str, tuple] = {}
    state = {"down": False, "up": False}
    assert _post(ctl.url, "dup", 1)[0] == 200

    async def tick(t: float) -> None:
        if not state["down"] and t >= 2:
            state["down"] = True
            await asyncio.to_thread(rs.stop)
        elif state["down"] and "during" not in injected and t >= 3:
            injected["during"] = await asyncio.to_thread(_during_outage, ctl)
        elif "during" in injected and not state["up"] and t >= 5:
            state["up"] = True
            await asyncio.to_thread(rs.start)

    cfg = LoadConfig(rate=200, duration_s=8, connections=8, cells=64, bucket_s=8,
                     keep_answered=True, cell_prefix="ld")
    res = asyncio.run(drive(ctl.port, cfg, on_tick=tick, tick_s=0.25))
    assert state["up"], "the load ended before Redis came back"
    m = wait_drained(ctl, 60)

    # every request of the load answered; the outage's answers flagged
    assert res.errors == 0, res.status
    assert res.degraded_answers >= 200 * 3 * 0.5, res.degraded_answers
    ok, dup, back, ready = injected["during"]
    assert ok[0] == 200 and ok[1]["degraded"] == "cell_store" and _valid_allocation(ok[1])
    assert dup[0] == 409 and dup[1]["error"] == "duplicate_window"
    assert back[0] == 422 and back[1]["error"] == "window_backwards"
    assert ready[0] == 200 and ready[1]["checks"]["redis"] is False  # degraded, in rotation
    assert ready[1]["degraded"] == ["redis"] and ready[1]["cell_store"]["mode"] == "local_cache"
    assert ready[1]["cell_store"]["mode"] == "local_cache"
    # after the re-sync: Redis refuses the window accepted during the outage, takes the next
    assert _post(ctl.url, "dup", 2)[0] == 409
    status, body = _post(ctl.url, "dup", 3)
    assert status == 200 and "degraded" not in body and _valid_allocation(body)
    status, ready_after = ctl.get("/readyz")
    assert status == 200 and ready_after["cell_store"] == {
        "mode": "redis", "held_cells": 0, "held_transitions": 0}

    m = wait_drained(ctl, 30)
    assert m['slicetwin_degraded_decisions_total{reason="cell_store"}'] == \
        res.degraded_answers + 1
    assert m["slicetwin_cell_store_outages_total"] == 1
    # held = delivered to the sink after the re-sync + already stored by a commit that landed
    # although its reply was lost (the window answered again from the cache: not sent twice)
    assert m['slicetwin_held_transitions_total{outcome="held"}'] == (
        m['slicetwin_held_transitions_total{outcome="delivered"}']
        + m['slicetwin_held_transitions_total{outcome="already_stored"}'])
    assert m['slicetwin_held_transitions_total{outcome="delivered"}'] > 0
    assert m['slicetwin_cell_resync_total{outcome="conflict"}'] == 0
    assert m["slicetwin_transitions_dropped_total"] == 0

    r = redis.Redis.from_url(rs.url)
    entries = [f[b"t"] for _, f in r.xrange("slicetwin:transitions")]
    keys = [(t["cell_id"], t["window"]) for t in (decode({"t": e}) for e in entries)]
    last: dict[int, int] = {}
    for c, w in res.answered:
        last[c] = max(w, last.get(c, -1))
    for c, w in last.items():
        assert int(r.hget(cell_key("slicetwin:", f"ld-{c}"), "window")) == w, c
    assert int(r.hget(cell_key("slicetwin:", "dup"), "window")) == 3
    r.close()
    expected = {(f"ld-{c}", w) for c, w in res.expected_transitions()} | {("dup", 2), ("dup", 3)}
    assert set(keys) == expected
    # no window accepted twice: a (cell, window) stored twice can only be the same transition,
    # the sink's batch sent again after Redis died with the reply unsent (at-least-once; the
    # trainer keeps one row per (cell, window)). A commit that closed its transition in Redis
    # but whose reply was lost is recognised at the re-sync (``already_stored``), so its window,
    # answered again from the cache, is not stored a second time.
    first: dict[tuple, dict] = {}
    for key, e in zip(keys, entries, strict=True):
        t = decode({"t": e})
        if key in first:
            assert _same_transition(first[key], t), ("a window stored twice", first[key], t)
        else:
            first[key] = t
    assert len(keys) - len(set(keys)) <= 2000


def _same_transition(a: dict, b: dict) -> bool:
    """Equal in every field but the write timestamp (floats to 1e-9: two encoders)."""
    for k in a:
        if k == "ts":
            continue
        x, y = a[k], b[k]
        if isinstance(x, list):
            if len(x) != len(y) or any(abs(float(p) - float(q)) > 1e-9 for p, q in zip(x, y, strict=True)):
                return False
        elif isinstance(x, float) or isinstance(y, float):
            if abs(float(x) - float(y)) > 1e-9:
                return False
        elif x != y:
            return False
    return True


def _during_outage(ctl: ControllerProcess) -> tuple:
    """Window 2 of cell 'dup' from the cache, then the same window again, then window 1."""
    return (_post(ctl.url, "dup", 2), _post(ctl.url, "dup", 2), _post(ctl.url, "dup", 1),
            ctl.get("/readyz"))


def test_hung_redis_does_not_stall_the_controller(compose_like):
    """A Redis that accepts connections and never answers (SIGSTOP; like a stopped container
    whose address no longer answers, issue 17): only the decision that finds it hung waits for
    the cell store's 0.25 s timeout; /healthz and every other decision answer at once. When
    Redis runs again it executes what it had queued (the timed-out commit included, recognised
    as this replica's own write), and the stream holds every answered transition."""
    rs, ctl = compose_like
    healthz: list[float] = []
    state = {"stopped": False, "resumed": False}

    def probe() -> None:
        t0 = time.perf_counter()
        status, _ = http_get(ctl.url + "/healthz", timeout=3)
        assert status == 200
        healthz.append(time.perf_counter() - t0)

    async def tick(t: float) -> None:
        if not state["stopped"] and t >= 1.5:
            state["stopped"] = True
            rs.proc.send_signal(signal.SIGSTOP)
        elif state["stopped"] and not state["resumed"] and t >= 4.5:
            state["resumed"] = True
            rs.proc.send_signal(signal.SIGCONT)
        elif state["stopped"] and not state["resumed"] and t >= 2:
            await asyncio.to_thread(probe)

    cfg = LoadConfig(rate=100, duration_s=7, connections=4, cells=32, bucket_s=7,
                     keep_answered=True, cell_prefix="hung")
    res = asyncio.run(drive(ctl.port, cfg, on_tick=tick, tick_s=0.25))
    assert state["resumed"]
    m = wait_drained(ctl, 60)
    assert res.errors == 0, res.status
    assert res.degraded_answers > 100 and len(healthz) >= 5
    # before: every decision waited 1 s for the hung Redis on the event loop (and got a 503),
    # so probes and reports queued behind each other for many seconds
    assert max(healthz) < 1.0, healthz
    assert res.buckets[0]["p99_ms"] < 1000, res.buckets
    assert m["slicetwin_cell_store_up"] == 1
    assert m['slicetwin_cell_resync_total{outcome="conflict"}'] == 0
    r = redis.Redis.from_url(rs.url)
    keys = {(t["cell_id"], t["window"]) for t in
            (decode(f) for _, f in r.xrange("slicetwin:transitions"))}
    r.close()
    assert keys == {(f"hung-{c}", w) for c, w in res.expected_transitions()}


@pytest.mark.slow
def test_floor_30s_redis_outage_at_500rps_compose_config():
    """Issue 18's floor, through ``slicetwin bench soak``'s code: 500 reports/s, Redis stopped
    for 30 s, cell memory in Redis and the Redis sink: 0 failed requests; every transition
    whose cell memory survived stored once; the rest counted."""
    r = run_soak(SoakConfig(rate=500, duration_s=40, warmup_s=5, bucket_s=10, cells=256,
                            cell_store="redis", outage_at_s=4, outage_s=30), progress=False)
    print(json.dumps(r))
    o = r["outage"]
    assert r["errors"] == 0, r["status"]
    assert o["down_s"] >= 29.5 and o["degraded_answers"] > 0
    assert o["lost_uncounted"] == 0 and o["unexpected"] == 0
    # duplicates: only identical entries of the sink batch in flight when Redis stopped
    assert o["windows_accepted_twice"] == 0 and o["duplicates"] <= 2000
    assert o["missing"] == 0  # one replica: every cell's memory survives in its cache
    assert o["cell_memory_mismatches"] == 0


def test_bench_soak_outage_cli_prints_one_json_line_and_refuses_bad_options():
    """The floor's command, short: one JSON line with the outage's accounting; options that
    cannot describe an outage are refused before anything starts."""

    def soak(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "bench", "soak",
                               "--no-progress", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=180)

    out = soak("--rate", "200", "--duration", "5", "--warmup", "1", "--bucket", "5",
               "--cells", "64", "--cell-store", "redis", "--outage-at", "1", "--outage", "2")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    r = json.loads(lines[0])
    o = r["outage"]
    assert r["cell_store"] == "redis" and r["errors"] == 0 and o["degraded_answers"] > 0
    assert o["missing"] == 0 and o["lost_uncounted"] == 0 and o["windows_accepted_twice"] == 0
    assert o["stored_unique"] == o["transitions_expected"] > 0 and 1.5 < o["down_s"] < 4
    bad = soak("--duration", "10", "--outage-at", "5", "--outage", "30")
    assert bad.returncode == 2 and "outage must end before" in bad.stderr
    bad = soak("--cell-store", "memcached")
    assert bad.returncode == 2 and "local or redis" in bad.stderr
