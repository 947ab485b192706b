"""``slicetwin demo``: the whole closed loop on one machine, with nothing else installed.

Parts (the same code the deployment runs):

- fake gNB: simulator cells stepped in real time (one 200 ms window per 200 ms by default), each
  posting its KPI report to the controller and applying the answered allocation next window;
- controller: a real uvicorn server on a free loopback port serving the ONNX student (a freshly
  initialised one at first), ε-exploring a little so the trainer sees varied actions;
- trainer: :class:`trainer.worker.TrainerWorker` (``slicetwin trainer`` in Redis mode, a thread
  in embedded mode; see ``demo_trainer``): ingests the controller's transitions, and every few hundred new ones runs one Algorithm 1 cycle (fit the
  twin on the live data, agent 2 trains in the twin, blend, fine-tune, distil, export, gate) and
  publishes + promotes the candidate, which the controller hot-swaps.

Transport, chosen at start (``--mode auto``): ``REDIS_URL`` set -> that Redis (keys under a fresh
per-run prefix, deleted at the end); else a ``redis-server`` binary on PATH -> a private one on
a free port, no persistence, stopped at the end; the controller then runs as its own process
(``slicetwin controller``) and models travel through the Redis registry's pub/sub. Otherwise
everything is embedded: in-memory registry and transitions sink shared by the controller (a
uvicorn thread) and the trainer.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import signal
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from slicetwin.ops.demo.record import Recorder, SwapEvent, WindowRow
from slicetwin.ops.demo.shadow import DemoShadow, tune_heuristic
from slicetwin.ops.demo.trainer import TrainerProcess, TrainerThread
from slicetwin.ops.demo.view import LiveView, PlainView, shadow_line, twin_line
from slicetwin.ops.gnb import units_from_answer
from slicetwin.ops.procs import (
    ControllerProcess,
    ControllerThread,
    RedisServer,
    TwinServiceProcess,
    clear_prefix,
    controller_env,
    env_redis_url,
    free_port,
)
from slicetwin.platform.redis_client import connect
from slicetwin.platform.security import DEV_HMAC_KEY
from slicetwin.registry.store import MemoryRegistry, RedisRegistry
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator
from trainer.worker.settings import WorkerSettings
from trainer.worker.source import MemorySinkSource

log = logging.getLogger("slicetwin.cli.demo")

# Trainer budgets of the demo (WorkerSettings fields). Chosen so that on an idle 2-core machine
# the first cycle starts ~10 s after the loop does and takes well under a minute, i.e. the first
# hot-swap comes 1-2 minutes after `slicetwin demo` is typed; raise them for better policies.
DEMO_TRAINER: dict = {
    "min_transitions": 400,  # 8 cells x 5 windows/s -> ~10 s of live traffic
    "min_new_transitions": 400,
    "twin_fit_seconds": 5.0,
    "twin_epochs": 40,
    "twin_steps": 400,  # agent-2 gradient steps in the twin
    "finetune_steps": 200,
    "distill_rounds": 600,
    "distill_states": 2000,
    "gate_rollouts": 128,
    "checkpoint": False,  # a demo starts from scratch every time
}


@dataclass
class DemoConfig:
    """Options of ``slicetwin demo`` (see docs/demo.md)."""

    cells: int = 8  # simulated cells (one KPI report each per window)
    duration_s: float = 150.0  # length of the loop (ignored when ``windows`` is set)
    windows: int | None = None  # stop after this many windows instead
    out: str = "runs/demo"  # summary.json, windows.csv, PNG plots, logs
    live: bool = True  # rich.live dashboard; False: plain progress lines
    seed: int = 0  # simulator traffic, fresh student, exploration, trainer
    profile: str = "paper"  # simulator profile of the cells' traffic (SimConfig.from_profile);
    #   also the trainer's sim gate's (WorkerSettings.sim_profile)
    window_ms: float = 200.0  # wall-clock pacing of a window (the sim's window is 200 ms);
    #   0 runs as fast as the loop can
    mode: str = "auto"  # auto | redis | embedded
    stop_after_swaps: int = 0  # >0: stop once this many hot-swaps were served ...
    after_swap_windows: int = 50  # ... and the last one served this many windows
    explore_epsilon: float = 0.2  # controller ε-exploration (the trainer needs varied actions)
    cold_start: str = "proportional"  # served until a trained policy passes the gate: the safe
    #   heuristic of a fresh install (proportional | static) or init (a random student)
    batch: bool = False  # one /v1/reports:batch request per window instead of one per cell
    trainer: bool = True  # False: serve only (no learning, no swaps)
    twin_service: bool = False  # Redis mode: also run `slicetwin twin`; agent 2 trains through it
    trainer_overrides: dict = field(default_factory=dict)  # WorkerSettings fields
    shadow: bool = True  # shadow baselines (equal, proportional, tuned, best fixed) beside it
    shadow_tuned: bool = True  # also the tuned heuristic (a ~6 s grid search at start)
    shadow_cells: int | None = 2  # cells whose best fixed split is tracked (None: all); each
    #   costs n_units - 2 simulated copies per window (docs/demo.md, "Shadow baselines")
    progress_every_s: float = 5.0  # plain mode: seconds between progress lines


@dataclass
class _Transport:
    mode: str  # "redis" | "embedded"
    redis: str | None = None  # "private" | "external"
    url: str | None = None
    prefix: str = "slicetwin:"
    server: RedisServer | None = None


def resolve_transport(mode: str) -> _Transport:
    if mode not in ("auto", "redis", "embedded"):
        raise ValueError(f"mode must be auto, redis or embedded, not {mode!r}")
    if mode == "embedded":
        return _Transport("embedded")
    url = env_redis_url()
    if url:
        return _Transport("redis", "external", url, f"slicetwin-demo-{secrets.token_hex(3)}:")
    if RedisServer.find():
        return _Transport("redis", "private")
    if mode == "redis":
        raise RuntimeError("--mode redis needs REDIS_URL or a redis-server binary on PATH")
    return _Transport("embedded")


class _Events:
    """Timestamped event lines shared by the loop, the trainer thread and the views."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.items: list[tuple[float, str]] = []
        self.total = 0
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self.items.append((time.monotonic() - self.t0, text))
            self.items = self.items[-50:]
            self.total += 1
        log.info(text)

    def snapshot(self) -> tuple[list, int]:
        with self._lock:
            return list(self.items), self.total


