"""``slicetwin experiment adapt``: how fast the served policy recovers after a regime change.

One simulator runs a two-phase schedule (``SimConfig`` schedules, e.g. ``paper:500,flash-crowd:1000``
windows) on training seed i. Per seed:

1. **Before the change** one agent (the compare grid's plain variant: its own ε schedule and
   gradient steps) trains on the first phase; it is distilled into the 16-unit student, exported
   to ONNX and loaded with the controller's runner: the policy served when the change comes.
2. **At the change** the simulator's state is copied once per variant, so every variant meets the
   same users, backlogs and random numbers, and (arrivals never depend on the allocation) the same
   post-change traffic. The learner is told of the change: each variant starts a fresh replay and
   the twin variant's exploration (100 uniformly random interactions, then ε = 0.05).
   - ``twin``: Algorithm 1 (``trainer.algorithm1``, the online experiment's defaults) from the
     pre-change agent, with a fresh learned twin fitted on post-change real data only;
   - ``twin-plan``: the twin as a planner: at every refresh it is refitted on the real data and
     rates every split at real post-change states; the served student is regressed onto those
     ratings (``trainer.twin_plan``) with ``matched``'s gradient steps per real interaction;
   - ``matched``: no twin, the same gradient steps per real interaction as ``twin`` spends on real
     and twin data together, and the same real-network exploration;
   - ``twin-eps`` (optional): no twin, the agent's own gradient steps, the same exploration.
3. **What is measured is the served policy**: every ``refresh_every`` real windows the acting
   agent is distilled into a new student (ONNX through ``OnnxPolicy``), the demo trainer's publish
   cycle. A shadow copy of the real cells, taken at the change, runs the served students on the
   same traffic, window by window; the best fixed split of the new regime (exact search,
   ``slicetwin.sim.search``) is measured on those same post-change windows.

``slicetwin.experiments.adapt_measures`` turns the curves into windows-to-95 % and worst dips.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slicetwin.core import protocol
from slicetwin.core.slices import N_SLICES
from slicetwin.core.state import STATE_DIM
from slicetwin.core.transitions import Transitions
from slicetwin.experiments import adapt_measures as am
from slicetwin.experiments.distill import write_csv
from slicetwin.experiments.online import OnlineExperimentConfig, a1_config, init_torch_worker
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim import SimConfig
from slicetwin.sim.search import (
    best_split,
    contributions,
    diagonal_clones,
    step_diagonal,
    unit_values,
)
from slicetwin.twin import Twin, TwinConfig
from trainer.agents import make_agent
from trainer.agents.envs import RealEnv, SimEnv
from trainer.agents.loop import EnvStep, Learner, run
from trainer.algorithm1 import algorithm1, real_epsilon
from trainer.distill import DistillConfig, distill, pool_states
from trainer.export_onnx import to_onnx
from trainer.plan_distill import FactoredStudent, PlanDistillConfig
from trainer.twin_plan import TwinPlanConfig, fit_to_twin, plan_rows

VARIANTS = ("twin", "twin-plan", "matched", "twin-eps")
TWIN_VARIANTS = ("twin", "twin-plan")  # each is compared with ``matched``
ALGOS = ("factored-ddqn", "ddqn")


def ratio_key(variant: str) -> str:
    """summary.json key of a twin variant's windows over matched's."""
    return f"{variant.replace('-', '_')}_over_matched_windows"


@dataclass
class AdaptConfig:
    schedule: str = "paper:500,flash-crowd:300"  # PROFILE:WINDOWS,PROFILE:WINDOWS
    seeds: int = 5
    first_seed: int = 0  # seeds first_seed .. + seeds - 1: training range (tuning for probes)
    allow_any_seeds: bool = False
    algo: str = "factored-ddqn"
    variants: tuple[str, ...] = ("twin", "twin-plan", "matched")
    cells: int = 4  # cells of the real network; one real window = one step of all cells
    refresh_every: int = 25  # K: real windows between served-student refreshes
    smooth: int = 25  # trailing windows of the smoothed utility (windows-to-target)
    dip_windows: int = 50
    target: float = 0.95  # share of the new regime's best fixed
    student_hidden: int = 16
    distill_rounds: int = 500  # the pre-change student, distilled from scratch
    refresh_rounds: int = 100  # each refresh continues from the served student (warm start)
    pool: int = 4000  # newest real transitions whose states a student is distilled on
    plan_rows: int = 96  # twin-plan: real states the twin plans on per refresh
    plan_pre_rows: int = 2000  # twin-plan: pre-change rows a twin refit may add (as many as post)
    plan_futures: int = 0  # twin-plan: 0 the twin's mean; k the mean of k sampled windows
    workers: int = 2
    online: dict = field(default_factory=dict)  # OnlineExperimentConfig overrides (+ "quick")

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose from {list(ALGOS)}")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ValueError(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
        if min(self.seeds, self.cells, self.refresh_every, self.smooth, self.dip_windows,
               self.distill_rounds, self.refresh_rounds, self.workers) < 1:
            raise ValueError("seeds, cells, refresh_every, smooth, dip_windows, distill_rounds, "
                             "refresh_rounds and workers must be >= 1")
        if self.plan_rows < 1 or min(self.plan_pre_rows, self.plan_futures) < 0:
            raise ValueError("plan_rows must be >= 1, plan_pre_rows and plan_futures >= 0")
        if not 0 < self.target <= 1.5:
            raise ValueError(f"target must be in (0, 1.5], got {self.target}")
        pre, post = self.phase_windows
        if post < max(self.smooth, self.dip_windows):
            raise ValueError(f"the post-change phase ({post} windows) must last at least the "
                             f"smoothing ({self.smooth}) and dip ({self.dip_windows}) windows")
        if 200 % self.cells:
            raise ValueError(f"cells={self.cells} must divide Algorithm 1's round of 200")
        protocol.check_seeds(self.seed_role, self.seed_list, self.allow_any_seeds)

    @property
    def seed_role(self) -> str:
        """``tune`` for probes (seeds 1000-1999), else ``train``: the run learns on its traffic."""
        return "tune" if protocol.in_range("tune", self.first_seed) else "train"

    @property
    def sim_config(self) -> SimConfig:
        cfg = SimConfig.from_profile(self.schedule)  # a ValueError names the choices
        if len(cfg.schedule) != 2:
            raise ValueError(f"the schedule needs exactly two phases (before and after the "
                             f"change) with their windows, got {self.schedule!r}")
        return cfg

    @property
    def phase_windows(self) -> tuple[int, int]:
        return tuple(n for _, n in self.sim_config.schedule)  # type: ignore[return-value]

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def online_config(self, post_interactions: int) -> OnlineExperimentConfig:
        over = dict(self.online)
        make = OnlineExperimentConfig.quick if over.pop("quick", False) else OnlineExperimentConfig
        rounds = max(1, -(-post_interactions // 200))
        return make(algos=(self.algo,), seeds=1, rounds=rounds, n_cells=self.cells,
                    eval_windows=0, oracle_windows=0, **over)

    @classmethod
    def quick(cls, **kw) -> AdaptConfig:
        """Smoke run (the fast test suite): 2 seeds, 2 cells, a short schedule, tiny networks."""
        base = dict(schedule="paper:40,flash-crowd:60", seeds=2, cells=2, refresh_every=20,
                    smooth=10, dip_windows=20, distill_rounds=50, refresh_rounds=20, workers=1,
                    plan_rows=16,
                    online={"quick": True})
        base.update(kw)
        return cls(**base)


# ------------------------------------------------------------------------------ building blocks

class ContinuingEnv:
    """A BatchEnv over an already running simulator: ``reset()`` returns the current state
    instead of restarting, so a learner can take over the real network mid-run."""

    def __init__(self, env: SimEnv, state: np.ndarray):
        self.env, self.state, self.n = env, np.asarray(state, np.float32), env.n

    @property
    def n_actions(self) -> int:
        return self.env.n_actions

    def reset(self) -> np.ndarray:
        return self.state

    def step(self, actions: np.ndarray) -> EnvStep:
        out = self.env.step(actions)
        self.state = out.next_state
        return out


def copy_env(env: SimEnv) -> SimEnv:
    """An independent SimEnv whose simulator continues from ``env``'s exact state."""
    twin = SimEnv(n_cells=env.n, seed=env.seed, shaper=env.shaper, sim_config=env.sim.config)
    twin.sim = env.sim.replicate_many(np.arange(env.n))
    twin.clock = env.clock
    return twin


