"""Fig. 5 / Fig. 6 of the paper: online training curves, plain agents vs twin-enhanced.

For each algorithm and seed this runs, on the same simulated traffic (same seed):
- ``baseline``: the agent alone, its own gradient steps per real interaction (``train_every``);
- ``twin``: Algorithm 1 (``--mode paper``) or the branched model-based mode (``--mode branched``),
  whose real-data updates use the same network, replay and ``train_every`` as ``baseline``;
- ``baseline-matched``: the agent alone with as many gradient steps per real interaction as the
  twin variant spends in total (real + twin), so a gain of ``twin`` over it is the twin's, not
  extra updates;
- ``random`` (``--algo random``): uniform random allocations.
A round is 200 real interactions. Every run writes ``runs/<algo>_<variant>_seed<k>.csv`` (round,
real_interactions, mean_reward, mean_utility, wall_time_s); the experiment writes one PNG per
algorithm (mean and 95 % band across seeds) and ``summary.json``.

Evaluation protocol (docs/training.md): training seeds lie in 0-999 (1000-1999 for probes; report
seeds are refused), and run k's greedy policy, its served ONNX student (``serve``) and the oracle
are measured on report seed 10000 + k; the summary gives mean, 95 % CI and per-seed values, and
names the reference of every ratio.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slicetwin.core import protocol
from slicetwin.core.state import STATE_DIM
from slicetwin.core.utility import RewardShaper
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim import RanSimulator, SimConfig
from slicetwin.sim.baselines import OraclePolicy, run_policy
from slicetwin.twin import Twin, TwinConfig
from trainer.agents import AGENTS, make_agent
from trainer.agents.envs import RealEnv, SimEnv
from trainer.agents.loop import Learner, run
from trainer.algorithm1 import Algorithm1Config, algorithm1, real_epsilon
from trainer.distill import DistillConfig, distill, pool_states
from trainer.export_onnx import export_policy

ALGOS = ("dqn", "ddqn", "dueling-ddqn", "gan-ddqn", "factored-ddqn", "random")
THRESHOLDS = (0.8, 0.9)


@dataclass
class OnlineExperimentConfig:
    algos: tuple[str, ...] = ("ddqn",)
    twin: bool = True  # also run the twin-enhanced agent and the matched-compute baseline
    mode: str = "paper"  # Algorithm 1 mode for the twin variant: "paper" | "branched"
    seeds: int = 5
    first_seed: int = 0  # seeds are first_seed .. first_seed + seeds - 1 (held-out checks: 5)
    rounds: int = 30  # rounds of 200 real interactions per run
    round_size: int = 200  # the paper's round
    n_cells: int = 4  # simulator cells stepped together (a vector env); divides round_size
    workers: int = 2  # runs in parallel processes (one torch thread each)
    smooth: int = 3  # trailing moving average (rounds) before testing a reward threshold
    final_rounds: int = 5  # final_reward / final_utility: mean over the last k rounds
    eval_windows: int = 50  # greedy evaluation after training, on report seed 10000 + seed
    oracle_windows: int = 50  # clairvoyant oracle (coarse search) on each seed's traffic
    # overrides of the agents' config dataclasses, for every variant alike: epsilon decays over
    # 2 rounds (the shaped reward punishes exploration; measured better for all variants), and
    # discount 0.5 instead of the agents' 0.8 (the task is nearly a contextual bandit; with 0.8
    # the bootstrap's max over 4851 noisy Q values made DQN decline after ~10 rounds, see
    # docs/training.md)
    agent: dict = field(default_factory=lambda: {"eps_decay_steps": 400, "gamma": 0.5})
    # overrides of Algorithm1Config (what the probes in docs/training.md found to work)
    algorithm1: dict = field(default_factory=lambda: {
        "twin_steps": 300, "twin_eps": 0.5, "rollout_batch": 128, "rollout_length": 2,
        "refit_every": 2, "twin_sample": False,
        # the twin used as a twin (probes in docs/training.md, 2026-12-01): 31 counterfactual
        # actions tried at every twin state, MOPO penalty λ = 1, ζ = 0.2 (trust agent 2), and
        # exploration moved into the twin: 100 random real interactions to fit it on, then
        # agent 1 acts with ε = eps_end in the real network
        "counterfactual_actions": 31, "uncertainty_penalty": 1.0, "zeta": 0.2,
        "initial_collect": 100, "collect_eps": 1.0, "real_eps_decay_steps": 1})
    # further overrides for --mode branched, applied after ``algorithm1`` (probes in
    # docs/training.md): every 50 real interactions 128 rollouts of 3 steps from recorded real
    # states (twin ε 0.3, ensemble-mean model, MOPO penalty λ = 1 × ensemble disagreement), a
    # twin refit every round, and the agent's own gradient budget (0.25 steps per real
    # interaction, like the baseline) with 20 % real rows per batch: more gradient steps made
    # DQN worse, with or without the twin
    algorithm1_branched: dict = field(default_factory=lambda: {
        "rollout_length": 3, "rollout_batch": 128, "twin_eps": 0.3, "real_ratio": 0.2,
        "updates_per_real": 0.25, "uncertainty_penalty": 1.0, "refit_every": 1,
        "rollout_every": 50})
    # greedy evaluation curve (measurement only, never trained on): every ``curve_every`` real
    # interactions up to ``curve_dense_until`` (then every round) the acting agent's greedy
    # policy runs ``curve_windows`` windows on fixed held-out traffic (seed + 10,000), reward
    # shaped at the current clock; a threshold counts as reached at the first point that holds
    # for ``curve_hold`` consecutive evaluations
    curve_every: int = 20
    curve_dense_until: int = 2_000
    curve_windows: int = 25
    curve_hold: int = 2
    twin_config: dict = field(default_factory=lambda: {"epochs": 40, "patience": 8,
                                                       "max_fit_seconds": 15.0})
    sim_profile: str | None = None  # SimConfig profile (None: the simulator default)
    # the evaluation protocol (docs/training.md): training seeds lie in 0-999 (1000-1999 for
    # probes), every evaluation runs on report seed 10000 + training seed, and each trained
    # agent is also measured as served: distilled into a ``student_hidden``-unit student,
    # exported to ONNX and run through the controller's runner (``serve``; 0 rounds = off)
    allow_any_seeds: bool = False
    student_hidden: int = 16
    distill_rounds: int = 2000

    def __post_init__(self) -> None:
        bad = [a for a in self.algos if a not in ALGOS]
        if bad:
            raise ValueError(f"unknown algo(s) {bad}; choose from {list(ALGOS)}")
        if self.mode not in ("paper", "branched"):
            raise ValueError(f"mode must be 'paper' or 'branched', got {self.mode!r}")
        if self.seeds < 1 or self.rounds < 1:
            raise ValueError("seeds and rounds must be >= 1")
        if self.first_seed < 0:
            raise ValueError(f"first_seed must be >= 0, got {self.first_seed}")
        if self.round_size % self.n_cells:
            raise ValueError(f"n_cells={self.n_cells} must divide the round size {self.round_size}")
        protocol.check_seeds(self.seed_role, self.seed_list, self.allow_any_seeds)

    @property
    def seed_role(self) -> str:
        """``tune`` for probes (seeds 1000-1999), else ``train``: the runs learn on their traffic."""
        return "tune" if protocol.in_range("tune", self.first_seed) else "train"

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @classmethod
    def quick(cls, **kw) -> OnlineExperimentConfig:
        """A smoke run (tests): 2 seeds x 3 rounds, a small network, a cheap twin."""
        base = dict(seeds=2, rounds=3, eval_windows=5, oracle_windows=3, smooth=1,
                    final_rounds=1, agent={"hidden": (64, 64), "learning_starts": 100,
                                           "eps_decay_steps": 400},
                    algorithm1={"twin_steps": 60, "rollout_batch": 32, "rollout_length": 3,
                                "updates_per_real": 1.0, "counterfactual_actions": 7,
                                "initial_collect": 100, "collect_eps": 1.0,
                                "real_eps_decay_steps": 1},
                    algorithm1_branched={}, curve_every=40, curve_windows=5,
                    twin_config={"epochs": 3, "patience": 2, "max_fit_seconds": 5.0,
                                 "ensemble": 2, "lstm_hidden": 16, "head_hidden": 16,
                                 "reward_hidden": (32, 32)},
                    distill_rounds=100)
        base.update(kw)
        return cls(**base)


# ------------------------------------------------------------------------------------ one run

@dataclass
class RunSpec:
    algo: str
    variant: str  # "baseline" | "baseline-matched" | "twin" | "random"
    seed: int
    cfg: OnlineExperimentConfig
    train_every: float | None = None  # gradient-step schedule override (matched baseline)

    @property
    def name(self) -> str:
        return f"{self.algo}_{self.variant}_seed{self.seed}"


def a1_config(cfg: OnlineExperimentConfig):
    a1 = Algorithm1Config(mode=cfg.mode, real_steps=cfg.round_size, initial_collect=cfg.round_size)
    a1 = replace(a1, **cfg.algorithm1)
    if cfg.mode == "branched":
        a1 = replace(a1, **cfg.algorithm1_branched)
    n = cfg.n_cells  # collections are whole vector steps
    a1 = replace(a1, initial_collect=n * math.ceil(a1.initial_collect / n))
    total = cfg.rounds * cfg.round_size
    left = max(total - a1.initial_collect, 0)
    return replace(a1, iterations=max(math.ceil(left / a1.real_steps), 1), max_interactions=total)


def _sim_config(cfg: OnlineExperimentConfig):
    if cfg.sim_profile is None:
        return None

    return SimConfig.from_profile(cfg.sim_profile)


def make_env(cfg: OnlineExperimentConfig, seed: int):
    return RealEnv(SimEnv(n_cells=cfg.n_cells, seed=seed, sim_config=_sim_config(cfg)))


def codec_fields(algo: str, codec) -> dict:
    """The action codec of an agent whose network indexes units (factored-ddqn's tables)."""
    names = {f.name for f in fields(AGENTS[algo].config_cls)}
    return {k: getattr(codec, k) for k in ("n_units", "min_units") if k in names}


def _train(spec: RunSpec, real, on_round: Callable[[int], None] | None = None) -> dict:
    """Train one agent in ``real`` for cfg.rounds rounds; returns {"agent", "info"}."""
    import torch  # lazy: torch


    cfg = spec.cfg
    rng = np.random.default_rng(spec.seed)
    torch.manual_seed(spec.seed)
    n_actions = real.env.n_actions
    total = cfg.rounds * cfg.round_size
    if spec.variant == "random":
        state = real.reset()
        for _ in range(total // real.n):
            state = real.step(rng.integers(0, n_actions, size=real.n)).next_state
            if on_round and real.interactions % cfg.round_size == 0:
                on_round(real.interactions // cfg.round_size)
        return {"agent": None, "info": {"grad_steps": 0}}
    agent = make_agent(spec.algo, STATE_DIM, n_actions, seed=spec.seed,
                       **{**codec_fields(spec.algo, real.env.codec), **cfg.agent})
    curve = GreedyCurve(agent, cfg, spec.seed)
    curve(0)
    real.observer = curve
    if spec.variant == "twin":

        a1 = a1_config(cfg)
        twin = Twin(TwinConfig(seed=spec.seed, **cfg.twin_config))
        res = algorithm1(agent, real, twin, a1, rng,
                         on_iteration=(lambda i: on_round(real.interactions // cfg.round_size))
                         if on_round else None)
        info = {"grad_steps": res.real_grad_steps + res.twin_grad_steps,
                "real_grad_steps": res.real_grad_steps, "twin_grad_steps": res.twin_grad_steps,
                "twin_transitions": res.twin_transitions,
                "seconds": {k: round(v, 2) for k, v in res.seconds.items()},
                "twin_fit_last": {k: v for k, v in (res.fits[-1] if res.fits else {}).items()
                                  if isinstance(v, (int, float))}}
        return {"agent": agent, "info": info, "curve": curve}
    learner = Learner(agent, rng, train_every=spec.train_every)
    eps = twin_epsilon(agent, cfg) if spec.variant == "baseline-twin-eps" else \
        (lambda t: agent.cfg.epsilon(t))
    state = real.reset()
    for r in range(cfg.rounds):
        state, _ = run(learner, real, state, cfg.round_size // real.n,
                       lambda: eps(real.interactions))
        if on_round:
            on_round(r + 1)
    return {"agent": agent, "info": {"grad_steps": learner.updates,
                                     "train_every": learner.train_every}, "curve": curve}


def twin_epsilon(agent, cfg: OnlineExperimentConfig) -> Callable[[int], float]:
    """The twin variant's real-network ε schedule, for the baseline that explores exactly like it."""

    return real_epsilon(agent.cfg, a1_config(cfg))


def _rounds_table(real, round_size: int, t_start: float) -> list[dict]:
    data = real.transitions()
    n_rounds = len(data) // round_size
    times = np.asarray(real.times)
    rows = []
    for r in range(n_rounds):
        sl = slice(r * round_size, (r + 1) * round_size)
        k = (r + 1) * round_size
        j = int(np.searchsorted(times[:, 0], k))
        rows.append({"round": r + 1, "real_interactions": k,
                     "mean_reward": round(float(data.reward[sl].mean()), 5),
                     "mean_utility": round(float(data.utility[sl].mean()), 5),
                     "wall_time_s": round(float(times[min(j, len(times) - 1), 1] - t_start), 3)})
    return rows


def first_crossing(reward: np.ndarray, n: int, window: int, thr: float) -> int | None:
    """First interaction count k (a multiple of ``n``, the interactions per vector step, and
    k >= ``window``) at which the mean reward of interactions (k - window, k] is >= ``thr``.

    The training curve at full resolution: the mean over one round's worth of interactions,
    tested after every step instead of only at round ends (None: never)."""
    r = np.asarray(reward, np.float64)
    if len(r) < window:
        return None
    c = np.concatenate([[0.0], np.cumsum(r)])
    ks = np.arange(n * math.ceil(window / n), len(r) + 1, n)
    hit = np.flatnonzero((c[ks] - c[ks - window]) / window >= thr - 1e-12)
    return int(ks[hit[0]]) if len(hit) else None


class GreedyCurve:
    """The acting agent's greedy policy on fixed held-out traffic at fixed interaction counts
    (hooked on ``RealEnv.observer``); measurement only: nothing here is trained on or counted."""

    def __init__(self, agent, cfg: OnlineExperimentConfig, seed: int):
        self.agent, self.cfg = agent, cfg
        self.seed = seed + 10_000
        self.sim = RanSimulator(_sim_config(cfg), n_cells=cfg.n_cells, seed=self.seed)
        self.shaper = RewardShaper()
        self.points: list[dict] = []
        self._next = 0

    def __call__(self, interactions: int) -> None:
        if self.agent is None or interactions < self._next:
            return
        c = self.cfg
        step = c.curve_every if interactions < c.curve_dense_until else c.round_size
        self._next = (interactions // step + 1) * step
        # (windows, cells) utilities on the same held-out traffic every time
        u = greedy_rollout(self.agent, self.sim, self.sim.reset(self.seed), c.curve_windows)
        rewards = [self.shaper.reward(row, interactions).mean() for row in u]
        self.points.append({"real_interactions": int(interactions),
                            "greedy_reward": round(float(np.mean(rewards)), 5),
                            "greedy_utility": round(float(u.mean()), 5)})

    def crossing(self, thr: float) -> int | None:
        """First evaluated interaction count from which ``curve_hold`` consecutive evaluations
        have greedy reward >= thr (None: never)."""
        r = np.array([p["greedy_reward"] for p in self.points])
        h = max(1, self.cfg.curve_hold)
        for i in range(len(r) - h + 1):
            if (r[i:i + h] >= thr - 1e-12).all():
                return self.points[i]["real_interactions"]
        return None


def report_seed(train_seed: int) -> int:
    """The report seed paired with a training seed (protocol: report seeds are 10000+)."""

    return protocol.RANGES["report"][0] + int(train_seed)


def greedy_utility(agent, cfg: OnlineExperimentConfig, seed: int) -> float:
    """Mean utility of the greedy policy on ``seed``'s traffic (the oracle's), not counted as
    training interactions; called with the run's report seed, never its training seed."""

    sim = RanSimulator(_sim_config(cfg), n_cells=cfg.n_cells, seed=seed)
    return float(greedy_rollout(agent, sim, sim.reset(), cfg.eval_windows).mean())


def greedy_rollout(agent, sim, s: np.ndarray, windows: int) -> np.ndarray:
    """Per-window, per-cell utility of ``agent``'s greedy policy over ``windows`` windows of
    ``sim`` from state ``s`` (measurement only: nothing is stored or trained on)."""
    utils = []
    for _ in range(windows):
        s, k = sim.step_actions(agent.greedy(s))
        utils.append(np.asarray(k.utility, np.float64))
    return np.stack(utils)


class ServedPolicy:
    """``act(sim, state)`` of an ONNX student through the controller's runner (as served)."""

    def __init__(self, onnx_policy: OnnxPolicy):
        self.policy = onnx_policy

    def act(self, sim, state: np.ndarray) -> np.ndarray:
        return np.asarray(self.policy.act_batch(np.asarray(state, np.float32)), np.int64)


def serve(q, states: np.ndarray, path: Path, n_units: int, hidden: int = 16,
          rounds: int = 2000, seed: int = 0, utility=None,
          metrics: dict | None = None) -> tuple[OnnxPolicy, float]:
    """A trained Q-network as it would serve: distilled on ``states`` into a ``hidden``-unit
    student (hard labels), exported to ``path`` and loaded with the controller's runner.
    Returns the runner and the student's top-1 agreement with ``q`` on held-out states."""
    res = distill(q, states, DistillConfig(hidden=hidden, rounds=rounds, seed=seed,
                                           eval_every=rounds))
    path = Path(path)
    export_policy(res.student, path, n_units=n_units, version=path.stem,
                  metrics={"agreement": res.agreement, **(metrics or {})}, utility=utility)
    return OnnxPolicy(path.read_bytes()), float(res.agreement)


def served_utility(agent, real, cfg: OnlineExperimentConfig, name: str, out_dir: str,
                   seed: int) -> dict:
    """The agent trained on ``seed``'s traffic as served (``serve``, distilled on its real
    states) on report seed 10000 + ``seed``: the traffic, cells and windows of
    ``greedy_utility`` and the oracle."""
    sim_cfg = _sim_config(cfg) or SimConfig()
    policy, agree = serve(agent.q, pool_states(real.transitions()),
                          Path(out_dir) / "models" / f"{name}.onnx", sim_cfg.n_units,
                          cfg.student_hidden, cfg.distill_rounds, seed, sim_cfg.utility)
    u = run_policy(ServedPolicy(policy), sim_cfg, cfg.eval_windows, cfg.n_cells,
                   report_seed(seed))
    return {"served_utility": u.mean_utility, "served_agreement": round(agree, 4)}


def run_one(spec: RunSpec, out_dir: str, progress: bool = False) -> dict:
    """One (algo, variant, seed) run: trains, writes its CSV, returns its rows and info."""
    import torch  # lazy: torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    real = make_env(spec.cfg, spec.seed)
    bar = None
    if progress:

        bar = tqdm(total=spec.cfg.rounds, desc=spec.name, leave=False)

    def tick(r: int) -> None:
        if bar is not None:
            bar.n = r
            bar.refresh()

    trained = _train(spec, real, tick)
    if bar is not None:
        bar.close()
    rows = _rounds_table(real, spec.cfg.round_size, t0)
    path = Path(out_dir) / "runs" / f"{spec.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = dict(trained["info"])
    info["real_interactions"] = real.interactions
    reward = real.transitions().reward[: spec.cfg.rounds * spec.cfg.round_size]
    info["crossing"] = {str(thr): first_crossing(reward, real.n, spec.cfg.round_size, thr)
                        for thr in THRESHOLDS}
    curve = trained.get("curve")
    if curve is not None and curve.points:
        info["greedy_crossing"] = {str(thr): curve.crossing(thr) for thr in THRESHOLDS}
        info["greedy_curve"] = curve.points
    info["wall_time_s"] = round(time.perf_counter() - t0, 2)
    info["grad_steps_per_real"] = round(info["grad_steps"] / max(real.interactions, 1), 4)
    if info.get("greedy_curve"):
        with open(path.with_name(f"{spec.name}_greedy.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(info["greedy_curve"][0]))
            w.writeheader()
            w.writerows(info["greedy_curve"])
    if trained["agent"] is not None and spec.cfg.eval_windows > 0:
        info["greedy_utility"] = greedy_utility(trained["agent"], spec.cfg,
                                                report_seed(spec.seed))
        if spec.cfg.distill_rounds > 0:
            info.update(served_utility(trained["agent"], real, spec.cfg, spec.name, out_dir,
                                       spec.seed))
    return {"algo": spec.algo, "variant": spec.variant, "seed": spec.seed, "rows": rows,
            "info": info, "csv": str(path)}


def oracle_utility(cfg: OnlineExperimentConfig, seed: int) -> float:
    """Clairvoyant one-step oracle (exact full search) on ``seed``'s traffic, same cells/windows as
    the greedy evaluation."""
    import torch  # lazy: torch


    torch.set_num_threads(1)

    sim_cfg = _sim_config(cfg) or SimConfig()
    return run_policy(OraclePolicy(search="full"), sim_cfg, cfg.oracle_windows, cfg.n_cells,
                      seed).mean_utility


# ------------------------------------------------------------------------------- the experiment

def specs(cfg: OnlineExperimentConfig) -> list[RunSpec]:
    """Every run of the experiment; the matched baseline's schedule comes from the twin config."""

    out = []
    for algo in cfg.algos:
        if algo == "random":
            out += [RunSpec("random", "random", s, cfg) for s in cfg.seed_list]
            continue
        out += [RunSpec(algo, "baseline", s, cfg) for s in cfg.seed_list]
        if cfg.twin:
            agent_cfg = replace(AGENTS[algo].config_cls(), **cfg.agent)
            a1 = a1_config(cfg)
            g = a1.grad_steps_per_real(agent_cfg.train_every)
            out += [RunSpec(algo, "twin", s, cfg) for s in cfg.seed_list]
            out += [RunSpec(algo, "baseline-matched", s, cfg, train_every=1.0 / g)
                    for s in cfg.seed_list]
            if a1.collect_eps is not None or a1.real_eps_decay_steps is not None:
                out += [RunSpec(algo, "baseline-twin-eps", s, cfg) for s in cfg.seed_list]
    return out


def interactions_to(rows_per_seed: list[list[dict]], thr: float, smooth: int) -> dict:
    """First real-interaction count at which the trailing mean reward over ``smooth`` rounds
    reaches ``thr``; a seed that never does counts as its total and is flagged."""
    values, total = [], []
    for rows in rows_per_seed:
        r = np.array([x["mean_reward"] for x in rows])
        k = max(1, min(smooth, len(r)))
        ma = np.convolve(r, np.ones(k) / k, mode="valid")  # ma[j] ends at round j + k
        hit = np.flatnonzero(ma >= thr)
        values.append(int(rows[hit[0] + k - 1]["real_interactions"]) if len(hit) else None)
        total.append(int(rows[-1]["real_interactions"]))
    return crossings_summary(values, total)


def crossings_summary(values: list[int | None], total: list[int]) -> dict:
    """Per-seed crossing points (None: never) in the summary's threshold format."""
    per_seed = [int(v) if v is not None else int(t) for v, t in zip(values, total, strict=True)]
    reached = [v is not None for v in values]
    return {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)),
            "ci95": protocol.mean_ci(per_seed)["ci95"], "per_seed": per_seed,
            "reached": reached, "never_reached": int(sum(not x for x in reached))}


def _mean_std(x) -> dict:
    """Mean, sd, 95 % CI over seeds (``protocol.mean_ci``) and the per-seed values."""
    x = np.asarray(x, float)
    return {**protocol.mean_ci(x), "mean": float(x.mean()), "std": float(x.std())}


# the paper's Fig. 5(b): DDQN reaches reward 0.8 after ~1500 rounds, DDQN-DT after ~1000
PAPER_FIG5B = {"threshold": 0.8, "baseline_rounds": 1500, "twin_rounds": 1000,
               "baseline_over_twin": 1.5}


def summarise(results: list[dict], cfg: OnlineExperimentConfig,
              oracle_per_seed: dict[int, float] | None) -> dict:
    """summary.json: per (algo, variant) thresholds, final figures, greedy utility against the
    oracle on the same seed's traffic; ``oracle_utility`` is the oracle's mean over seeds."""
    oracle_per_seed = oracle_per_seed or {}
    oracle = float(np.mean(list(oracle_per_seed.values()))) if oracle_per_seed else None
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["algo"], r["variant"]), []).append(r)
    configs = []
    for (algo, variant), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        rows = [r["rows"] for r in rs]
        k = max(1, min(cfg.final_rounds, len(rows[0])))
        c = {"algo": algo, "variant": variant, "twin": variant == "twin",
             "mode": cfg.mode if variant == "twin" else None, "seeds": len(rs),
             "rounds": len(rows[0]), "smooth_rounds": cfg.smooth}
        total = [r["info"]["real_interactions"] for r in rs]
        for thr in THRESHOLDS:
            key = f"interactions_to_reward_{thr}"
            if all("crossing" in r["info"] for r in rs):
                c[key] = crossings_summary([r["info"]["crossing"][str(thr)] for r in rs], total)
            else:
                c[key] = interactions_to(rows, thr, 1)
            c[f"{key}_rounds"] = interactions_to(rows, thr, cfg.smooth)
            if all("greedy_crossing" in r["info"] for r in rs):
                c[f"greedy_{key}"] = crossings_summary(
                    [r["info"]["greedy_crossing"][str(thr)] for r in rs], total)
        c["final_reward"] = _mean_std([np.mean([x["mean_reward"] for x in rw[-k:]]) for rw in rows])
        c["final_utility"] = _mean_std([np.mean([x["mean_utility"] for x in rw[-k:]]) for rw in rows])
        for kind in ("greedy", "served"):  # the greedy Q-network, and its ONNX student
            if not all(f"{kind}_utility" in r["info"] for r in rs):
                continue
            c[f"{kind}_utility"] = _mean_std([r["info"][f"{kind}_utility"] for r in rs])
            if all(r["seed"] in oracle_per_seed for r in rs):
                c[f"{kind}_utility_vs_oracle"] = _mean_std(
                    [r["info"][f"{kind}_utility"] / oracle_per_seed[r["seed"]] for r in rs])
        if all("served_agreement" in r["info"] for r in rs):
            c["served_agreement"] = _mean_std([r["info"]["served_agreement"] for r in rs])
        c["grad_steps_per_real"] = float(np.mean([r["info"]["grad_steps_per_real"] for r in rs]))
        c["wall_time_s"] = _mean_std([r["info"]["wall_time_s"] for r in rs])
        c["runs"] = [{"seed": r["seed"], "csv": os.path.relpath(r["csv"], start=os.getcwd()),
                      **{k2: v for k2, v in r["info"].items()
                         if k2 not in ("greedy_utility", "greedy_curve")}}
                     for r in rs]
        configs.append(c)
    out = {"configs": configs, "oracle_utility": oracle,
           "oracle_utility_per_seed": {str(k): v for k, v in sorted(oracle_per_seed.items())}}
    for c in configs:
        if oracle:
            c["final_utility_vs_oracle"] = round(c["final_utility"]["mean"] / oracle, 4)
    # every ratio names its reference: KEY_ratio_to_REF = mean(variant) / mean(REF) over the
    # same training seeds, KEY_ratio_to_REF_per_seed the per-seed ratios with their CI;
    # served utility: the paired difference against REF's served student on each report seed
    for ref in ("baseline", "baseline-matched", "baseline-twin-eps"):
        base = {c["algo"]: c for c in configs if c["variant"] == ref}
        for c in configs:
            b = base.get(c["algo"])
            if b is None or c is b or c["seeds"] != b["seeds"]:
                continue
            for thr in THRESHOLDS:
                for key in (f"interactions_to_reward_{thr}", f"interactions_to_reward_{thr}_rounds",
                            f"greedy_interactions_to_reward_{thr}"):
                    if key in c and key in b:
                        c[f"{key}_ratio_to_{ref}"] = round(
                            c[key]["mean"] / max(b[key]["mean"], 1), 4)
                        c[f"{key}_ratio_to_{ref}_per_seed"] = protocol.mean_ci(
                            [x / max(y, 1) for x, y in zip(c[key]["per_seed"],
                                                           b[key]["per_seed"], strict=True)])
            if "served_utility" in c and "served_utility" in b:
                c[f"served_utility_diff_vs_{ref}"] = protocol.paired(
                    c["served_utility"]["per_seed"], b["served_utility"]["per_seed"])
    out["paper_fig5b"] = paper_comparison(configs)
    out["protocol"] = {
        "seed_role": cfg.seed_role, "train_seeds": cfg.seed_list,
        "report_seeds": [report_seed(s) for s in cfg.seed_list],
        "seed_override": cfg.allow_any_seeds,
        "evaluation": f"{cfg.eval_windows} windows x {cfg.n_cells} cells of report seed 10000 "
                      f"+ training seed (greedy and served policies, oracle)",
        "oracle": "full-search clairvoyant (one-step)",
        "served": f"{cfg.student_hidden}-unit student, {cfg.distill_rounds} distillation "
                  f"rounds, ONNX through the controller's runner" if cfg.distill_rounds else None,
        "statistics": "mean, 95 % CI (Student t over seeds), per seed"}
    out["setup"] = {k: v for k, v in asdict(cfg).items()}
    return out


def paper_comparison(configs: list[dict]) -> dict:
    """Beside the paper's Fig. 5(b) figure (baseline / twin = 1.5 in rounds to reward 0.8): our
    baselines' real interactions to reward 0.8 over the twin variant's, per algorithm (mean of
    the means, and the per-seed ratios with their CI)."""
    key = f"interactions_to_reward_{PAPER_FIG5B['threshold']}"
    out: dict = {"paper": PAPER_FIG5B, "measure": key}
    twins = {c["algo"]: c for c in configs if c["variant"] == "twin" and key in c}
    for c in configs:
        t = twins.get(c["algo"])
        if t is None or c is t or c["variant"] not in ("baseline", "baseline-matched") \
                or c["seeds"] != t["seeds"]:
            continue
        out.setdefault(c["algo"], {})[f"{c['variant']}_over_twin"] = {
            "of_means": round(c[key]["mean"] / max(t[key]["mean"], 1), 4),
            "per_seed": protocol.mean_ci([x / max(y, 1) for x, y in zip(
                c[key]["per_seed"], t[key]["per_seed"], strict=True)])}
    return out


def plot(results: list[dict], out: Path, cfg: OnlineExperimentConfig) -> list[Path]:
    """One PNG per algorithm: mean reward and utility per round, mean and 95 % band over seeds."""
    import matplotlib  # lazy: matplotlib, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when plotting

    paths = []
    colors = {"baseline": "tab:blue", "baseline-matched": "tab:green", "twin": "tab:red",
              "baseline-twin-eps": "tab:purple", "random": "tab:gray"}
    by_algo: dict[str, dict[str, list[list[dict]]]] = {}
    curves: dict[str, dict[str, list[list[dict]]]] = {}
    for r in results:
        by_algo.setdefault(r["algo"], {}).setdefault(r["variant"], []).append(r["rows"])
        if r["info"].get("greedy_curve"):
            curves.setdefault(r["algo"], {}).setdefault(r["variant"], []).append(
                r["info"]["greedy_curve"])
    randoms = by_algo.pop("random", {}).get("random")
    for algo, variants in (by_algo or {"random": {"random": randoms}}).items():
        if randoms is not None and algo != "random":
            variants = {**variants, "random": randoms}
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
        labels = {"twin": f"{algo} + twin ({cfg.mode})", "baseline": algo,
                  "baseline-matched": f"{algo}, matched grad steps",
                  "baseline-twin-eps": f"{algo}, twin's exploration", "random": "random"}
        for variant, pts in curves.get(algo, {}).items():
            n = min(len(p) for p in pts)
            x = np.array([p["real_interactions"] for p in pts[0][:n]])
            y = np.array([[p["greedy_utility"] for p in pp[:n]] for pp in pts])
            m = y.mean(0)
            half = 1.96 * y.std(0, ddof=1) / math.sqrt(len(y)) if len(y) > 1 else 0 * m
            axes[2].plot(x, m, color=colors[variant], label=labels[variant])
            axes[2].fill_between(x, m - half, m + half, color=colors[variant], alpha=0.2)
        axes[2].set_xlim(0, cfg.curve_dense_until)
        axes[2].set_xlabel("real interactions")
        axes[2].set_ylabel("greedy policy utility, held-out traffic")
        axes[2].set_title(f"greedy policy, every {cfg.curve_every} interactions", fontsize=9)
        axes[2].grid(alpha=0.3)
        for variant, runs in variants.items():
            n = min(len(x) for x in runs)
            x = np.array([row["real_interactions"] for row in runs[0][:n]]) / cfg.round_size
            for ax, key in zip(axes[:2], ("mean_reward", "mean_utility"), strict=True):
                y = np.array([[row[key] for row in rr[:n]] for rr in runs])
                m = y.mean(0)
                half = 1.96 * y.std(0, ddof=1) / math.sqrt(len(y)) if len(y) > 1 else 0 * m
                label = labels[variant]
                ax.plot(x, m, color=colors[variant], label=label)
                ax.fill_between(x, m - half, m + half, color=colors[variant], alpha=0.2)
        for ax, key in zip(axes[:2], ("mean reward", "mean utility"), strict=True):
            ax.set_xlabel(f"round ({cfg.round_size} real interactions)")
            ax.set_ylabel(f"{key} per round")
            ax.grid(alpha=0.3)
        axes[0].legend(loc="lower right", fontsize=8)
        fig.suptitle(f"online training, {algo}: mean and 95% band over {cfg.seeds} seeds")
        fig.tight_layout()
        p = out / f"online_{algo}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def load_results(out: Path) -> list[dict]:
    """Rebuild ``run_experiment``'s per-run results from a finished run's CSVs (to re-plot)."""
    results = []
    for path in sorted((Path(out) / "runs").glob("*_seed*.csv")):
        if path.stem.endswith("_greedy"):
            continue
        algo, variant, seed = path.stem.rsplit("_", 2)[0], path.stem.rsplit("_", 2)[1], \
            int(path.stem.rsplit("_seed", 1)[1])
        with open(path) as f:
            rows = [{k: float(v) if k in ("mean_reward", "mean_utility", "wall_time_s") else int(v)
                     for k, v in r.items()} for r in csv.DictReader(f)]
        info: dict = {}
        curve = path.with_name(f"{path.stem}_greedy.csv")
        if curve.exists():
            with open(curve) as f:
                info["greedy_curve"] = [{"real_interactions": int(r["real_interactions"]),
                                         "greedy_reward": float(r["greedy_reward"]),
                                         "greedy_utility": float(r["greedy_utility"])}
                                        for r in csv.DictReader(f)]
        results.append({"algo": algo, "variant": variant, "seed": seed, "rows": rows,
                        "info": info, "csv": str(path)})
    return results


def init_torch_worker() -> None:
    """Process-pool initialiser: one torch thread per worker (the workers are the parallelism)."""
    import torch  # lazy: torch

    torch.set_num_threads(1)


def run_experiment(cfg: OnlineExperimentConfig, out: Path, progress: bool = True) -> dict:
    """Run every spec (in ``cfg.workers`` processes), then write PNGs and summary.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = specs(cfg)
    results: list[dict] = []
    oracle: dict[int, float] = {}
    oracle_seeds = cfg.seed_list if cfg.oracle_windows > 0 else []
    t0 = time.perf_counter()

    bar = tqdm(total=len(todo) + len(oracle_seeds), desc="online experiment",
               disable=not progress)
    if cfg.workers <= 1:
        for s in todo:
            bar.set_postfix_str(s.name)
            results.append(run_one(s, str(out), progress=progress))
            bar.update(1)
        for seed in oracle_seeds:
            oracle[seed] = oracle_utility(cfg, report_seed(seed))
            bar.update(1)
    else:

        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn"),
                                 initializer=init_torch_worker) as ex:
            futs = {ex.submit(run_one, s, str(out)): s for s in todo}
            ofs = {ex.submit(oracle_utility, cfg, report_seed(seed)): seed
                   for seed in oracle_seeds}
            for f in as_completed([*futs, *ofs]):
                if f in ofs:
                    oracle[ofs[f]] = f.result()
                else:
                    results.append(f.result())
                    bar.set_postfix_str(futs[f].name)
                bar.update(1)
    bar.close()
    summary = summarise(results, cfg, oracle)
    summary["total_wall_time_s"] = round(time.perf_counter() - t0, 1)
    summary["plots"] = [str(p.name) for p in plot(results, out, cfg)]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def train_for_experiment(agent: str, use_twin: bool, seed: int, interactions: int,
                         hidden: tuple[int, ...] = (256, 256, 128, 128), n_units: int = 100,
                         env_factory=None, progress: bool = False, mode: str = "paper") -> dict:
    """Train one agent for ``interactions`` real interactions, with the twin (Algorithm 1) or
    without; for the distillation/offline/landscape experiments.

    Returns {"q": online network (state -> Q over actions), "transitions": the real data
    (Transitions), "agent", "info"}. ``env_factory(seed)`` gives the BatchEnv (default: the
    simulator, 4 cells).
    """

    rounds = max(1, math.ceil(interactions / 200))
    base = OnlineExperimentConfig()
    cfg = OnlineExperimentConfig(algos=(agent,), twin=use_twin, mode=mode, seeds=1, rounds=rounds,
                                 # keeps the agents' own discount (0.8): the distillation,
                                 # offline and landscape figures were measured with it
                                 agent={**{k: v for k, v in base.agent.items() if k != "gamma"},
                                        "hidden": tuple(hidden)},
                                 twin_config={**base.twin_config, "n_units": n_units})
    if env_factory is not None:
        real = RealEnv(env_factory(seed))
        cfg = replace(cfg, n_cells=real.n)
    else:
        real = make_env(cfg, seed)
    if n_units != 100 and env_factory is None:
        raise ValueError("n_units != 100 needs an env_factory building that simulator")
    spec = RunSpec(agent, "twin" if use_twin else "baseline", seed, cfg)
    trained = _train(spec, real)
    return {"q": trained["agent"].q, "agent": trained["agent"], "transitions": real.transitions(),
            "info": trained["info"]}