def _setup_logging(path: Path) -> logging.Handler:
    h = logging.FileHandler(path, mode="w")
    h.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s "
                                     "%(message)s"))
    root = logging.getLogger()
    root.addHandler(h)
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return h


def _trainer_settings(cfg: DemoConfig, tr: _Transport, data_dir: str,
                      twin_url: str | None = None, twin_api_key: str | None = None):
    codec = SimConfig.from_profile(cfg.profile).codec
    kw = {**_demo_trainer(cfg), "data_dir": data_dir, "seed": cfg.seed,
          "init_seed": cfg.seed, "redis_url": tr.url, "registry_prefix": tr.prefix,
          "consumer_name": "demo-trainer", "twin_url": twin_url, "env": "dev",
          "twin_api_key": twin_api_key, "cold_start": cfg.cold_start,
          # the trainer's codec is the simulated gNB's carrier and units
          "n_units": codec.n_units, "total_bandwidth_hz": codec.total_bandwidth_hz}
    return WorkerSettings(**kw)


def _demo_trainer(cfg: DemoConfig) -> dict:
    """The trainer's budgets and overrides, with the demo's profile for its sim gate (so a
    ``--trainer-set sim_gate=true`` gate judges on the traffic the demo serves)."""
    return {**DEMO_TRAINER, **cfg.trainer_overrides, "sim_profile": cfg.profile}


def _check_overrides(over: dict, profile: str) -> None:
    """Refuse unknown trainer settings (WorkerSettings ignores extras) before starting."""

    bad = sorted(set(over) - set(WorkerSettings.model_fields))
    if bad:
        raise ValueError(f"unknown trainer setting(s) {', '.join(bad)}; known: "
                         f"{', '.join(sorted(WorkerSettings.model_fields))}")
    if "sim_profile" in over:
        raise ValueError("trainer setting sim_profile follows the demo's --profile; set that")
    # types and ranges, with a clear message; the profile as the trainer will get it
    WorkerSettings(**{**DEMO_TRAINER, **over, "sim_profile": profile})