def best_fixed_curve(sim, windows: int) -> dict:
    """The best fixed split over the next ``windows`` windows of ``sim`` (one split for all
    cells, chosen in hindsight on exactly these windows) and its per-window utility (mean over
    cells). Exact: every slice's utility depends only on its own units, so one copy per unit
    count measures all splits (``slicetwin.sim.search``); ``sim`` itself is not advanced."""
    codec = sim.codec
    v = unit_values(codec)
    clone, units = diagonal_clones(sim, np.arange(sim.n_cells))
    per_window = np.empty((windows, sim.n_cells, len(v), N_SLICES))
    for w in range(windows):
        per_window[w] = contributions(clone, step_diagonal(clone, units)).reshape(
            sim.n_cells, len(v), N_SLICES)
    action, _ = best_split(per_window.mean((0, 1)), codec)
    split = np.asarray(codec.decode(np.asarray([int(action)])), np.int64).reshape(N_SLICES)
    j = split - v[0]
    curve = per_window[:, :, j, np.arange(N_SLICES)].sum(-1).mean(1)
    return {"action": int(action), "units": split.tolist(), "curve": curve}


class ServedStudent:
    """The policy the controller would serve, and its shadow cells.

    Hooked on the post-change ``RealEnv.observer``: after every real window the shadow (a copy of
    the real cells taken at the change) runs one window with the served student's actions, and
    every ``refresh_every`` windows the acting agent is distilled, exported to ONNX and loaded
    with the controller's runner. Measurement only: nothing here is counted or trained on."""

    def __init__(self, agent, real: RealEnv, shadow, state: np.ndarray, first: tuple,
                 cfg: AdaptConfig, seed: int, sim_cfg: SimConfig, label: str, teacher=None):
        self.agent, self.real, self.shadow, self.cfg = agent, real, shadow, cfg
        self.teacher = teacher  # None: distil the acting agent; else teacher(version) -> served
        self.state = np.asarray(state, np.float32)
        self.policy, self.student = first  # (OnnxPolicy served, its torch student)
        self.seed, self.sim_cfg, self.label = seed, sim_cfg, label
        self.utility: list[float] = []
        self.arrived: list[int] = []
        self.version: list[int] = []
        self.refreshes: list[dict] = []
        self._n = 0

    def __call__(self, interactions: int) -> None:
        windows = interactions // self.real.n
        while self._n < windows:
            a = np.asarray(self.policy.act_batch(self.state), np.int64)
            self.state, k = self.shadow.step_actions(a)
            self.utility.append(float(np.mean(k.utility)))
            self.arrived.append(int(np.sum(k.arrived)))
            self.version.append(len(self.refreshes))
            self._n += 1
            if self._n % self.cfg.refresh_every == 0:
                self.refresh()

    def refresh(self) -> None:
        t0 = time.perf_counter()
        version = f"{self.label}-w{self._n}"
        if self.teacher is not None:
            self.policy, agreement, self.student = self.teacher(version)
        else:
            states = pool_states(self.real.transitions(last=self.cfg.pool))
            self.policy, agreement, self.student = serve(
                self.agent, states, self.cfg, self.seed, self.sim_cfg, version, init=self.student)
        self.refreshes.append({"window": self._n, "agreement": round(agreement, 4),
                               "seconds": round(time.perf_counter() - t0, 2)})


