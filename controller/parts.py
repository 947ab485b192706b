"""What one controller is made of, built from its settings: the action codec, the metrics, the
policy holder, the registry, the transitions sink, the cell memory and the decision engine; and
what they need at start and stop (the app's lifespan), for readiness and for a scrape."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from prometheus_client import generate_latest

from controller.cell_cache import ShadowedCellStore
from controller.cells import LocalCellStore, RedisCellStore
from controller.engine import DecisionEngine
from controller.metrics import ControllerMetrics
from controller.model import ModelHolder
from controller.settings import ControllerSettings
from controller.sinks import FileSink, MemorySink, NullSink, RedisStreamSink, TransitionSink
from slicetwin.core.actions import ActionCodec
from slicetwin.core.fallback import cold_start_policy
from slicetwin.core.signing import SignatureError, Verifier
from slicetwin.platform.ops_routes import probe
from slicetwin.registry.model_files import check_file
from slicetwin.registry.store import RedisRegistry
from slicetwin.runtime.onnx_policy import fresh_policy_onnx

log = logging.getLogger("slicetwin.controller")


@dataclass
class Parts:
    settings: ControllerSettings
    codec: ActionCodec
    metrics: ControllerMetrics
    holder: ModelHolder
    registry: object | None
    sink: TransitionSink
    cells: LocalCellStore | ShadowedCellStore
    engine: DecisionEngine

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        initial_model(self)
        if self.holder.policy is None:  # the cold start: the safe heuristic answers
            self.metrics.model_loaded.set(0)
            self.metrics.policy_info.info({"version": self.heuristic_name,
                                           "origin": "cold-start", "sha256": ""})
        self.sink.start()
        if self.registry is not None:
            self.holder.watch(self.registry)
        try:
            yield
        finally:
            self.holder.close()
            self.cells.close()  # first: its last re-sync hands held transitions to the sink
            self.sink.close()

    @property
    def heuristic_name(self) -> str:
        """The cold-start heuristic, as ``serving`` and the policy-info metric name it."""
        return "heuristic-" + ("static" if self.settings.cold_start == "static" else
                               "proportional")

    async def readiness(self) -> dict:
        """Ready once started: it always answers, with the policy in service or, before any
        trained policy passed the gate, with the safe cold-start heuristic (``serving``).
        Decisions never wait on Redis (cell memory answers from its local cache, transitions
        wait in the sink), so a Redis outage is reported (``checks.redis``, ``degraded``) but
        does not take the controller out of rotation."""
        s, cells = self.settings, self.cells
        checks = {"model_loaded": self.holder.policy is not None}
        degraded = []
        if s.redis_url:
            ok = await probe(cells.ping) if isinstance(cells, ShadowedCellStore) else True
            if self.registry is not None and hasattr(self.registry, "ping"):
                ok = ok and await probe(self.registry.ping)
            checks["redis"] = ok
            if not ok:
                degraded.append("redis")
        serving = "policy" if checks["model_loaded"] else self.heuristic_name
        body = {"ready": True, "serving": serving, "checks": checks, "degraded": degraded,
                "policy_version": self.holder.version,
                "transitions_sink": {"healthy": getattr(self.sink, "healthy", True),
                                     "buffered": len(self.sink)}}
        if isinstance(cells, ShadowedCellStore):  # degraded but answering from the cache
            body["cell_store"] = {"mode": "redis" if cells.up else "local_cache",
                                  "held_cells": cells.held_cells(),
                                  "held_transitions": cells.held_transitions()}
        return body

    def scrape(self) -> bytes:
        self.metrics.sink_buffer.set(len(self.sink))
        self.metrics.sink_unconfirmed.set(getattr(self.sink, "unconfirmed", 0))
        if isinstance(self.cells, ShadowedCellStore):
            self.cells.publish()
        self.engine.flush_metrics()
        return generate_latest(self.metrics.registry)


def build_parts(s: ControllerSettings, registry=None) -> Parts:
    """``registry`` overrides the one derived from the settings (e.g. an in-memory registry
    shared with the embedded demo)."""
    codec = ActionCodec(total_bandwidth_hz=s.total_bandwidth_hz, n_units=s.n_units,
                        min_units=s.min_units)
    m = ControllerMetrics()
    m.set_utility(s.utility)
    holder = ModelHolder(codec, m, utility=s.utility)
    if registry is None and s.redis_url:
        # verify only: the controller holds the promotion *public* key(s), never the private one
        registry = RedisRegistry(s.redis_url, s.hmac_key.get_secret_value(), s.registry_prefix,
                                 **s.registry_verify_keys())
    sink = make_sink(s, m)
    cells = make_cells(s, sink, m)
    engine = DecisionEngine(codec, holder, cells, sink, m, utility=s.utility,
                            fallback=cold_start_policy(codec, s.cold_start, s.static_split),
                            shaper=s.reward_shaper, explore_epsilon=s.explore_epsilon,
                            explore_budget=s.explore_budget_per_cell,
                            explore_seed=s.explore_seed,
                            explore_radius=s.explore_radius_units)
    return Parts(s, codec, m, holder, registry, sink, cells, engine)


def make_sink(s: ControllerSettings, m: ControllerMetrics) -> TransitionSink:
    kind = s.transitions_sink
    if kind == "auto":
        kind = "redis" if s.redis_url else ("file" if s.transitions_file else "memory")
    kw = dict(buffer=s.sink_buffer, flush_interval_s=s.sink_flush_interval_s,
              on_written=m.transitions_written.inc, on_dropped=m.transitions_dropped.inc)
    if kind == "redis":
        if not s.redis_url:
            raise ValueError("transitions_sink=redis needs SLICETWIN_REDIS_URL")
        return RedisStreamSink(s.redis_url, s.registry_prefix + s.transitions_stream,
                               s.transitions_maxlen, shards=s.transition_shards,
                               wait_replicas=s.sink_wait_replicas, wait_ms=s.sink_wait_ms,
                               on_resent=m.transitions_resent.inc, **kw)
    if kind == "file":
        if not s.transitions_file:
            raise ValueError("transitions_sink=file needs SLICETWIN_TRANSITIONS_FILE")
        return FileSink(s.transitions_file, **kw)
    if kind == "none":
        return NullSink(**kw)
    return MemorySink(**kw)


def make_cells(s: ControllerSettings, sink, m: ControllerMetrics):
    """Local memory, or Redis shadowed by a local cache (answers while Redis is away)."""
    kind = s.cell_store if s.cell_store != "auto" else ("redis" if s.redis_url else "local")
    if kind != "redis":
        return LocalCellStore()
    if not s.redis_url:
        raise ValueError("cell_store=redis needs SLICETWIN_REDIS_URL")
    # transitions closed in the commit whenever they go to a Redis stream anyway: on a single
    # Redis and on a cluster (a cell's key shares its stream shard's slot); where a replica
    # must confirm each write (SINK_WAIT_REPLICAS > 0) the sink still confirms them
    streams = (sink.keys if s.transitions_in_commit and isinstance(sink, RedisStreamSink)
               else None)
    return ShadowedCellStore(RedisCellStore(s.redis_url, s.registry_prefix, s.cell_ttl_s,
                                            timeout_s=s.cell_store_timeout_s, streams=streams,
                                            maxlen=sink.maxlen if streams else 1,
                                            shards=s.transition_shards,
                                            stream=s.registry_prefix + s.transitions_stream),
                             sink, m, probe_s=s.cell_store_probe_s,
                             hold_buffer=s.cell_hold_buffer)


def load_model_file(p: Parts) -> bool:
    """Serve ``model_path`` only with a valid detached signature (or allow_unsigned)."""
    s, holder = p.settings, p.holder
    try:
        with open(s.model_path, "rb") as fh:
            blob = fh.read()
    except OSError as e:
        holder.reject("file", f"cannot read model file: {e}")
        return False
    try:
        signed = check_file(s.model_path, blob, Verifier(
            s.promotion_public_key.split(",")), "policy", s.allow_unsigned)
    except SignatureError as e:
        holder.reject("signature", f"model file refused: {e}")
        return False
    if not holder.load_bytes(blob, None, f"file:{s.model_path}"):
        return False
    p.metrics.model_unsigned.set(0 if signed else 1)
    return True


def initial_model(p: Parts) -> None:
    """The policy served at start: the registry's promoted one, else the model file, else the
    cold start (``model_source`` says which of these to try): the safe heuristic (no policy:
    the engine serves it), or with ``cold_start=init`` a freshly initialised student."""
    s, holder, registry = p.settings, p.holder, p.registry
    src = s.model_source
    if src in ("auto", "registry") and registry is not None:
        try:
            current = registry.authorised("policy")
        except Exception as e:  # Redis down at start: serve what we can, the watcher re-syncs
            log.warning("registry unreachable at start (%s)", e)
            current = None
        if current is not None and holder.load_from_registry(registry):
            return
        if src == "registry":
            log.warning("no usable policy in the registry yet; serving the fallback")
            return
    if src in ("auto", "file") and s.model_path:
        if load_model_file(p) or src == "file":
            return
    if src == "init" or (src == "auto" and s.cold_start == "init"):
        # an untrained student: labelled with this controller's weights, so it is accepted
        holder.load_bytes(fresh_policy_onnx(f"init-{s.init_seed}", s.init_seed, codec=p.codec,
                                            utility=s.utility), None, "init")