def demo_simulator(cfg: DemoConfig):
    """The fake gNB's cells: ``cfg.cells`` simulator cells of profile ``cfg.profile``."""

    return RanSimulator(SimConfig.from_profile(cfg.profile), n_cells=cfg.cells, seed=cfg.seed)


def _ping(url: str) -> None:
    r = connect(url, socket_timeout=3.0, socket_connect_timeout=3.0)
    try:
        r.ping()
    except Exception as e:  # noqa: BLE001 - any failure: say which URL and why
        raise RuntimeError(f"Redis at REDIS_URL={url} does not answer ({type(e).__name__}: {e})"
                           "; unset REDIS_URL to use a private redis-server or --mode embedded"
                           ) from None
    finally:
        r.close()


def _install_sigterm() -> object:
    """SIGTERM behaves like Ctrl-C (clean stop, summary written)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def run_demo(cfg: DemoConfig, echo=print) -> dict:
    """Run the loop; returns the summary (also written to ``cfg.out``/summary.json)."""
    _validate(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = _setup_logging(out / "demo.log")
    old_term = _install_sigterm()
    try:
        run = _DemoRun(cfg, out, echo)
        run.execute()
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    summary = run.summary()
    files = run.rec.write(out, summary)
    summary["files"] = [Path(f).name for f in files]
    print_summary(summary, out, echo)
    logging.getLogger().removeHandler(handler)
    handler.close()
    return summary


def _validate(cfg: DemoConfig) -> None:
    if cfg.cells < 1:
        raise ValueError("cells must be >= 1")
    SimConfig.from_profile(cfg.profile)  # a bad profile: ValueError naming the choices
    if cfg.cold_start not in ("proportional", "init"):
        raise ValueError("cold_start must be 'proportional' (the safe heuristic) or 'init' "
                         "(a random student)")
    _check_overrides(cfg.trainer_overrides, cfg.profile)
    if cfg.twin_service and (cfg.mode == "embedded" or not cfg.trainer):
        raise ValueError("--twin-service needs Redis mode and the trainer (the service loads "
                         "the trainer's twins from the Redis registry)")
    if cfg.trainer and importlib.util.find_spec("torch") is None:
        raise RuntimeError("the demo's trainer needs torch: pip install 'slicetwin[train]' "
                           "(or run --no-trainer to serve the initial policy only)")


class _DemoRun:
    """One demo run: start the parts in order, run the loop, stop everything (an ``ExitStack``
    of named parts, stopped in reverse order whatever happened), then summarise."""

    def __init__(self, cfg: DemoConfig, out: Path, echo):
        self.cfg, self.out, self.echo = cfg, out, echo
        self.t_boot = time.monotonic()
        self.events = _Events(self.t_boot)
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.tr = resolve_transport(cfg.mode)
        self.rec = Recorder(cfg.cells)
        self.promoted_at: dict[str, float] = {}
        # development mode for itself: the public registry keys (unless the user set a key),
        # and fresh bearer keys its gNB loop and trainer send to its controller and twin service
        self.hmac_key = os.environ.get("SLICETWIN_HMAC_KEY") or DEV_HMAC_KEY
        self.api_key = os.environ.get("SLICETWIN_API_KEY") or secrets.token_urlsafe(24)
        self.twin_api_key = secrets.token_urlsafe(24)
        self.teardown = ExitStack()
        self.parts: list[str] = []  # started parts, in start order
        self.stopped: dict[str, str] = {}
        self.trainer: TrainerThread | TrainerProcess | None = None
        self.twin_svc: TwinServiceProcess | None = None
        self.twin_model_at_end = None
        self.controller = None
        self.registry = None
        self.stopped_by = "duration" if cfg.windows is None else "windows"
        self.error: str | None = None
        self.initial_policy = None
        self.t_loop: float | None = None
        self.shadow: DemoShadow | None = None
        self._tuning: _Tuning | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="slicetwin-demo-trainer-")
        self._on_stop("trainer data", self.tmp.cleanup)

    def say(self, text: str) -> None:
        self.events.add(text)
        self.echo(f"[{time.monotonic() - self.t_boot:6.1f}s] {text}")

    # ------------------------------------------------------------------ the run
    def execute(self) -> None:
        try:
            if self.cfg.shadow and self.cfg.shadow_tuned:  # its grid search overlaps start-up
                self._tuning = _Tuning(SimConfig.from_profile(self.cfg.profile))
            self._start_transport()
            self._start_registry()
            self._start_controller()
            self._start_twin_service()
            self._start_trainer()
            self._run_loop()
        except KeyboardInterrupt:
            self.stopped_by = "interrupt"
        except Exception as e:  # noqa: BLE001 - reported, parts still stopped, summary written
            self.error = f"{type(e).__name__}: {e}"
            log.exception("demo failed")
            self.stopped_by = "error"
        finally:
            self.twin_model_at_end = self.twin_svc.model() if self.twin_svc is not None else None
            self._stop_everything()

    # ------------------------------------------------------------------ teardown
    def _on_stop(self, name: str, fn) -> None:
        self.parts.append(name)
        self.teardown.callback(self._stop_part, name, fn)

    def _stop_part(self, name: str, fn) -> None:
        t0 = time.monotonic()
        try:
            res = fn()
            self.stopped[name] = res if isinstance(res, str) else "stopped"
            log.info("stopped %s in %.2f s", name, time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            log.exception("stopping %s failed", name)
            self.stopped[name] = f"failed: {type(e).__name__}: {e}"

    def _stop_everything(self) -> None:
        self.echo("stopping: " + ", ".join(n for n in reversed(self.parts)
                                           if n not in ("http client", "trainer data")))
        try:
            self.teardown.close()
        except KeyboardInterrupt:  # a second Ctrl-C: the other parts were still stopped
            pass

    # ------------------------------------------------------------------ start-up steps
    def _start_transport(self) -> None:
        cfg, tr = self.cfg, self.tr
        if tr.mode == "redis" and tr.redis == "private":
            server = RedisServer()
            try:
                server.start()
            except (OSError, RuntimeError) as e:
                server.cleanup()
                if cfg.mode == "redis":
                    raise RuntimeError(f"could not start redis-server: {e}") from None
                self.say(f"redis-server did not start ({e}); falling back to embedded mode")
                self.tr = tr = _Transport("embedded")
            else:
                tr.server, tr.url = server, server.url
                self._on_stop("redis-server", server.cleanup)
                self.say(f"mode redis: private redis-server on {tr.url} (no persistence)")
        if tr.mode == "redis" and tr.redis == "external":
            _ping(tr.url)
            url, prefix = tr.url, tr.prefix
            self._on_stop("redis keys", lambda: clear_prefix(url, prefix))
            self.say(f"mode redis: REDIS_URL {url}, keys under {prefix!r} (deleted at the end)")
        elif tr.mode == "embedded":
            self.say("mode embedded: in-memory registry and transitions, controller in a thread")

    def _start_registry(self) -> None:
        tr = self.tr
        self.registry = (RedisRegistry(tr.url, self.hmac_key, tr.prefix) if tr.mode == "redis"
                         else MemoryRegistry(self.hmac_key))
        self._on_stop("registry", self.registry.close)

        def on_policy(version: str | None) -> None:
            if version is not None and version not in self.promoted_at and self.t_loop is not None:
                self.promoted_at[version] = time.monotonic() - self.t_loop

        watcher = self.registry.watch("policy", on_policy)  # before the controller's (embedded)
        self._on_stop("registry watch", watcher.stop)

    def _start_controller(self) -> None:
        cfg, tr = self.cfg, self.tr
        port = free_port()
        codec = SimConfig.from_profile(cfg.profile).codec
        env = controller_env(dict(os.environ), port=port, redis_url=tr.url, prefix=tr.prefix,
                             epsilon=cfg.explore_epsilon, explore_budget=10**9, seed=cfg.seed,
                             api_key=self.api_key, cold_start=cfg.cold_start,
                             n_units=codec.n_units, total_bandwidth_hz=codec.total_bandwidth_hz)
        if tr.mode == "redis":
            self.controller = ControllerProcess(env, port, self.out / "controller.log",
                                                inherit_env=False, ready_path="/readyz",
                                                own_session=True).start()
        else:
            self.controller = ControllerThread(env, port, self.registry).start()
        self._on_stop("controller", self.controller.stop)
        self.initial_policy = httpx.get(self.controller.url + "/v1/policy", timeout=5).json()
        where = "own process" if tr.mode == "redis" else "thread"
        self.say(f"controller ready at {self.controller.url} ({where}), serving "
                 f"{self.initial_policy.get('version')} (origin "
                 f"{self.initial_policy.get('origin')})")

    def _start_twin_service(self) -> None:
        if not self.cfg.twin_service:
            return
        tr = self.tr
        if tr.mode != "redis":
            raise RuntimeError("--twin-service needs Redis mode (no REDIS_URL and no "
                               "redis-server found)")
        self.twin_svc = TwinServiceProcess(dict(os.environ), tr.url, tr.prefix,
                                           self.out / "twin.log",
                                           api_key=self.twin_api_key).start()
        self._on_stop("twin service", self.twin_svc.stop)
        self.say(f"twin service starting at {self.twin_svc.url} (serves the trainer's twins as "
                 "they are promoted; agent 2 trains through it)")

    def _start_trainer(self) -> None:
        cfg, tr = self.cfg, self.tr
        if not cfg.trainer:
            return
        twin_url = self.twin_svc.url if self.twin_svc is not None else None
        settings = _trainer_settings(cfg, tr, self.tmp.name, twin_url, self.twin_api_key)
        if tr.mode == "embedded":
            self.trainer = TrainerThread(settings, self.registry,
                                         MemorySinkSource(self.controller.sink),
                                         self.events).start()
        else:
            self.trainer = TrainerProcess(settings, self.events, dict(os.environ),
                                          self.out / "trainer.log").start()
        trainer = self.trainer
        self._on_stop("trainer", lambda: _stop_trainer(trainer))
        self.say(f"trainer started: first Algorithm 1 cycle after {settings.min_transitions} "
                 f"transitions, then every {settings.min_new_transitions} new ones")

    # ------------------------------------------------------------------ the fake gNB loop
    def _run_loop(self) -> None:
        cfg, rec = self.cfg, self.rec
        sim = demo_simulator(cfg)
        sim.reset()
        codec, simcfg = sim.codec, sim.config
        shadow = self.shadow = self._start_shadow(sim)
        ids = [f"demo-{i}" for i in range(cfg.cells)]
        units = np.tile(codec.from_weights(np.ones(codec.n_slices)), (cfg.cells, 1))
        in_force = [("equal-split", False, True)] * cfg.cells  # (version, explored, fallback)
        w0 = int(time.time() * 1e6)
        period = max(cfg.window_ms, 0.0) / 1000.0
        limit = (f"{cfg.windows} windows" if cfg.windows is not None
                 else f"{cfg.duration_s:.0f} s")
        self.say(f"fake gNB: {cfg.cells} cells ({cfg.profile} traffic), one "
                 f"{simcfg.window_s * 1e3:.0f} ms window every "
                 f"{cfg.window_ms:.0f} ms, until {limit}")
        view = LiveView() if cfg.live else PlainView(cfg.progress_every_s,
                                                      skip_events=self.events.total)
        headers = {"content-type": "application/json",
                   "authorization": f"Bearer {self.api_key}"}
        client = httpx.Client(base_url=self.controller.url, timeout=5.0, headers=headers)
        self._on_stop("http client", client.close)
        self.t_loop = t_loop = time.monotonic()
        k = 0

        def snapshot():
            return _snapshot(cfg, self.tr, self.controller.url, t_loop, k, rec, self.trainer,
                             self.events, limit, self.twin_svc, shadow)

        with view:
            try:
                while not self._done(k, time.monotonic() - t_loop):
                    _window(k, rec, sim, units, in_force, ids, w0, client, cfg, codec, simcfg,
                            t_loop, self.events, self.promoted_at, self.trainer,
                            units_from_answer, shadow)
                    k += 1
                    view.update(snapshot())
                    if period:
                        delay = t_loop + k * period - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
            except KeyboardInterrupt:
                self.stopped_by = "interrupt"
            view.update(snapshot(), force=True)

    def _start_shadow(self, sim: RanSimulator) -> DemoShadow | None:
        """Shadow copies of the fresh cells (before their first window) under every baseline."""
        if not self.cfg.shadow:
            return None
        tuned, info = self._tuning.result() if self._tuning is not None else (None, None)
        shadow = DemoShadow(sim, tuned, info, self.cfg.shadow_cells)
        tuned_s = (f"; tuned heuristic {info['weights']} + {info['offsets']} grid-searched on "
                   f"training seed 0 in {self._tuning.seconds:.1f} s" if info else "")
        self.say(f"shadow baselines: {', '.join(shadow.names)} on all {sim.n_cells} cells and "
                 f"best fixed in hindsight on {shadow.n_bank} ({len(shadow.base.values)} "
                 f"per-slice unit counts each) replay the cells' own traffic{tuned_s}")
        return shadow

    def _done(self, k: int, elapsed: float) -> bool:
        cfg, swaps = self.cfg, self.rec.swaps
        if k >= cfg.windows if cfg.windows is not None else elapsed >= cfg.duration_s:
            return True
        if (cfg.stop_after_swaps and len(swaps) >= cfg.stop_after_swaps
                and k - swaps[cfg.stop_after_swaps - 1].window >= cfg.after_swap_windows):
            self.stopped_by = "swaps"
            return True
        return False

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        cfg, rec, trainer, twin_svc = self.cfg, self.rec, self.trainer, self.twin_svc
        t_loop, t_boot, tr = self.t_loop, self.t_boot, self.tr
        for ev in rec.swaps:
            ev.promoted_t = self.promoted_at.get(ev.new)
            if trainer is not None and ev.new in trainer.by_version:
                ev.cycle = trainer.by_version[ev.new]
        if self.shadow is not None:
            rec.best_fixed = self.shadow.best_fixed_per_window()
            rec.shadow_summary = self.shadow.summary()
        return rec.summary({
            "started_at": self.started_at, "stopped_by": self.stopped_by, "error": self.error,
            "mode": tr.mode, "redis": tr.redis, "redis_url": tr.url,
            "registry_prefix": tr.prefix if tr.url else None,
            "controller": self.controller.url if self.controller is not None else None,
            "profile": cfg.profile,
            "config": {**asdict(cfg), "trainer_settings": _demo_trainer(cfg)},
            "startup_seconds": (t_loop - t_boot) if t_loop is not None else None,
            "first_swap_after_start_s": (t_loop - t_boot + rec.swaps[0].t
                                         if rec.swaps and t_loop is not None else None),
            "initial_policy": (self.initial_policy or {}).get("version"),
            "final_policy": rec.serving,
            "promoted_versions": self.promoted_at,
            "trainer": ({"cycles": trainer.cycles,
                         "transitions": trainer.transitions,
                         "failed": trainer.failed, "twin_error": trainer.twin}
                        if trainer is not None else None),
            "twin_service": ({"url": twin_svc.url, "model_at_end": self.twin_model_at_end}
                             if twin_svc is not None else None),
            "stopped": self.stopped,
            "shadow_baselines": rec.shadow_summary,
        })


class _Tuning:
    """The tuned heuristic's grid search in a thread (it runs while the parts start)."""

    def __init__(self, config: SimConfig):
        self.seconds = 0.0
        self._out: tuple | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(config,), daemon=True,
                                        name="demo-tune-heuristic")
        self._thread.start()

    def _run(self, config: SimConfig) -> None:
        t0 = time.perf_counter()
        try:
            self._out = tune_heuristic(config)
        except BaseException as e:  # noqa: BLE001 - re-raised by result()
            self._error = e
        self.seconds = time.perf_counter() - t0

    def result(self) -> tuple:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out