def serve(agent, states: np.ndarray, cfg: AdaptConfig, seed: int, sim_cfg: SimConfig,
          version: str, init=None) -> tuple[OnnxPolicy, float, object]:
    """Distil ``agent`` on ``states`` into the student (from scratch, or ``refresh_rounds``
    continuing from ``init``), export it to ONNX and load it with the controller's runner (as
    the trainer publishes and the controller serves). Returns (policy, agreement, student)."""
    was_training = agent.q.training
    rounds = cfg.distill_rounds if init is None else cfg.refresh_rounds
    res = distill(agent.q, states, DistillConfig(hidden=cfg.student_hidden, rounds=rounds,
                                                 seed=seed, eval_every=rounds), init=init)
    agent.q.train(was_training)  # distillation puts the teacher in eval mode
    blob = to_onnx(res.student, n_units=sim_cfg.n_units, total_bandwidth_hz=sim_cfg.bandwidth_hz,
                   version=version, metrics={"agreement": res.agreement},
                   utility=sim_cfg.utility).SerializeToString()
    return OnnxPolicy(blob), res.agreement, res.student


class TwinPlanTeacher:
    """The twin-plan variant's refresh: refit the twin on the real data so far, let it rate every
    split at real post-change states (``trainer.twin_plan``), and regress those ratings onto the
    table-head student (continuing from the last one) with the gradient-step budget per real
    interaction that the matched baseline gets too."""

    def __init__(self, twin, real: RealEnv, pre: Transitions | None, cfg: AdaptConfig,
                 seed: int, sim_cfg: SimConfig, budget: float):
        self.twin, self.real, self.pre, self.cfg = twin, real, pre, cfg
        self.seed, self.sim_cfg, self.budget = seed, sim_cfg, budget
        self.plan = TwinPlanConfig(plan_rows=cfg.plan_rows, futures=cfg.plan_futures)
        self.rng = np.random.default_rng([seed, 2])
        self.model: FactoredStudent | None = None
        self.grad_steps = self._paid = 0
        self.seconds = {"twin_fit": 0.0, "plan": 0.0, "regress": 0.0}

    def __call__(self, version: str) -> tuple[OnnxPolicy, float, object]:
        import torch  # lazy: torch

        t0 = time.perf_counter()
        data = self.real.transitions()
        if self.pre is None:
            fit_on = data
        else:  # balanced: as many of the newest pre-change rows as there are post-change ones
            k = min(len(self.pre), len(data))
            fit_on = Transitions.concat([self.pre[len(self.pre) - k:], data])
        self.twin.fit(fit_on)
        t1 = time.perf_counter()
        rows = plan_rows(len(data), self.plan, self.rng)
        steps = int(round(self.budget * self.real.interactions)) - self._paid
        self._paid += steps
        pcfg = PlanDistillConfig(hidden=self.cfg.student_hidden, steps=max(steps, 1),
                                 holdout=0.0, seed=self.seed + len(self.seconds) + self._paid)
        fit = fit_to_twin(self.twin, data, rows, self.sim_cfg.codec, pcfg, init=self.model,
                          futures=self.plan.futures, seed=self.seed + self.real.interactions,
                          chunk=self.plan.chunk)
        self.model = fit.model
        self.grad_steps += max(steps, 1)
        student = self.model.to_student()
        with torch.no_grad():
            chosen = student(torch.as_tensor(data.state[rows])).argmax(-1).numpy()
        agreement = float(np.mean(chosen == fit.ratings.argmax(-1)))
        blob = to_onnx(student, n_units=self.sim_cfg.n_units,
                       total_bandwidth_hz=self.sim_cfg.bandwidth_hz, version=version,
                       metrics={"agreement": agreement},
                       utility=self.sim_cfg.utility).SerializeToString()
        self.seconds["twin_fit"] += t1 - t0
        self.seconds["plan"] += fit.plan_s
        self.seconds["regress"] += fit.fit_s
        return OnnxPolicy(blob), agreement, student


