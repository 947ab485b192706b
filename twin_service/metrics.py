"""Prometheus metrics of the twin service (own registry per app, ``slicetwin_twin_`` prefix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class TwinMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("slicetwin_twin_requests_total", "HTTP requests",
                                ["route", "status"], registry=r)
        self.latency = Histogram(
            "slicetwin_twin_request_duration_seconds", "request handling time", ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r)
        self.steps = Counter("slicetwin_twin_steps_total", "twin steps predicted", registry=r)
        self.batch_rows = Histogram("slicetwin_twin_batch_rollouts", "rollouts per batch request",
                                    buckets=(1, 16, 64, 256, 1024, 4096, 16384, 65536), registry=r)
        self.reloads = Counter("slicetwin_twin_model_reloads_total", "model loads by result",
                               ["result"], registry=r)
        self.model_loaded = Gauge("slicetwin_twin_model_loaded", "1 when a model is served",
                                  registry=r)
        self.model_loaded_at = Gauge("slicetwin_twin_model_loaded_timestamp_seconds",
                                     "unix time the served model was loaded", registry=r)
        self.calibration = Gauge("slicetwin_twin_model_calibration_error_ratio",
                                 "held-out calibration error of the served model", registry=r)
        self.model_info = Gauge("slicetwin_twin_model_info", "1 for the served model's version",
                                ["version"], registry=r)
        self.next_state_rmse = Gauge("slicetwin_twin_model_heldout_next_state_rmse",
                                     "held-out one-step next-state RMSE of the served model "
                                     "(NaN: the model carries no figure)", registry=r)
        self.utility_rmse = Gauge("slicetwin_twin_model_heldout_utility_rmse",
                                  "held-out one-step utility RMSE of the served model (NaN: the "
                                  "model carries no figure)", registry=r)
        self.auth_refused = Counter("slicetwin_twin_auth_refused_total", "Requests refused 401 "
                                    "for a missing or wrong bearer API key", ["reason"],
                                    registry=r)
        self.model_unsigned = Gauge("slicetwin_twin_model_unsigned", "1 while the twin served "
                                    "came from a model file without a valid signature "
                                    "(allow_unsigned)", registry=r)
        for reason in ("missing", "wrong"):
            self.auth_refused.labels(reason)
        self._version: str | None = None

    def observe(self, route: str, status: int, seconds: float) -> None:
        """One answered request (``slicetwin.platform.http.RequestTiming``)."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def on_swap(self, loaded) -> None:
        """A model was swapped in: its version and held-out figures (registry record metrics,
        else the figures of its own fit) replace the previous model's."""
        m = loaded.model.metrics or {}
        self.model_loaded.set(1)
        self.model_loaded_at.set(loaded.loaded_at)
        cal = m.get("calibration_error")
        if cal is not None:
            self.calibration.set(cal)
        if self._version is not None and self._version != loaded.version:
            self.model_info.remove(self._version)
        self._version = loaded.version
        self.model_info.labels(loaded.version).set(1)
        for gauge, key in ((self.next_state_rmse, "next_state_rmse"),
                           (self.utility_rmse, "utility_rmse")):
            v = m.get(key)
            gauge.set(float("nan") if v is None else float(v))