def _stop_trainer(trainer) -> str:
    """A trainer process is killed after 3 s (its data is a temporary folder); a thread mid-cycle
    cannot be, so it is left to end with this process after 10 s."""
    timeout = 10.0 if isinstance(trainer, TrainerThread) else 3.0
    if trainer.stop(timeout):
        return "stopped"
    return (f"still inside a cycle after {timeout:.0f} s: "
            + ("left to end with this process" if timeout > 5 else "killed"))


def _window(k, rec: Recorder, sim, units, in_force, ids, w0, client, cfg, codec, simcfg, t_loop,
            events: _Events, promoted_at, trainer, units_from_answer,
            shadow: DemoShadow | None = None) -> None:
    """One window: step the cells under the allocations in force (and their shadows under the
    baselines), report, apply the answers."""

    applied = units.copy()
    _, kpis = sim.step(applied)
    util = np.asarray(kpis.utility, dtype=np.float64)
    # decisions of what is served: the policy, or the heuristic while a cold start serves it
    # (not the initial equal split, not exploration)
    heuristic_serves = cfg.cold_start != "init"
    policy_cells = np.array([not ex and (not fb or (heuristic_serves and v == "fallback"))
                             for v, ex, fb in in_force])
    baselines = shadow.record(util, policy_cells) if shadow is not None else {}
    version = Counter(v for v, _, _ in in_force).most_common(1)[0][0]
    reports = kpis.to_reports(ids, w0 + k, applied, simcfg)
    bodies = [r.model_dump_json(exclude_none=True) for r in reports]
    lat: list[float] = []
    answers: list[tuple[int, dict]] = []
    failed = 0

    def fail(kind: str) -> None:
        nonlocal failed
        failed += 1
        rec.failed += 1
        rec.errors[kind] += 1

    if cfg.batch:
        t = time.perf_counter()
        try:
            r = client.post("/v1/reports:batch", content='{"reports":[' + ",".join(bodies) + "]}")
            lat.append((time.perf_counter() - t) * 1e3)
            rec.requests += 1
            if r.status_code == 200:
                answers = list(enumerate(r.json()["decisions"]))
            else:
                fail(f"http {r.status_code}")
        except httpx.HTTPError as e:
            fail(type(e).__name__)
    else:
        for i, body in enumerate(bodies):
            t = time.perf_counter()
            try:
                r = client.post("/v1/reports", content=body)
            except httpx.HTTPError as e:
                fail(type(e).__name__)
                continue
            lat.append((time.perf_counter() - t) * 1e3)
            rec.requests += 1
            if r.status_code == 200:
                answers.append((i, r.json()))
            else:
                fail(f"http {r.status_code}")
    now = time.monotonic() - t_loop
    n_fb = n_ex = 0
    for i, ans in answers:
        rec.decisions += 1
        fb, ex = bool(ans.get("fallback")), bool(ans.get("explored"))
        n_fb += fb
        n_ex += ex
        v = str(ans.get("policy_version", "?"))
        try:
            units[i] = units_from_answer(ans, codec)
        except (ValueError, KeyError) as e:
            rec.invariant_violations += 1
            rec.errors["invariant"] += 1
            log.warning("invalid allocation from the controller: %s", e)
            continue
        in_force[i] = (v, ex, fb)
        ev = rec.note_answer_version(v, k, now)
        if ev is not None:
            _announce_swap(ev, events, promoted_at, trainer, rec)
    rec.fallback_decisions += n_fb
    rec.explored_decisions += n_ex
    rec.latencies_ms.extend(lat)
    share = applied / float(codec.n_units)
    rec.add(WindowRow(
        k=k, t=now, utility=float(util.mean()),
        utility_policy=float(util[policy_cells].mean()) if policy_cells.any() else float("nan"),
        ssr=np.asarray(kpis.ssr, dtype=np.float64).mean(0).tolist(),
        share=share.mean(0).tolist(), version=version, requests=len(lat), failed=failed,
        fallback=n_fb, explored=n_ex, baselines=baselines,
        latency_ms_p50=float(np.median(lat)) if lat else float("nan"),
        latency_ms_max=float(max(lat)) if lat else float("nan")))