# ------------------------------------------------------------------------------------ one seed

def adapt_seed(cfg: AdaptConfig, seed: int) -> dict:
    """Pre-change training, then every variant from the same change point; one journal row."""
    import torch  # lazy: torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sim_cfg = cfg.sim_config
    pre_windows, post = cfg.phase_windows
    post_inter = post * cfg.cells
    ocfg = cfg.online_config(post_inter)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = SimEnv(n_cells=cfg.cells, seed=seed, sim_config=sim_cfg)
    real_pre = RealEnv(env)
    agent = make_agent(cfg.algo, STATE_DIM, env.n_actions, seed=seed, **ocfg.agent)
    state = real_pre.reset()
    # reset's warm-up window is not counted: the first phase is pre_windows steps
    steps = pre_windows
    learner = Learner(agent, rng)
    state, _ = run(learner, real_pre, state, steps, lambda: agent.cfg.epsilon(real_pre.interactions))
    if env.sim.phase_index() != 1:
        raise RuntimeError("the pre-change phase did not end where the schedule says")
    policy, first_agree, student = serve(
        agent, pool_states(real_pre.transitions(last=cfg.pool)), cfg, seed, sim_cfg, "pre-change")
    first = (policy, student)
    t_pre = time.perf_counter() - t0
    _log(seed, f"pre-change phase done in {t_pre:.0f} s (agreement {first_agree:.3f})")
    best = best_fixed_curve(env.sim, post)
    _log(seed, f"best fixed {best['units']} = {best['curve'].mean():.3f}")
    a1 = replace(a1_config(ocfg), max_interactions=post_inter)
    out = {"seed": seed, "pre_change": {"interactions": real_pre.interactions,
                                        "grad_steps": learner.updates,
                                        "agreement": round(first_agree, 4),
                                        "seconds": round(t_pre, 1)},
           "best_fixed": {"action": best["action"], "units": best["units"],
                          "mean": float(best["curve"].mean())},
           "best_fixed_curve": best["curve"].tolist(), "variants": {}}
    twin0, pre = None, None
    if "twin-plan" in cfg.variants:  # the twin as it stood at the change, fitted on pre-change data
        pre_data = real_pre.transitions()
        twin0 = Twin(TwinConfig(seed=seed, **ocfg.twin_config))
        twin0.fit(pre_data)
        if cfg.plan_pre_rows:
            kept = pre_data[len(pre_data) - min(cfg.plan_pre_rows, len(pre_data)):]
            # negative window numbers: histories never stitch a pre-change row to a post one
            pre = replace(kept, window=kept.window - int(kept.window.max()) - 2)
        _log(seed, f"pre-change twin fitted ({len(pre_data)} transitions)")
    for variant in cfg.variants:
        out["variants"][variant] = run_variant(cfg, variant, seed, agent, env, state, first,
                                               a1, ocfg, sim_cfg, post, twin0, pre)
        m = measure(cfg, out | {"variants": {variant: out["variants"][variant]}})[variant]
        _log(seed, f"{variant}: {out['variants'][variant]['seconds']:.0f} s, windows to "
                   f"target {m['windows_to_target']}, mean ratio {m['mean_ratio']}")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _log(seed: int, msg: str) -> None:
    """One progress line per phase of a seed (workers are separate processes)."""
    print(f"[adapt seed {seed} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_variant(cfg: AdaptConfig, variant: str, seed: int, agent0, env0: SimEnv,
                state: np.ndarray, first: tuple, a1, ocfg, sim_cfg: SimConfig,
                post: int, twin0: Twin | None = None, pre: Transitions | None = None) -> dict:
    """One variant from the change point: learns in a copy of the real cells while the served
    student is measured on a shadow copy of the same cells."""
    import torch  # lazy: torch

    t0 = time.perf_counter()
    torch.manual_seed(seed + 1)
    rng = np.random.default_rng([seed, 1])  # the same exploration draws for every variant
    agent = agent0.clone()
    env = copy_env(env0)
    real = RealEnv(ContinuingEnv(env, state))
    shadow = env0.sim.replicate_many(np.arange(env0.n))
    served = ServedStudent(agent, real, shadow, state, first, cfg, seed, sim_cfg, variant)
    real.observer = served
    eps = real_epsilon(agent.cfg, a1)
    budget = a1.grad_steps_per_real(agent.cfg.train_every)  # what twin spends, matched gets
    info: dict = {"configured_grad_steps_per_real": round(budget, 4)}
    if variant == "twin-plan":
        teacher = TwinPlanTeacher(Twin.from_bytes(twin0.to_bytes()), real, pre, cfg, seed,
                                  sim_cfg, budget)
        served.teacher = teacher
        s = real.reset()
        for _ in range(post):  # the served student acts, with the same exploration
            a = np.asarray(served.policy.act_batch(s), np.int64)
            explore = rng.random(len(a)) < eps(real.interactions)
            if explore.any():
                a[explore] = rng.integers(0, real.env.n_actions, size=int(explore.sum()))
            s = real.step(a).next_state
        info |= {"grad_steps": teacher.grad_steps, "twin_fits": len(served.refreshes),
                 "seconds_by_part": {k: round(v, 1) for k, v in teacher.seconds.items()}}
    elif variant == "twin":
        twin = Twin(TwinConfig(seed=seed, **ocfg.twin_config))
        res = algorithm1(agent, real, twin, a1, rng)
        info |= {"grad_steps": res.real_grad_steps + res.twin_grad_steps,
                "real_grad_steps": res.real_grad_steps, "twin_grad_steps": res.twin_grad_steps,
                "twin_fits": len(res.fits),
                "seconds_by_part": {k: round(v, 1) for k, v in res.seconds.items()}}
    else:
        learner = Learner(agent, rng, train_every=1.0 / budget if variant == "matched" else None)
        run(learner, real, real.reset(), post, lambda: eps(real.interactions))
        info |= {"grad_steps": learner.updates, "train_every": round(learner.train_every, 4)}
    if real.interactions != post * cfg.cells or len(served.utility) != post:
        raise RuntimeError(f"{variant}: {real.interactions} interactions and "
                           f"{len(served.utility)} served windows, expected {post} windows")
    data = real.transitions()
    real_arrived = np.asarray(data.arrived).reshape(post, cfg.cells, -1).sum((1, 2))
    if not np.array_equal(real_arrived.astype(np.int64), np.asarray(served.arrived)):
        raise RuntimeError(f"{variant}: the shadow cells saw other traffic than the real ones")
    info["grad_steps_per_real"] = round(info["grad_steps"] / real.interactions, 4)
    return {"served": served.utility, "behaviour": np.asarray(data.utility).reshape(
                post, cfg.cells).mean(1).tolist(),
            "arrived": served.arrived, "version": served.version,
            "refreshes": served.refreshes, "info": info,
            "seconds": round(time.perf_counter() - t0, 1)}


