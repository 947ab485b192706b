"""Prometheus metrics of the controller (one private registry per app instance).

Names follow Prometheus conventions: ``slicetwin_`` prefix, base units in the name, ``_total``
for counters. Per-request updates touch pre-bound children only (sub-microsecond each).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from slicetwin.core.slices import SLICE_NAMES

# sub-millisecond resolution where the controller lives, up to the near-RT loop's 1 s
LATENCY_BUCKETS = (5e-5, 1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4, 8e-4, 1e-3, 1.5e-3, 2e-3, 3e-3,
                   5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0)
ENDPOINTS = ("/v1/reports", "/v1/reports:batch", "/v1/reports:columns", "/v1/e2/kpm")


class ControllerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "slicetwin_request_duration_seconds", "Time from request start to response end",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter("slicetwin_requests_total", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.decisions = Counter("slicetwin_decisions_total", "Allocations answered",
                                 ["policy_version", "fallback"], registry=r)
        self.fallbacks = Counter("slicetwin_fallback_decisions_total",
                                 "Decisions made by the demand-proportional fallback",
                                 ["reason"], registry=r)
        self.explored = Counter("slicetwin_explored_decisions_total",
                                "Decisions replaced by a random action (epsilon exploration)",
                                registry=r)
        self.prb_ratio = Gauge("slicetwin_allocation_prb_ratio",
                               "Share of the carrier in the last allocation", ["slice"], registry=r)
        self.bandwidth = Gauge("slicetwin_allocation_bandwidth_hz",
                               "Bandwidth of the last allocation", ["slice"], registry=r)
        self.ssr = Gauge("slicetwin_slice_ssr_ratio", "SLA satisfaction ratio in the last report",
                         ["slice"], registry=r)
        self.utility = Gauge("slicetwin_utility", "Utility (alpha*SE + sum beta*SSR) of the last "
                             "report", registry=r)
        self.utility_hist = Histogram("slicetwin_report_utility", "Utility per report",
                                      buckets=(0, 0.5, 1, 1.5, 2, 2.2, 2.4, 2.6, 2.8, 3, 3.5, 4, 6,
                                               8, 10, 12),  # 12: beta (1, 4, 6) at full SSR
                                      registry=r)
        self.reward = Counter("slicetwin_reward_sum_total", "Sum of shaped rewards of closed "
                              "transitions", registry=r)
        self.swaps = Counter("slicetwin_model_swaps_total", "Policies swapped in", registry=r)
        self.rejected = Counter("slicetwin_models_rejected_total", "Models refused on load",
                                ["reason"], registry=r)
        self.errors = Counter("slicetwin_errors_total", "Errors by kind", ["kind"], registry=r)
        self.auth_refused = Counter("slicetwin_auth_refused_total", "Requests refused 401 for a "
                                    "missing or wrong bearer API key", ["reason"], registry=r)
        self.model_unsigned = Gauge("slicetwin_model_unsigned", "1 while the policy served "
                                    "came from a model file without a valid signature "
                                    "(allow_unsigned)", registry=r)
        self.transitions_written = Counter("slicetwin_transitions_written_total",
                                           "Transitions persisted by the sink", registry=r)
        self.transitions_dropped = Counter("slicetwin_transitions_dropped_total",
                                           "Transitions dropped (sink buffer full or sink error, "
                                           "or held through a Redis outage and not stored)",
                                           registry=r)
        self.transitions_closed = Counter("slicetwin_transitions_closed_total",
                                          "Transitions closed by consecutive windows", registry=r)
        self.window_gaps = Counter("slicetwin_window_gaps_total", "Reports that skipped windows "
                                   "(no transition recorded)", registry=r)
        self.alloc_mismatch = Counter("slicetwin_allocation_mismatch_total",
                                      "Reports whose in-force allocation differs from the one "
                                      "answered for that window", registry=r)
        self.alloc_off_grid = Counter("slicetwin_allocation_off_grid_total",
                                      "Reported in-force allocations not on the controller's unit "
                                      "grid (another resource-block grid): recorded as the "
                                      "nearest action", registry=r)
        self.alloc_off_grid_hz = Counter("slicetwin_allocation_off_grid_hz_total",
                                         "Sum over off-grid reports of the L1 distance (Hz) "
                                         "between what ran and the action recorded", registry=r)
        self.sink_buffer = Gauge("slicetwin_sink_buffer_transitions", "Transitions waiting in "
                                 "the sink buffer", registry=r)
        # Redis Cluster durability (controller.sinks.RedisStreamSink, WAIT for a replica)
        self.sink_unconfirmed = Gauge("slicetwin_sink_unconfirmed_transitions", "Transitions "
                                      "written to a stream shard's master, waiting for a "
                                      "replica to confirm them (part of the sink buffer)",
                                      registry=r)
        self.transitions_resent = Counter("slicetwin_transitions_resent_total", "Transitions "
                                          "sent again because their shard's master changed "
                                          "before a replica confirmed them", registry=r)
        # Redis cell store unreachable: decisions from the local cache (controller.cell_cache)
        self.degraded = Counter("slicetwin_degraded_decisions_total", "Decisions answered "
                                "without the shared cell memory, flagged 'degraded' in the answer",
                                ["reason"], registry=r)
        self.cell_store_up = Gauge("slicetwin_cell_store_up", "1 while cell memory is read and "
                                   "written in Redis; 0 while decisions use the local cache "
                                   "(Redis unreachable, or the re-sync not finished)", registry=r)
        self.cell_store_outages = Counter("slicetwin_cell_store_outages_total", "Times the "
                                          "controller stopped using Redis for cell memory after "
                                          "a failed call", registry=r)
        self.cell_cache_misses = Counter("slicetwin_cell_cache_misses_total", "Reports answered "
                                         "from the local cache for a cell it held no memory of "
                                         "(no transition closed)", registry=r)
        self.cell_resync = Counter("slicetwin_cell_resync_total", "Cells whose memory, accepted "
                                   "while Redis was unreachable, was pushed back: stored, or "
                                   "refused because another replica moved the cell on "
                                   "(conflict)", ["outcome"], registry=r)
        self.held_transitions = Counter("slicetwin_held_transitions_total", "Transitions closed "
                                        "from the local cache (held), and their fate: delivered "
                                        "to the sink after the re-sync, already_stored (by a "
                                        "commit that landed although its reply was lost), or "
                                        "dropped (conflict, overflow, shutdown)", ["outcome"],
                                        registry=r)
        self.held_transitions_gauge = Gauge("slicetwin_held_transitions_waiting", "Transitions held "
                                            "until their cell's memory is back in Redis",
                                            registry=r)
        self.policy_info = Info("slicetwin_policy", "Policy in service", registry=r)
        self.model_loaded = Gauge("slicetwin_model_loaded", "1 when a policy model is loaded",
                                  registry=r)
        self.utility_alpha = Gauge("slicetwin_utility_alpha", "SE weight alpha of the utility "
                                   "(setting utility_alpha)", registry=r)
        self.utility_beta = Gauge("slicetwin_utility_beta", "SLA weight beta of each slice in "
                                  "the utility (setting utility_beta)", ["slice"], registry=r)
        # pre-bound children for the hot path
        self.prb_children = [self.prb_ratio.labels(s) for s in SLICE_NAMES]
        self.bw_children = [self.bandwidth.labels(s) for s in SLICE_NAMES]
        self.ssr_children = [self.ssr.labels(s) for s in SLICE_NAMES]
        self.latency_children = {e: self.request_seconds.labels(e) for e in ENDPOINTS}
        self._decision_children: dict[tuple[str, bool], Counter] = {}
        for kind in ("validation", "duplicate_window", "window_backwards", "unauthorized",
                     "too_large", "inference", "sink", "cell_store", "internal", "kpm"):
            self.errors.labels(kind)
        self.transitions_written.inc(0)
        self.transitions_resent.inc(0)
        for reason in ("no_model", "inference_error"):
            self.fallbacks.labels(reason)
        for reason in ("missing", "wrong"):
            self.auth_refused.labels(reason)
        self.model_unsigned.set(0)
        self.degraded.labels("cell_store")
        self.degraded_cell_store = self.degraded.labels("cell_store")
        self.cell_store_up.set(1)
        for outcome in ("stored", "conflict"):
            self.cell_resync.labels(outcome)
        for outcome in ("held", "delivered", "already_stored", "conflict", "overflow",
                        "shutdown"):
            self.held_transitions.labels(outcome)

    def set_utility(self, utility) -> None:
        """Publish the operator's weights (a ``slicetwin.core.utility.UtilityConfig``), once."""
        self.utility_alpha.set(utility.alpha)
        for name, b in zip(SLICE_NAMES, utility.beta, strict=True):
            self.utility_beta.labels(name).set(b)

    def decision_counter(self, version: str, fallback: bool):
        key = (version, fallback)
        c = self._decision_children.get(key)
        if c is None:
            c = self._decision_children[key] = self.decisions.labels(
                version, "true" if fallback else "false")
        return c