def _announce_swap(ev: SwapEvent, events: _Events, promoted_at, trainer, rec: Recorder) -> None:
    p = promoted_at.get(ev.new)
    before = [r.utility_policy for r in rec.rows if r.version == ev.old][-50:]
    ub = float(np.nanmean(before)) if before and not np.isnan(before).all() else float("nan")
    delay = f", {ev.t - p:.2f} s after promotion" if p is not None else ""
    events.add(f"HOT-SWAP #{len(rec.swaps)}: {ev.old} -> {ev.new} at window {ev.window}"
               f"{delay}; no request dropped (utility of {ev.old} so far: {ub:.3f})")


def _snapshot(cfg, tr, url, t_loop, k, rec: Recorder, trainer, events: _Events, limit,
              twin_svc=None, shadow: DemoShadow | None = None) -> dict:
    items, total = events.snapshot()
    return {"mode": tr.mode if tr.mode == "embedded" else f"redis ({tr.redis})",
            "controller": url, "elapsed": time.monotonic() - events.t0, "window": k,
            "profile": cfg.profile,
            "cells": cfg.cells, "limit": limit, "recent": rec.recent(10),
            "serving": rec.serving, "swaps": len(rec.swaps), "fallback": rec.fallback_decisions,
            "explored": rec.explored_decisions, "failed": rec.failed, "requests": rec.requests,
            "latency": rec.latency(last=400),
            "trainer": {"status": trainer.status() if trainer is not None else "off"},
            "twin": trainer.twin if trainer is not None else None,
            "twin_service": ({"url": twin_svc.url, "state": twin_svc.state()}
                             if twin_svc is not None else None),
            "events": items, "events_total": total,
            "shadow": shadow.live_figures() if shadow is not None else None}