# ------------------------------------------------------------------------------------- summary

def measure(cfg: AdaptConfig, row: dict) -> dict:
    """Per variant of one seed: windows to the target, the worst dip, start and end ratios."""
    best = np.asarray(row["best_fixed_curve"])
    out = {}
    for v, r in row["variants"].items():
        served = np.asarray(r["served"])
        ratio = am.smoothed_ratio(served, best, cfg.smooth)
        out[v] = {"windows_to_target": am.windows_to_target(served, best, cfg.smooth, cfg.target),
                  "dip": am.worst_dip(served, best, cfg.dip_windows),
                  "first_ratio": round(float(ratio[0]), 4),
                  "final_ratio": round(float(served[-cfg.dip_windows:].sum()
                                             / best[-cfg.dip_windows:].sum()), 4),
                  "mean_ratio": round(float(served.sum() / best.sum()), 4)}
    return out


def summarise(cfg: AdaptConfig, rows: list[dict]) -> dict:
    rows = sorted(rows, key=lambda r: r["seed"])
    _, post = cfg.phase_windows
    per = [measure(cfg, r) for r in rows]
    variants: dict = {}
    for v in cfg.variants:
        raw = [p[v]["windows_to_target"] for p in per]
        counted, n_cens = am.censored(raw, post)
        dips = [p[v]["dip"] for p in per]
        variants[v] = {
            "windows_to_target": {**protocol.mean_ci(counted), "per_seed_raw": raw,
                                  "censored": n_cens, "censored_counted_as": post},
            "dip_utility": protocol.mean_ci([d["utility"] for d in dips]),
            "dip_ratio_to_best_fixed": protocol.mean_ci([d["ratio"] for d in dips]),
            "dip_end_window": [d["end_window"] for d in dips],
            "first_ratio": protocol.mean_ci([p[v]["first_ratio"] for p in per]),
            "final_ratio": protocol.mean_ci([p[v]["final_ratio"] for p in per]),
            "mean_ratio": protocol.mean_ci([p[v]["mean_ratio"] for p in per]),
            "grad_steps_per_real": float(np.mean(
                [r["variants"][v]["info"]["grad_steps_per_real"] for r in rows])),
            "configured_grad_steps_per_real": rows[0]["variants"][v]["info"].get(
                "configured_grad_steps_per_real"),
            "train_every": rows[0]["variants"][v]["info"].get("train_every"),
        }
    result: dict = {"experiment": "adapt", "variants": variants}
    base = "matched" if "matched" in cfg.variants else None
    for tv in (v for v in TWIN_VARIANTS if v in cfg.variants and base):
        tw = variants[tv]["windows_to_target"]["per_seed"]
        bl = variants[base]["windows_to_target"]["per_seed"]
        boot = am.bootstrap_ratio(tw, bl)
        result[ratio_key(tv)] = {
            **boot, "per_seed": [round(a / b, 4) for a, b in zip(tw, bl, strict=True)],
            "per_seed_mean": protocol.mean_ci([a / b for a, b in zip(tw, bl, strict=True)]),
            "censored_matched": variants[base]["windows_to_target"]["censored"],
            "censored_twin": variants[tv]["windows_to_target"]["censored"],
            "floor": 1 / 3, "meets_floor": bool(boot["ratio"] <= 1 / 3),
            "meets_floor_with_confidence": bool(boot["ci95_high"] <= 1 / 3)}
    result["best_fixed"] = {"mean": protocol.mean_ci([r["best_fixed"]["mean"] for r in rows]),
                            "units_per_seed": [r["best_fixed"]["units"] for r in rows],
                            "measured_on": "the same post-change windows and cells the run's "
                                           f"served policy is measured on ({cfg.seed_role} "
                                           "seeds), not report traffic"}
    result["per_seed"] = {r["seed"]: p for r, p in zip(rows, per, strict=True)}
    result["protocol"] = {
        "seeds": [r["seed"] for r in rows], "seed_role": cfg.seed_role,
        "pre_change_windows": cfg.phase_windows[0], "post_change_windows": post,
        "cells": cfg.cells, "refresh_every_windows": cfg.refresh_every,
        "smoothing": f"trailing {cfg.smooth}-window sums, served over best fixed on the same "
                     f"windows", "dip": f"lowest {cfg.dip_windows}-window mean after the change",
        "target": cfg.target,
        "served": "16-unit student distilled from the acting agent, ONNX via OnnxPolicy"}
    result["refresh_seconds_mean"] = round(float(np.mean(
        [f["seconds"] for r in rows for v in r["variants"].values() for f in v["refreshes"]]
        or [0.0])), 2)
    result["seed_seconds"] = [r["seconds"] for r in rows]
    result["config"] = asdict(cfg)
    return result


