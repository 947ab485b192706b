"""Prometheus metrics of the trainer worker (``slicetwin_trainer_`` prefix) and their HTTP server.

The worker has no web framework, so a small ``ThreadingHTTPServer`` serves two paths on
``--metrics-port``: ``/metrics`` (the registry in the Prometheus text format, made by
``prometheus_client.generate_latest`` — what ``start_http_server`` serves) and ``/healthz``
(200 once the worker has read the stream successfully, i.e. joined its consumer group; 503
before that, or while Redis keeps failing). A private ``CollectorRegistry`` keeps tests and the
embedded demo from colliding with other services' metrics in the same process.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CYCLE_RESULTS = ("promoted", "refused", "skipped", "failed")
GATE_DECISIONS = ("promote", "refuse")
TWIN_FIGURES = ("score", "next_state_rmse", "utility_rmse", "calibration_error")


class TrainerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.cycles = Counter("slicetwin_trainer_cycles", "finished cycles by result "
                              "(promoted | refused | skipped | failed)", ["result"], registry=r)
        self.cycle_duration = Histogram(
            "slicetwin_trainer_cycle_duration_seconds", "wall time of a cycle that trained",
            buckets=(1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600), registry=r)
        self.ingested = Counter("slicetwin_trainer_transitions_ingested",
                                "transitions persisted to the dataset from the stream", registry=r)
        self.dataset = Gauge("slicetwin_trainer_dataset_transitions",
                             "rows in the durable dataset", registry=r)
        self.lag = Gauge("slicetwin_trainer_stream_lag_transitions", "stream entries not yet "
                         "delivered to the trainer's consumer group (Redis >= 7; NaN if unknown)",
                         registry=r)
        self.gate = Counter("slicetwin_trainer_gate_decisions", "promotion-gate decisions",
                            ["decision"], registry=r)
        self.twin_error = Gauge("slicetwin_trainer_twin_heldout_error", "held-out error of the "
                                "last twin fit by figure (score, next_state_rmse, utility_rmse, "
                                "calibration_error)", ["figure"], registry=r)
        self.policy_info = Gauge("slicetwin_trainer_policy_published_info", "1 for the last "
                                 "policy published; promoted=\"true\" when the gate passed it",
                                 ["version", "promoted"], registry=r)
        self.last_promotion = Gauge("slicetwin_trainer_last_promotion_timestamp_seconds",
                                    "unix time of the last promotion by this process (0: none)",
                                    registry=r)
        self.current_cycle = Gauge("slicetwin_trainer_cycle", "number of the last finished cycle",
                                   registry=r)
        self.redis_errors = Counter("slicetwin_trainer_redis_errors", "failed stream reads or "
                                    "registry writes (Redis down, timeouts)", registry=r)
        self.lag.set(float("nan"))
        for c in CYCLE_RESULTS:  # children exist from the start: rate() and alerts see 0
            self.cycles.labels(c)
        for d in GATE_DECISIONS:
            self.gate.labels(d)
        self._published: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def on_cycle(self, res) -> None:
        """Record a finished :class:`~trainer.worker.worker.CycleResult`."""
        self.current_cycle.set(res.cycle)
        if res.dataset:
            self.dataset.set(res.dataset)
        if res.skipped is not None:
            self.cycles.labels("skipped").inc()
            return
        for k in TWIN_FIGURES:
            v = res.twin_error.get(k)
            if v is not None:
                self.twin_error.labels(k).set(float(v))
        if "total" in res.seconds:
            self.cycle_duration.observe(res.seconds["total"])
        if res.policy_version is None:
            return
        self.gate.labels("promote" if res.promoted else "refuse").inc()
        self.cycles.labels("promoted" if res.promoted else "refused").inc()
        if res.promoted:
            self.last_promotion.set(time.time())
        with self._lock:
            if self._published is not None:
                self.policy_info.remove(*self._published)
            self._published = (res.policy_version, "true" if res.promoted else "false")
            self.policy_info.labels(*self._published).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, body = self.server.health()
            self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b'{"detail":"not found: /metrics or /healthz"}', "application/json")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # scrapes every 5 s: keep the log quiet
        pass


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, metrics: TrainerMetrics, health):
        super().__init__(addr, _Handler)
        self.metrics, self.health = metrics, health


def serve(metrics: TrainerMetrics, port: int, host: str = "0.0.0.0",
          health=lambda: (True, {"status": "ok"})) -> _MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` on a daemon thread; ``server.shutdown()`` stops it.
    ``health() -> (ok, body)`` decides ``/healthz``."""
    srv = _MetricsServer((host, port), metrics, health)
    threading.Thread(target=srv.serve_forever, name="trainer-metrics", daemon=True).start()
    return srv
