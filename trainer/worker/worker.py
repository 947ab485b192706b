"""The trainer worker: Algorithm 1's outer loop on live data, with a promotion gate.

``TrainerWorker.run()`` loops until stopped: ingest transitions (stream -> durable dataset ->
XACK), and every ``min_new_transitions`` new rows run one cycle:

1. refit the twin on the training split; publish it (kind ``twin``) if its held-out score beats
   the best twin's on the same held-out rows;
2. agent 2 (a clone of agent 1) trains in the twin — through the twin service when it serves
   the trainer's twin, else in-process;
3. θ1 ← ζθ1 + (1 − ζ)θ2; agent 1 fine-tunes off-policy on the live transitions;
4. distil agent 1 into the student, export ONNX;
5. gate: candidate vs the policy in service on held-out evaluation (simulator tuning seeds
   when the traffic is a known profile, else an estimate on the held-out live transitions; the
   twin's figure is reported, never decisive); publish the candidate with the gate's figures in
   its metrics, and promote it only if it passed;
6. checkpoint.

Redis or twin-service outages are logged and retried with exponential backoff; nothing crashes
the loop. ``run_cycle()`` is the in-process entry point (the demo calls it and shows the figures).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slicetwin.core.actions import ActionCodec
from slicetwin.core.fallback import cold_start_policy
from slicetwin.core.state import STATE_SCALES
from slicetwin.core.transition_wire import to_transitions
from slicetwin.core.transitions import Transitions
from slicetwin.platform.redis_errors import is_store_failure
from slicetwin.registry.store import RedisRegistry, new_version
from slicetwin.runtime.onnx_policy import fresh_policy_onnx
from slicetwin.twin import Twin
from trainer.twin_client import HttpTwin, TwinServiceError
from trainer.worker import checkpoint, learn
from trainer.worker.gate import gate, gate_seeds, onnx_policy_fn
from trainer.worker.learn import new_agent
from trainer.worker.settings import WorkerSettings
from trainer.worker.source import RedisStreamSource
from trainer.worker.store import DatasetStore, holdout_mask

log = logging.getLogger("slicetwin.trainer")


@dataclass
class CycleResult:
    cycle: int
    dataset: int = 0  # rows in the dataset when the cycle started
    train_rows: int = 0
    heldout_rows: int = 0
    twin_version: str | None = None  # the twin agent 2 trained in
    twin_published: bool = False
    twin_error: dict = field(default_factory=dict)  # held-out figures of the new fit
    twin_backend: str = "local"  # "http" when agent 2 trained through the twin service
    policy_version: str | None = None  # the candidate published this cycle
    promoted: bool = False
    gate: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    skipped: str | None = None  # why nothing was trained (e.g. not enough data)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _CycleData:
    """What one cycle trains and judges on."""

    data: Transitions  # the training window
    held_rows: np.ndarray  # its held-out rows (never trained on; the gate's twin rollouts)
    train: Transitions
    seed: int
    rng: np.random.Generator


class Backoff:
    """Exponential backoff with a cap, reset on success."""

    def __init__(self, initial: float, maximum: float):
        self.initial, self.maximum, self.delay = initial, maximum, initial

    def fail(self) -> float:
        d = self.delay
        self.delay = min(self.delay * 2, self.maximum)
        return d

    def ok(self) -> None:
        self.delay = self.initial


class TrainerWorker:
    def __init__(self, settings: WorkerSettings | None = None, registry=None, source=None,
                 stop_event: threading.Event | None = None, on_cycle=None,
                 store: DatasetStore | None = None, metrics=None):
        self.s = settings or WorkerSettings()
        self.metrics = metrics  # trainer.worker.metrics.TrainerMetrics, or None (demo, tests)
        self.stop_event = stop_event or threading.Event()
        self.on_cycle = on_cycle
        self.root = Path(self.s.data_dir)
        self.store = store or DatasetStore(self.root / "dataset")
        if registry is None:
            if not self.s.redis_url:
                raise ValueError("no registry: set SLICETWIN_REDIS_URL or pass registry=")

            # the trainer signs the promotions its gate passes (it holds the promotion key)
            registry = RedisRegistry(self.s.redis_url, self.s.hmac_key.get_secret_value(),
                                     self.s.registry_prefix, **self.s.registry_keys())
        self.registry = registry
        if source is None and self.s.redis_url:

            source = RedisStreamSource(self.s.redis_url, self.s.stream_key, self.s.consumer_group,
                                       self.s.consumer_name, shards=self.s.transition_shards)
        self.source = source
        self.cycle = 0
        self.rows_at_last_cycle = 0
        self.best_twin = None
        self.best_twin_version: str | None = None
        self.acked = 0
        self.skipped_duplicates = 0
        self._last_polled = 0
        self.history: list[CycleResult] = []
        self._ingest_thread: threading.Thread | None = None
        self._ingest_lock = threading.Lock()
        self._backoff = Backoff(self.s.backoff_initial_s, self.s.backoff_max_s)
        self.agent1 = None  # built by prepare(): torch loads after ingestion has started
        self.planner_labels = None  # teacher=planner: learn.PlannerLabels, built at first use
        self.twin_student = None  # teacher=twin: the last cycle's table-head student
        self.last_ingest_ok: float | None = None  # time.monotonic() of the last good poll
        self.ingest_failures = 0  # consecutive failed polls
        self._lag_at = 0.0
        if self.metrics is not None:
            self.metrics.dataset.set(len(self.store))

    def prepare(self) -> None:
        """Import torch, build agent 1 and resume from the checkpoint (idempotent; ``run`` and
        ``run_cycle`` call it, after ingestion has started, so a restart re-claims its pending
        entries without waiting seconds for torch to load)."""
        if self.agent1 is not None:
            return
        import torch  # lazy: torch


        torch.set_num_threads(1)  # shared 2-core host: one thread is fastest (docs/performance.md)
        self.agent1 = new_agent(self.s, self.s.seed)
        self._resume()

    # ------------------------------------------------------------------ checkpoint
    def _resume(self) -> None:
        if not self.s.checkpoint:
            return

        st = checkpoint.load(self.root)
        if st is None:
            return
        for k, net in self.agent1.networks().items():
            net.load_state_dict(st["agent"][k])
        self.cycle = int(st["cycle"])
        self.rows_at_last_cycle = int(st.get("rows_at_last_cycle", 0))
        if st.get("twin"):

            self.best_twin = Twin.from_bytes(st["twin"])
            self.best_twin_version = st.get("twin_version") or None
        log.info("resumed from checkpoint: cycle %d, twin %s, dataset %d rows", self.cycle,
                 self.best_twin_version, len(self.store))

    def _checkpoint(self) -> None:
        if not self.s.checkpoint:
            return

        checkpoint.save(self.root, {
            "cycle": self.cycle, "rows_at_last_cycle": self.rows_at_last_cycle,
            "agent": {k: n.state_dict() for k, n in self.agent1.networks().items()},
            "twin": self.best_twin.to_bytes() if self.best_twin is not None else b"",
            "twin_version": self.best_twin_version or ""})

    # ------------------------------------------------------------------ ingestion
    def ingest_once(self, block_ms: int | None = None) -> int:
        """One poll: persist new entries durably, then acknowledge. Returns rows persisted."""

        if self.source is None:
            return 0
        with self._ingest_lock:
            p = self.source.poll(self.s.read_count,
                                 self.s.read_block_ms if block_ms is None else block_ms)
            keep = [i for i, sid in enumerate(p.ids) if not self.store.is_persisted(sid)]
            self.skipped_duplicates += len(p.ids) - len(keep)
            n = 0
            if keep:
                data = to_transitions([p.entries[i] for i in keep])
                n = self.store.append(data, [p.ids[i] for i in keep])
            acks = p.ids + p.bad_ids + p.gone_ids
            self.source.ack(acks)  # only now: the rows are on disk
            self.acked += len(acks)
            self._last_polled = len(acks)
            self.last_ingest_ok, self.ingest_failures = time.monotonic(), 0
            if self.metrics is not None:
                self._record_ingest(n)
            return n

    def _record_ingest(self, n: int) -> None:
        m = self.metrics
        if n:
            m.ingested.inc(n)
            m.dataset.set(len(self.store))
        now = time.monotonic()
        if now - self._lag_at >= 1.0 and hasattr(self.source, "lag"):  # one XINFO a second
            self._lag_at = now
            lag = self.source.lag()
            m.lag.set(float("nan") if lag is None else lag)

    def health(self) -> tuple[bool, dict]:
        """Liveness for ``/healthz``: the stream was read (consumer group joined) and reads are
        not failing for more than a minute."""
        age = None if self.last_ingest_ok is None else time.monotonic() - self.last_ingest_ok
        ok = age is not None and (self.ingest_failures == 0 or age < 60.0)
        return ok, {"status": "ok" if ok else "unhealthy", "cycle": self.cycle,
                    "dataset": len(self.store), "last_ingest_age_s": age,
                    "ingest_failures": self.ingest_failures, "model_ready": self.agent1 is not None}

    def ingest(self, max_polls: int = 1000) -> int:
        """Drain what is available now (non-blocking after the first empty poll)."""
        total = 0
        for _ in range(max_polls):
            total += self.ingest_once(block_ms=0 if total else None)
            if self._last_polled == 0:  # (a batch of duplicates persists 0 rows: go on)
                break
        return total

    def _ingest_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.ingest_once()
                self._backoff.ok()
            except Exception as e:  # noqa: BLE001 - Redis down, network, ...: log and retry
                self.ingest_failures += 1
                if self.metrics is not None:
                    self.metrics.redis_errors.inc()
                d = self._backoff.fail()
                log.warning("ingest failed (%s: %s); retrying in %.1f s", type(e).__name__, e, d)
                if hasattr(self.source, "reset_connection_state"):
                    self.source.reset_connection_state()
                self.stop_event.wait(d)

    def start_ingest(self) -> None:
        if self._ingest_thread is None and self.source is not None:
            self._ingest_thread = threading.Thread(target=self._ingest_loop, name="trainer-ingest",
                                                   daemon=True)
            self._ingest_thread.start()

    # ------------------------------------------------------------------ cycle
    def ready(self) -> bool:
        if self.agent1 is None:
            return False
        n = len(self.store)
        return n >= self.s.min_transitions and n - self.rows_at_last_cycle >= max(
            self.s.min_new_transitions, 1 if self.cycle == 0 else self.s.min_new_transitions)

    def _current_policy(self) -> tuple[object, str, bool]:
        """What the services serve now, as the gate's ``current``: (policy function, version,
        promoted). Before any promotion that is the cold start: the safe heuristic (or, with
        ``cold_start=init``, the controller's random student), so the first candidate must
        beat what a fresh install actually serves."""
        s = self.s
        if self.registry.authorised("policy") is not None:  # what the services serve
            rec, blob, _ = self.registry.fetch_served("policy")
            return onnx_policy_fn(blob, s.n_units, s.total_bandwidth_hz), rec.version, True
        codec = ActionCodec(total_bandwidth_hz=s.total_bandwidth_hz, n_units=s.n_units)
        if s.cold_start == "init":
            v = f"init-{s.init_seed}"
            return onnx_policy_fn(fresh_policy_onnx(v, s.init_seed, codec=codec), s.n_units,
                                  s.total_bandwidth_hz), v, False
        heuristic = cold_start_policy(codec, s.cold_start, s.static_split)
        scales = np.asarray(STATE_SCALES, np.float64)

        def act(states: np.ndarray) -> np.ndarray:  # states are arrivals / STATE_SCALES
            return np.asarray(heuristic.act(np.asarray(states, np.float64) * scales)).reshape(-1)

        return act, f"heuristic-{s.cold_start}", False

    def _agent2_twin(self, res: CycleResult):
        """The twin service when it serves our twin, else the in-process twin."""
        if not self.s.twin_url or self.best_twin_version is None:
            return None
        try:
            key = self.s.twin_api_key.get_secret_value() if self.s.twin_api_key else None
            deadline = time.monotonic() + 10.0  # the service reloads on the twin event
            while True:  # before its first twin the service answers 503: wait for it as well
                try:
                    ht = HttpTwin(self.s.twin_url, seed=self.s.seed + self.cycle, timeout=30.0,
                                  api_key=key)
                    break
                except TwinServiceError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.1)
            while ht.version != self.best_twin_version and time.monotonic() < deadline:
                time.sleep(0.1)
                ht.refresh()
            if ht.version == self.best_twin_version:
                res.twin_backend = "http"
                return ht
            log.info("twin service serves %s, not %s: training agent 2 in-process", ht.version,
                     self.best_twin_version)
            ht.close()
        except Exception as e:  # noqa: BLE001 - service down: fall back, retry next cycle
            log.warning("twin service unavailable (%s: %s); training agent 2 in-process",
                        type(e).__name__, e)
        return None

    def run_cycle(self) -> CycleResult:
        """One full cycle on the data persisted so far; returns its figures (and records them in
        the metrics, when the worker has some)."""
        try:
            res = self._run_cycle()
        except Exception as e:
            if self.metrics is not None:
                self.metrics.cycles.labels("failed").inc()
                if is_store_failure(e):
                    self.metrics.redis_errors.inc()
            raise
        if self.metrics is not None:
            self.metrics.on_cycle(res)
        return res

    def _run_cycle(self) -> CycleResult:
        """Ingest, split, refit the twin, train the agents, distil, gate and publish, checkpoint:
        each a named step; a stop request ends the cycle between steps."""
        self._ingest_unless_background()
        self.prepare()
        res = CycleResult(cycle=self.cycle + 1)
        t_all = time.perf_counter()
        cyc = self._cycle_data(res)
        if cyc is None:
            return res
        self._refit_twin(res, cyc)
        if self.stop_event.is_set():
            res.skipped = "stopped"
            return res
        if self.s.teacher == "planner":
            blob, version = self._plan(res, cyc)
        elif self.s.teacher == "twin":
            blob, version = self._twin_plan(res, cyc)
        else:
            if not self._train_agents(res, cyc):
                return res
            blob, version = self._distil(res, cyc)
        self._gate_and_publish(res, cyc, blob, version)
        return self._finish(res, t_all)

    def _ingest_unless_background(self) -> None:
        if self._ingest_thread is not None:
            return
        try:
            self.ingest()
        except Exception as e:  # noqa: BLE001 - Redis down: train on what is on disk
            if self.metrics is not None:
                self.metrics.redis_errors.inc()
            log.warning("ingest failed (%s: %s); cycle uses the persisted data",
                        type(e).__name__, e)

    def _cycle_data(self, res: CycleResult) -> _CycleData | None:
        """The training window, split into train and held-out rows; None (skipped) when short."""
        s = self.s
        data, ids = self.store.load(last=s.train_window)
        res.dataset = len(self.store)
        if len(data) < max(s.min_transitions, 20):
            res.skipped = f"not enough data ({len(data)} < {s.min_transitions})"
            return None
        held = holdout_mask(ids, s.holdout_fraction)
        held_rows, train_rows = np.flatnonzero(held), np.flatnonzero(~held)
        res.train_rows, res.heldout_rows = len(train_rows), len(held_rows)
        seed = s.seed + self.cycle + 1
        return _CycleData(data, held_rows, data[train_rows], seed, np.random.default_rng(seed))

    def _refit_twin(self, res: CycleResult, cyc: _CycleData) -> None:
        """1. Refit the twin; publish it when its held-out score improves on the best twin's."""
        t0 = time.perf_counter()
        data, held_rows = cyc.data, cyc.held_rows
        twin, fit_m = learn.fit_twin(cyc.train, self.s, cyc.seed)
        err = learn.twin_error(twin, data, held_rows) if len(held_rows) else dict(fit_m, score=0.0)
        res.twin_error = {k: err[k] for k in ("score", "next_state_rmse", "utility_rmse",
                                              "persistence_rmse", "calibration_error") if k in err}
        best_score = (learn.twin_error(self.best_twin, data, held_rows)["score"]
                      if self.best_twin is not None and len(held_rows) else float("inf"))
        res.twin_error["best_before"] = None if best_score == float("inf") else best_score
        if err["score"] < best_score:
            version = new_version("twin")
            try:
                self.registry.publish("twin", twin.to_bytes(), version=version,
                                      metrics={**res.twin_error, "n_train": len(cyc.train),
                                               "cycle": res.cycle},
                                      parent=self.best_twin_version, promote=True,
                                      gate={"score": err["score"], "best_before":
                                            res.twin_error["best_before"]})
                self.best_twin, self.best_twin_version = twin, version
                res.twin_published = True
            except Exception as e:  # noqa: BLE001 - registry down: keep training locally
                if self.metrics is not None:
                    self.metrics.redis_errors.inc()
                log.warning("could not publish twin (%s); using it locally", e)
                self.best_twin = twin
        res.twin_version = self.best_twin_version
        res.seconds["twin_fit"] = round(time.perf_counter() - t0, 3)

    def _train_agents(self, res: CycleResult, cyc: _CycleData) -> bool:
        """2-3. Agent 2 in the twin, blend into agent 1, fine-tune agent 1 on live data. False
        when a stop request ended the cycle."""
        s, t0 = self.s, time.perf_counter()
        agent2 = self.agent1.clone()
        remote = self._agent2_twin(res)
        try:
            res.training["agent2"] = learn.train_in_twin(agent2, remote or self.best_twin,
                                                         cyc.train, s, cyc.rng)
        except Exception as e:  # noqa: BLE001 - the service failed mid-way: redo in-process
            if remote is None:
                raise
            log.warning("twin service failed during training (%s); redoing in-process", e)
            res.twin_backend = "local"
            agent2 = self.agent1.clone()
            res.training["agent2"] = learn.train_in_twin(agent2, self.best_twin, cyc.train, s,
                                                         cyc.rng)
        finally:
            if remote is not None:
                remote.close()
        if self.stop_event.is_set():  # agent 1 untouched: the next run redoes this cycle
            res.skipped = "stopped"
            return False
        self.agent1.blend_from(agent2, s.zeta)
        res.training["live"] = learn.finetune_live(self.agent1, cyc.train, s, cyc.rng)
        res.seconds["agents"] = round(time.perf_counter() - t0, 3)
        if self.stop_event.is_set():
            self.cycle, self.rows_at_last_cycle = res.cycle, res.dataset
            self._checkpoint()  # keep the trained agent; no candidate this time
            res.skipped = "stopped"
            return False
        return True

    def _distil(self, res: CycleResult, cyc: _CycleData) -> tuple[bytes, str]:
        """4. Distil agent 1 into the student and export it to ONNX."""
        t0 = time.perf_counter()
        version = new_version("policy")
        blob, dist = learn.distil_and_export(self.agent1, cyc.train, self.s, version, cyc.seed)
        res.training["distill"] = dist
        res.seconds["distill"] = round(time.perf_counter() - t0, 3)
        return blob, version

    def _plan(self, res: CycleResult, cyc: _CycleData) -> tuple[bytes, str]:
        """2-4 with ``teacher=planner``: label one more training seed with the simulator's
        planner, fit the student to every label so far, export it to ONNX."""
        t0 = time.perf_counter()
        if self.planner_labels is None:
            self.planner_labels = learn.PlannerLabels(self.s)
        labels_s = self.planner_labels.add(self.s, (self.s.seed + res.cycle) % 1000)
        version = new_version("policy")
        blob, fit = learn.plan_and_export(self.planner_labels, self.s, version, cyc.seed)
        res.training["distill"] = {**fit, "label_seconds": round(labels_s, 3)}
        res.seconds["planner"] = round(time.perf_counter() - t0, 3)
        return blob, version

    def _twin_plan(self, res: CycleResult, cyc: _CycleData) -> tuple[bytes, str]:
        """2-4 with ``teacher=twin``: the best twin rates every split at live states, the student
        is fitted to its ratings (continuing from the last cycle's), exported to ONNX."""
        t0 = time.perf_counter()
        version = new_version("policy")
        blob, fit, self.twin_student = learn.twin_plan_and_export(
            self.best_twin, cyc.train, self.s, version, cyc.seed, init=self.twin_student)
        res.training["distill"] = fit
        res.seconds["twin_plan"] = round(time.perf_counter() - t0, 3)
        return blob, version

    def _gate_and_publish(self, res: CycleResult, cyc: _CycleData, blob: bytes,
                          version: str) -> None:
        """5. Judge the candidate against the policy in service (held-out simulator cells and
        the twin); publish it, with a promotion record only when it passed."""
        s, t0 = self.s, time.perf_counter()
        current, cur_version, promoted = self._current_policy()
        sim = ({"cells": s.sim_gate_cells, "windows": s.sim_gate_windows,
                "seeds": gate_seeds(res.cycle, s.sim_gate_seeds), "utility": s.utility,
                "profile": s.sim_profile or "paper"} if s.sim_gate_on else None)
        g = gate(onnx_policy_fn(blob, s.n_units, s.total_bandwidth_hz),
                 current,
                 twin=self.best_twin, data=cyc.data, held_rows=cyc.held_rows,
                 margin=s.gate_margin, horizon=s.gate_horizon, rollouts=s.gate_rollouts,
                 seed=cyc.seed, sim=sim, current_version=cur_version,
                 codec=ActionCodec(total_bandwidth_hz=s.total_bandwidth_hz, n_units=s.n_units),
                 utility=s.utility)
        res.gate = g.to_dict()
        res.seconds["gate"] = round(time.perf_counter() - t0, 3)
        metrics = {"gate": res.gate, "twin_version": self.best_twin_version,
                   "twin_error": res.twin_error, "agreement": res.training["distill"]["agreement"],
                   "cycle": res.cycle, "dataset": res.dataset,
                   "eval_utility": next((g.candidate[k] for k in g.decided_on), None)}
        parent = cur_version if promoted else None
        # a refused candidate is stored without a promotion record: no service will serve it
        self.registry.publish("policy", blob, version=version, metrics=metrics, parent=parent,
                              promote=g.passed, gate={
                                  "passed": g.passed, "reason": g.reason, "margin": g.margin,
                                  "candidate": g.candidate, "current": g.current,
                                  "current_version": g.current_version,
                                  "decided_on": g.decided_on, "sim_seeds": g.sim_seeds})
        res.policy_version, res.promoted = version, g.passed
        log.info("cycle %d: policy %s %s (%s)", res.cycle, version,
                 "promoted" if g.passed else "refused", g.reason)

    def _finish(self, res: CycleResult, t_all: float) -> CycleResult:
        """6. Checkpoint and record the cycle."""
        self.cycle = res.cycle
        self.rows_at_last_cycle = res.dataset
        self._checkpoint()
        res.seconds["total"] = round(time.perf_counter() - t_all, 3)
        self.history.append(res)
        if self.on_cycle is not None:
            self.on_cycle(res)
        return res

    # ------------------------------------------------------------------ main loop
    def run(self) -> list[CycleResult]:
        """Ingest in the background and run cycles until stopped (or ``max_cycles``)."""
        log.info("trainer worker running: dataset %d rows, cycle %d, source %s",
                 len(self.store), self.cycle, type(self.source).__name__)
        self.start_ingest()
        backoff = Backoff(self.s.backoff_initial_s, self.s.backoff_max_s)
        try:
            self.prepare()
            while not self.stop_event.is_set():
                if self.s.max_cycles and self.cycle >= self.s.max_cycles:
                    break
                if not self.ready():
                    self.stop_event.wait(0.2)
                    continue
                try:
                    self.run_cycle()
                    backoff.ok()
                except Exception as e:  # noqa: BLE001 - keep the worker alive, retry later
                    d = backoff.fail()
                    log.exception("cycle failed (%s); retrying in %.1f s", e, d)
                    self.stop_event.wait(d)
        finally:
            self.stop()
        return self.history

    def stop(self) -> None:
        self.stop_event.set()
        if self._ingest_thread is not None:
            self._ingest_thread.join(10)
            self._ingest_thread = None

    def close(self) -> None:
        self.stop()
        if self.source is not None:
            self.source.close()