def curve_rows(rows: list[dict]) -> list[dict]:
    """adapt.csv: one row per seed, variant and post-change window."""
    out = []
    for r in sorted(rows, key=lambda r: r["seed"]):
        best = r["best_fixed_curve"]
        for v, d in r["variants"].items():
            for w in range(len(best)):
                out.append({"seed": r["seed"], "variant": v, "window": w + 1,
                            "served_utility": round(d["served"][w], 6),
                            "best_fixed_utility": round(best[w], 6),
                            "behaviour_utility": round(d["behaviour"][w], 6),
                            "arrived": d["arrived"][w], "student": d["version"][w]})
    return out


def markdown(s: dict) -> str:
    p = s["protocol"]
    lines = [f"# experiment adapt: `{s['config']['schedule']}`", "",
             f"Seeds {p['seeds']} ({p['seed_role']} range), {p['cells']} cells, change after "
             f"{p['pre_change_windows']} windows, {p['post_change_windows']} windows after it; "
             f"served student refreshed every {p['refresh_every_windows']} windows; smoothing: "
             f"{p['smoothing']}; target {p['target']:.0%} of the new best fixed.", "",
             "| variant | windows to target (mean ± 95 % CI) | per seed (None: never) | "
             "worst dip utility | dip / best fixed | first / last ratio | grad steps per real |",
             "|---|---|---|---|---|---|---|"]
    for v, d in s["variants"].items():
        w = d["windows_to_target"]
        lines.append(f"| {v} | {w['mean']:.1f} ± {w['ci95'] or 0:.1f} (censored {w['censored']})"
                     f" | {w['per_seed_raw']} | {d['dip_utility']['mean']:.3f} | "
                     f"{d['dip_ratio_to_best_fixed']['mean']:.3f} ± "
                     f"{d['dip_ratio_to_best_fixed']['ci95'] or 0:.3f} | "
                     f"{d['first_ratio']['mean']:.3f} / {d['final_ratio']['mean']:.3f} | "
                     f"{d['grad_steps_per_real']:.2f} |")
    for tv in TWIN_VARIANTS:
        r = s.get(ratio_key(tv))
        if r:
            lines += ["", f"`{tv}` / matched windows: **{r['ratio']}** (bootstrap 95 % CI "
                      f"{r['ci95_low']}–{r['ci95_high']}; per seed {r['per_seed']}); floor "
                      f"≤ 0.333: {'met' if r['meets_floor'] else 'missed'}."]
    lines += ["", f"New best fixed: {s['best_fixed']['mean']['mean']:.3f} "
              f"(units per seed {s['best_fixed']['units_per_seed']}; measured on "
              f"{s['best_fixed']['measured_on']})."]
    return "\n".join(lines) + "\n"