def print_summary(s: dict, out: Path, echo=print) -> None:
    """The end-of-run report: per-slice SSR, utility around each swap, versions, files."""

    c = Console()
    c.print(f"\n[bold]SliceTwin demo summary[/bold] ({s['mode']}, {s.get('profile', 'paper')} "
            f"traffic, stopped by {s['stopped_by']}"
            f"{', error: ' + s['error'] if s.get('error') else ''})")
    c.print(f"{s['windows']} windows x {s['config']['cells']} cells in "
            f"{(s.get('loop_seconds') or 0):.1f} s; requests {s['requests']}, failed "
            f"{s['failed_requests']}, invalid allocations {s['invariant_violations']}, fallback "
            f"decisions {s['fallback_decisions']}, explored {s['explored_decisions']}")
    lat = s.get("latency_ms") or {}
    c.print(f"request latency p50 {_n(lat.get('p50'))} ms, p99 {_n(lat.get('p99'))} ms")
    t = Table(title="versions served (windows whose allocations each version chose)")
    for col in ("version", "windows", "from s", "utility", *[f"SSR {n}" for n in
                                                           (s.get("ssr_mean") or {})]):
        t.add_column(col, justify="left" if col == "version" else "right")
    for seg in s.get("versions_served") or []:
        t.add_row(seg["version"], str(seg["windows"]), _n(seg.get("from_t_s"), ".1f"),
                  _n(seg.get("utility_policy")), *[_n(v) for v in (seg.get("ssr") or {}).values()])
    c.print(t)
    swaps = s.get("swaps") or []
    if swaps:
        for i, sw in enumerate(swaps, 1):
            c.print(f"[bold magenta]hot-swap {i}[/bold magenta] at {sw['t_s']:.1f} s (window "
                    f"{sw['window']}): {sw['from']} -> {sw['to']}; utility "
                    f"{_n(sw.get('utility_before'))} -> {_n(sw.get('utility_after'))}"
                    + (f"; served {sw['promote_to_serve_s']:.2f} s after promotion"
                       if sw.get("promote_to_serve_s") is not None else ""))
    elif s.get("trainer") is None:
        c.print("no hot-swap: the trainer was off (--no-trainer)")
    else:
        c.print("[yellow]no hot-swap happened in this run[/yellow] (the first comes after "
                f"{s['config']['trainer_settings'].get('min_transitions')} transitions plus one "
                "trainer cycle; run longer: --duration)")
    sh = s.get("shadow_baselines")
    if sh:
        for key, title in (("overall", "whole run"), ("last_5min", "last 5 minutes")):
            fig = sh.get(key) or {}
            c.print(f"shadow baselines, {title} ({fig.get('windows', 0)} windows), utility of "
                    f"policy decisions {shadow_line(fig)}; all cells {shadow_line(fig, 'all_cells')}",
                    markup=False, highlight=False)
        live = sh.get("live_loop") or {}
        if "worst_margin_vs_proportional" in live:
            def at(key):
                return "never" if live.get(key) is None else f"window {live[key]}"
            c.print(f"live loop ({live['block_windows']}-window blocks): worst margin over "
                    f"demand-proportional {live['worst_margin_vs_proportional']:+.1%}; reached "
                    f"99 % of best fixed at {at('windows_to_99pct_best_fixed')}, best fixed at "
                    f"{at('windows_to_best_fixed')}", markup=False, highlight=False)
    tw = (s.get("trainer") or {}).get("twin_error")
    if tw:
        c.print(f"twin (held-out, last fit): {twin_line(tw)}")
    c.print(f"files in {out}/: {', '.join(s.get('files') or [])}")


def _n(x, fmt: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)
