"""Trainer worker metrics: /metrics (parsed with prometheus_client's parser) and /healthz.

Real redis-server, real cycle, real HTTP server (in-process and the ``slicetwin trainer``
process); the figures on /metrics must match what the worker did.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from slicetwin.ops.procs import free_port, http_get
from slicetwin.ops.simfeed import sim_transitions, xadd_all
from tests.support.worker import STREAM, fast_settings


def samples(port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value of the trainer's /metrics page."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics", 5.0)
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_cycle_figures_on_metrics_and_healthz(tmp_path, redis_url):
    from slicetwin.registry.store import RedisRegistry
    from trainer.worker import TrainerWorker
    from trainer.worker.metrics import TrainerMetrics, serve

    m = TrainerMetrics()
    w = TrainerWorker(fast_settings(tmp_path, redis_url, gate_margin=10.0),
                      registry=RedisRegistry(redis_url), metrics=m)
    srv = serve(m, 0, "127.0.0.1", w.health)
    port = srv.server_address[1]
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/healthz", 5.0)
        assert status == 503 and json.loads(body)["status"] == "unhealthy"  # stream never read
        assert http_get(f"http://127.0.0.1:{port}/nope", 5.0)[0] == 404
        n = xadd_all(redis_url, STREAM, sim_transitions(cells=4, windows=60, seed=11))
        res = w.run_cycle()  # ingests (no background thread), then trains
        assert res.skipped is None and res.promoted  # margin 10: the gate passes
        status, body = http_get(f"http://127.0.0.1:{port}/healthz", 5.0)
        assert status == 200 and json.loads(body)["cycle"] == 1
        got = samples(port)
        assert got[("slicetwin_trainer_transitions_ingested_total", ())] == n == 240
        assert got[("slicetwin_trainer_dataset_transitions", ())] == 240
        lag = got[("slicetwin_trainer_stream_lag_transitions", ())]
        major = int(redis.Redis.from_url(redis_url).info("server")["redis_version"].split(".")[0])
        assert lag == 0 if major >= 7 else math.isnan(lag)  # XINFO GROUPS has "lag" from 7.0
        assert got[("slicetwin_trainer_cycles_total", (("result", "promoted"),))] == 1
        assert got[("slicetwin_trainer_cycles_total", (("result", "refused"),))] == 0
        assert got[("slicetwin_trainer_gate_decisions_total", (("decision", "promote"),))] == 1
        assert got[("slicetwin_trainer_gate_decisions_total", (("decision", "refuse"),))] == 0
        assert got[("slicetwin_trainer_cycle_duration_seconds_count", ())] == 1
        assert got[("slicetwin_trainer_cycle_duration_seconds_sum", ())] == pytest.approx(
            res.seconds["total"])
        for fig in ("score", "next_state_rmse", "utility_rmse"):
            assert got[("slicetwin_trainer_twin_heldout_error", (("figure", fig),))] == \
                pytest.approx(res.twin_error[fig])
        info = {k: v for k, v in got.items() if k[0] == "slicetwin_trainer_policy_published_info"}
        assert info == {("slicetwin_trainer_policy_published_info",
                         (("promoted", "true"), ("version", res.policy_version))): 1.0}
        assert got[("slicetwin_trainer_cycle", ())] == 1
        assert time.time() - got[("slicetwin_trainer_last_promotion_timestamp_seconds", ())] < 600
        assert got[("slicetwin_trainer_redis_errors_total", ())] == 0

        # a second cycle refused by the gate replaces the info series (one version at a time)
        xadd_all(redis_url, STREAM, sim_transitions(cells=4, windows=10, seed=12, cell_prefix="b"))
        w.s = w.s.model_copy(update={"gate_margin": 0.0})
        w.registry.publish("policy", _strong_policy(), version="strong", promote=True)
        res2 = w.run_cycle()
        got = samples(port)
        assert got[("slicetwin_trainer_transitions_ingested_total", ())] == 280
        assert got[("slicetwin_trainer_cycle_duration_seconds_count", ())] == 2
        refused = not res2.promoted
        assert got[("slicetwin_trainer_gate_decisions_total", (("decision", "refuse"),))] == refused
        info = [k for k in got if k[0] == "slicetwin_trainer_policy_published_info"]
        assert info == [("slicetwin_trainer_policy_published_info",
                         (("promoted", str(res2.promoted).lower()),
                          ("version", res2.policy_version)))]
    finally:
        srv.shutdown()
        srv.server_close()
        w.close()


def _strong_policy() -> bytes:
    from tests.support.worker import _constant_policy_onnx

    return _constant_policy_onnx((20, 60, 20), "strong")


def test_redis_errors_counted_and_healthz_unhealthy(tmp_path):
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker
    from trainer.worker.metrics import TrainerMetrics, serve

    m = TrainerMetrics()
    stop = threading.Event()
    s = fast_settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0", backoff_initial_s=0.05,
                      backoff_max_s=0.1)
    w = TrainerWorker(s, registry=MemoryRegistry(), stop_event=stop, metrics=m)
    srv = serve(m, 0, "127.0.0.1", w.health)
    port = srv.server_address[1]
    w.start_ingest()
    try:
        deadline = time.time() + 20
        while time.time() < deadline and samples(port)[
                ("slicetwin_trainer_redis_errors_total", ())] < 3:
            time.sleep(0.1)
        assert samples(port)[("slicetwin_trainer_redis_errors_total", ())] >= 3
        status, body = http_get(f"http://127.0.0.1:{port}/healthz", 5.0)
        assert status == 503 and json.loads(body)["ingest_failures"] >= 3
    finally:
        stop.set()
        w.close()
        srv.shutdown()
        srv.server_close()


def test_trainer_command_serves_metrics_port(tmp_path, redis_url, cli_env):
    """``slicetwin trainer --metrics-port``: healthy once it reads the stream, counts what it
    ingests, and stops cleanly on SIGTERM."""
    port = free_port()
    env = dict(cli_env, SLICETWIN_DATA_DIR=str(tmp_path / "tr"),
               SLICETWIN_MIN_TRANSITIONS=str(10**9), SLICETWIN_READ_BLOCK_MS="20",
               SLICETWIN_METRICS_HOST="127.0.0.1")
    n = xadd_all(redis_url, STREAM, sim_transitions(cells=2, windows=30, seed=13))
    proc = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "trainer", "--redis-url",
                             redis_url, "--metrics-port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        ok = None
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                ok = http_get(f"http://127.0.0.1:{port}/healthz", 2)[0] == 200 and samples(port)[
                    ("slicetwin_trainer_transitions_ingested_total", ())] == n
            except (urllib.error.URLError, ConnectionError):
                ok = False
            if ok:
                break
            time.sleep(0.3)
        assert ok, "trainer never became healthy with all transitions ingested"
        got = samples(port)
        assert got[("slicetwin_trainer_dataset_transitions", ())] == n
        assert sum(v for k, v in got.items() if k[0] == "slicetwin_trainer_cycles_total") == 0
        r = redis.Redis.from_url(redis_url)
        assert r.xpending(STREAM, "trainer")["pending"] == 0
        r.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, proc.stderr.read().decode()


def test_stream_lag_counts_entries_not_yet_delivered(tmp_path, redis_url):
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker
    from trainer.worker.metrics import TrainerMetrics

    r = redis.Redis.from_url(redis_url)
    if int(r.info("server")["redis_version"].split(".")[0]) < 7:
        pytest.skip("XINFO GROUPS reports lag from Redis 7.0")
    m = TrainerMetrics()
    w = TrainerWorker(fast_settings(tmp_path, redis_url, read_count=50),
                      registry=MemoryRegistry(), metrics=m)
    n = xadd_all(redis_url, STREAM, sim_transitions(cells=4, windows=40, seed=14))
    assert w.ingest_once() == 50
    assert m.lag._value.get() == n - 50 == 110  # noqa: SLF001 - the gauge's current value
    assert m.ingested._value.get() == 50 and m.dataset._value.get() == 50  # noqa: SLF001
    w.close()
    r.close()