def plot(out: Path, cfg: AdaptConfig, rows: list[dict], s: dict) -> Path | None:
    try:
        import matplotlib  # lazy: optional plotting dependency

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # lazy: optional plotting dependency
    except ImportError:
        return None
    best = np.asarray([r["best_fixed_curve"] for r in rows])
    k = cfg.smooth
    x = np.arange(k, best.shape[1] + 1)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    b = np.asarray([am.trailing_sums(c, k) / k for c in best])
    ax.plot(x, b.mean(0), color="k", lw=1.2, label="new best fixed (hindsight)")
    ax.plot(x, cfg.target * b.mean(0), color="k", lw=0.8, ls="--",
            label=f"{cfg.target:.0%} of best fixed")
    colours = {"twin": "#d95f02", "twin-plan": "#7570b3", "matched": "#1f78b4",
               "twin-eps": "#33a02c"}
    for v in cfg.variants:
        y = np.asarray([am.trailing_sums(r["variants"][v]["served"], k) / k for r in rows])
        rr = np.asarray([am.smoothed_ratio(r["variants"][v]["served"], r["best_fixed_curve"], k)
                         for r in rows])
        for a, z in ((ax, y), (ax2, rr)):
            m = z.mean(0)
            half = (protocol.t95(len(z)) * z.std(0, ddof=1) / np.sqrt(len(z))
                    if len(z) > 1 else np.zeros_like(m))
            a.plot(x, m, color=colours.get(v), label=f"{v} (served student)")
            a.fill_between(x, m - half, m + half, color=colours.get(v), alpha=0.2)
        w = s["variants"][v]["windows_to_target"]["mean"]
        ax2.axvline(w, color=colours.get(v), ls=":", lw=1)
    ax2.axhline(cfg.target, color="k", ls="--", lw=0.8)
    ax.set_ylabel(f"utility, trailing {k}-window mean")
    ax2.set_ylabel("served / best fixed (same windows)")
    ax2.set_xlabel(f"real windows after the change ({cfg.cells} cells each); dotted: mean "
                   f"windows to {cfg.target:.0%}")
    ax.set_title(f"{cfg.schedule}, {cfg.algo}, {len(rows)} seeds (mean, 95 % CI)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    p = out / "adapt.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


# ------------------------------------------------------------------------------------- driver

def _finished(journal: Path, cfg: AdaptConfig) -> list[dict]:
    """Seeds of an earlier, interrupted run with the same configuration (``--resume``)."""
    if not journal.exists():
        return []
    rows = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    same = _config_key(cfg)
    return [r for r in rows if r.get("config_key") == same and r["seed"] in cfg.seed_list]


def _config_key(cfg: AdaptConfig) -> str:
    """What the runs depend on: the measuring settings (target, smoothing, dip) are left out, so
    ``--resume`` with another ``--target`` measures the same runs again without re-running them."""
    return json.dumps(asdict(cfg) | {"seeds": 0, "workers": 0, "target": 0, "smooth": 0,
                                     "dip_windows": 0}, sort_keys=True)


def run_adapt(cfg: AdaptConfig, out: Path, progress: bool = True, resume: bool = False) -> dict:
    """Every seed (``cfg.workers`` processes), then ``summary.json``, ``adapt.csv``,
    ``adapt.md`` and ``adapt.png``. Each finished seed is appended to ``seeds.jsonl``;
    ``resume`` skips the seeds found there with the same settings."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    journal = out / "seeds.jsonl"
    rows = _finished(journal, cfg) if resume else []
    if not resume:
        journal.write_text("")
    todo = [s for s in cfg.seed_list if s not in {r["seed"] for r in rows}]
    key = _config_key(cfg)

    def record(row: dict) -> None:
        row["config_key"] = key
        with open(journal, "a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)

    bar = tqdm(total=len(todo), desc="experiment adapt", disable=not progress)
    if cfg.workers <= 1 or len(todo) <= 1:
        for s in todo:
            bar.set_postfix_str(f"seed {s}")
            record(adapt_seed(cfg, s))
            bar.update(1)
    else:
        with ProcessPoolExecutor(min(cfg.workers, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=init_torch_worker) as ex:
            futs = {ex.submit(adapt_seed, cfg, s): s for s in todo}
            for f in as_completed(futs):
                record(f.result())
                bar.set_postfix_str(f"seed {futs[f]}")
                bar.update(1)
    bar.close()
    result = summarise(cfg, rows)
    result["total_wall_time_s"] = round(time.perf_counter() - t0, 1)
    write_csv(out / "adapt.csv", curve_rows(rows))
    (out / "adapt.md").write_text(markdown(result))
    png = plot(out, cfg, sorted(rows, key=lambda r: r["seed"]), result)
    result["files"] = ["summary.json", "adapt.csv", "adapt.md", "seeds.jsonl"] + (
        [png.name] if png else [])
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    return result
