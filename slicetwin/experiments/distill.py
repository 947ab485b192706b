"""Fig. 8: distil DT-trained and plain teachers into 4- and 16-unit students.

For each teacher kind ("dt": trained with the digital twin, Algorithm 1; "no-dt": the same agent
without the twin) and seed: train the teacher, take the states of its experience pool, distil a
student per width (hard labels, paper eq. 12), export it to ONNX, and measure on the simulator
the mean utility of teacher, students (run from the ONNX file through the controller's runner,
i.e. exactly what would serve) and a random policy, all on the same evaluation seeds.

Evaluation protocol (docs/training.md): pair i trains its teachers on training seed
``first_seed + i`` and measures every policy on report seed ``first_report_seed + i`` (10000+),
``eval_cells`` x ``eval_steps`` windows, the traffic ``slicetwin baselines`` measures on; the
summary gives mean, 95 % CI and per-seed values, the paired DT-minus-no-DT difference, and, with
a ``slicetwin baselines`` summary of the same traffic (``baselines``), ratios to best fixed
(hindsight) and the oracle.

Outputs in ``--out``: ``distill.csv`` (one row per student), ``distill_curves.csv`` (agreement and
utility over distillation rounds), ``distill.png`` (Fig. 8 curves), ``summary.json``, and the
ONNX files under ``models/``.

The helpers ``evaluate_policy``, ``greedy`` and ``train_agent`` are shared with the offline and
landscape experiments.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slicetwin.core import protocol
from slicetwin.core.actions import ActionCodec
from slicetwin.experiments.online import train_for_experiment
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim import SimConfig
from trainer.agents.envs import SimEnv
from trainer.agents.loop import EnvStep
from trainer.distill import DistillConfig, distill
from trainer.export_onnx import export_policy

Act = Callable[[np.ndarray], np.ndarray]
EnvFactory = Callable[[int], object]  # seed -> BatchEnv (reset() / step(actions) -> EnvStep)


# ------------------------------------------------------------------------------- shared helpers

def sim_env_factory(n_cells: int = 8, n_units: int = 100) -> EnvFactory:
    """Simulator cells as a BatchEnv (``trainer.agents.envs.SimEnv``)."""

    def make(seed: int):
        cfg = None
        if n_units != 100:

            cfg = SimConfig(n_units=n_units)
        return SimEnv(n_cells=n_cells, seed=seed, sim_config=cfg)

    return make


class ToyAllocationEnv:
    """A small known problem with the simulator's interface, for tests and smoke runs.

    Each window draws i.i.d. per-slice loads in [0, 1); utility = 3 - 4 * L1 distance between the
    allocation's bandwidth shares and the load shares, so the best action is the proportional
    split. The next state does not depend on the action (a contextual bandit, like the RAN task
    at gamma -> 0).
    """

    def __init__(self, n: int = 8, seed: int = 0, n_units: int = 20):
        self.n, self.seed = n, seed
        self.codec = ActionCodec(n_units=n_units)
        self.n_actions = self.codec.n_actions
        self.frac = self.codec.table / self.codec.n_units
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros((n, 3), np.float32)

    def _draw(self) -> np.ndarray:
        return (0.05 + self.rng.random((self.n, 3))).astype(np.float32)

    def reset(self) -> np.ndarray:
        self.rng = np.random.default_rng(self.seed)
        self.state = self._draw()
        return self.state

    def utility(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        w = states / states.sum(1, keepdims=True)
        return 3.0 - 4.0 * np.abs(self.frac[actions] - w).sum(1)

    def best_actions(self, states: np.ndarray) -> np.ndarray:
        w = states / states.sum(1, keepdims=True)
        return np.abs(self.frac[None] - w[:, None]).sum(-1).argmin(1)

    def step(self, actions: np.ndarray):
        u = self.utility(self.state, np.asarray(actions, np.int64)).astype(np.float32)
        self.state = self._draw()
        return EnvStep(self.state, u.copy(), u)


def greedy(q: nn.Module) -> Act:
    def act(states: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return q(torch.as_tensor(np.asarray(states, np.float32))).argmax(1).numpy()
    return act


def random_act(n_actions: int, seed: int = 0) -> Act:
    rng = np.random.default_rng(seed)
    return lambda s: rng.integers(0, n_actions, size=len(s))


def evaluate_policy(act: Act, env_factory: EnvFactory, n_steps: int, seeds=(10_001,),
                    warmup: int = 5) -> float:
    """Mean utility per cell-window of ``act`` over ``n_steps`` windows per evaluation seed.

    The first ``warmup`` windows are dropped (the simulator starts with empty queues).
    """
    utils = []
    for seed in seeds:
        env = env_factory(int(seed))
        s = env.reset()
        for t in range(n_steps + warmup):
            out = env.step(np.asarray(act(s), np.int64))
            if t >= warmup:
                utils.append(np.asarray(out.utility, np.float64))
            s = out.next_state
    return float(np.mean(np.concatenate(utils)))


@dataclass
class TrainedAgent:
    q: nn.Module  # state -> Q over all actions (the teacher / theta_2)
    states: np.ndarray  # experience-pool states (distillation inputs)
    transitions: object | None = None  # slicetwin.core.transitions.Transitions of the real interactions
    info: dict = field(default_factory=dict)
    target: nn.Module | None = None  # the agent's target network (TD targets for landscapes)


def train_agent(kind: str, seed: int, env_factory: EnvFactory, interactions: int,
                agent: str = "ddqn", hidden: tuple[int, ...] = (256, 256, 128, 128),
                n_units: int = 100, progress: bool = False) -> TrainedAgent:
    """Teacher / reference agent: ``kind`` "dt" = Algorithm 1 with the twin, "no-dt" = the same
    agent trained on real interactions only, with the same real-interaction budget."""

    use_twin = kind == "dt"
    if kind not in ("dt", "no-dt"):
        raise ValueError(f"teacher kind must be 'dt' or 'no-dt', got {kind!r}")
    res = train_for_experiment(agent=agent, use_twin=use_twin, seed=seed,
                               interactions=interactions, hidden=hidden, n_units=n_units,
                               env_factory=env_factory, progress=progress)
    agent_obj = res.get("agent")
    return TrainedAgent(res["q"], np.asarray(res["transitions"].state, np.float32),
                        res["transitions"], res.get("info", {}),
                        getattr(agent_obj, "q_target", None))


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def mean_std(x) -> dict:
    """Mean, 95 % CI over seeds (``protocol.mean_ci``: ci95, n, per_seed) and the sd."""
    x = np.asarray(x, float)
    return {**protocol.mean_ci(x), "mean": float(x.mean()),
            "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0}


def yardstick_references(path: str | Path | None, profile: str, report_seeds: list[int],
                         windows: int, cells: int) -> dict[str, list[float]] | None:
    """Per-report-seed utilities of every policy in a ``slicetwin baselines`` summary (a file, or
    the ``--out`` folder holding one) measured on exactly this traffic: the same profile,
    windows, cells and report seeds (a subset of its seeds). None when there is no such summary.
    """
    if path is None:
        return None
    f = Path(path)
    f = f / "summary.json" if f.is_dir() else f
    if not f.exists():
        raise FileNotFoundError(f"no baselines summary at {f}")
    block = json.loads(f.read_text()).get("profiles", {}).get(profile)
    if block is None:
        return None
    yc = block["config"]
    first, n = yc["first_report_seed"], yc["report_seeds"]
    if (yc["windows"], yc["cells"]) != (windows, cells) or \
            any(not first <= s < first + n for s in report_seeds):
        return None
    return {k: [v["per_seed"][s - first] for s in report_seeds]
            for k, v in block["policies"].items()}


def against_references(per_seed: list[float], refs: dict[str, list[float]] | None) -> dict:
    """A policy's per-seed utilities against the yardstick on the same traffic: ratios of means
    to best fixed (hindsight), the planner and the oracle, and the paired difference against
    best fixed (hindsight)."""
    if not refs:
        return {}
    m = float(np.mean(per_seed))
    out = {f"ratio_to_{k}": protocol.ratio(m, float(np.mean(refs[k])))
           for k in ("best_fixed_hindsight", "planner", "oracle") if k in refs}
    if "best_fixed_hindsight" in refs:
        out["paired_diff_vs_best_fixed_hindsight"] = protocol.paired(
            per_seed, refs["best_fixed_hindsight"])
    return out


# ------------------------------------------------------------------------------- the experiment

@dataclass
class DistillExperimentConfig(protocol.SeedPairs):
    seeds: int = 5  # pairs (training seed first_seed + i, report seed first_report_seed + i)
    kinds: tuple[str, ...] = ("dt", "no-dt")
    widths: tuple[int, ...] = (4, 16)  # paper: students with 2 hidden layers of 4 or 16 units
    rounds: int = 10_000  # paper's distillation budget
    mode: str = "hard"  # eq. 12; "soft" for the temperature variant
    teacher_interactions: int = 20_000  # real interactions per teacher (100 rounds of 200)
    teacher_agent: str = "ddqn"
    teacher_hidden: tuple[int, ...] = (256, 256, 128, 128)
    n_units: int = 100
    train_cells: int = 8  # cells the teachers train on
    eval_cells: int = 4  # report traffic: the yardstick's cells and windows (slicetwin baselines)
    eval_steps: int = 150  # windows per report seed
    first_seed: int = 0  # training seeds: 0-999 (1000-1999 for probes)
    first_report_seed: int = protocol.RANGES["report"][0]
    allow_any_seeds: bool = False
    baselines: str | None = None  # `slicetwin baselines` summary of the same report traffic
    curve_points: int = 5  # utility checkpoints along the distillation

    def __post_init__(self) -> None:
        self.check_seed_pairs()


QUICK = dict(seeds=2, rounds=2000, teacher_interactions=4000, teacher_hidden=(64, 64),
             eval_steps=40, curve_points=4)


def run(out: Path, cfg: DistillExperimentConfig,
        teacher_fn: Callable[[str, int], TrainedAgent] | None = None,
        env_factory: EnvFactory | None = None, progress: bool = True) -> dict:
    """Run the experiment; ``teacher_fn(kind, seed)`` and ``env_factory`` default to Algorithm 1
    on the simulator (tests pass a toy problem)."""

    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    train_factory = env_factory or sim_env_factory(cfg.train_cells, cfg.n_units)
    eval_factory = env_factory or sim_env_factory(cfg.eval_cells, cfg.n_units)
    if teacher_fn is None:
        def teacher_fn(kind: str, seed: int) -> TrainedAgent:
            return train_agent(kind, seed, train_factory, cfg.teacher_interactions,
                               cfg.teacher_agent, cfg.teacher_hidden, cfg.n_units, progress)

    def ev(act: Act, report_seed: int) -> float:
        return evaluate_policy(act, eval_factory, cfg.eval_steps, (report_seed,), warmup=0)

    rows, curves = [], []
    t_start = time.time()
    for kind in cfg.kinds:
        for seed, report in zip(cfg.train_seeds, cfg.report_seeds, strict=True):
            t0 = time.time()
            teacher = teacher_fn(kind, seed)
            n_actions = int(teacher.q(torch.zeros(1, 3)).shape[1])
            u_teacher = ev(greedy(teacher.q), report)
            u_random = ev(random_act(n_actions, seed), report)
            for width in cfg.widths:
                dcfg = DistillConfig(hidden=width, rounds=cfg.rounds, mode=cfg.mode, seed=seed,
                                     eval_every=max(1, cfg.rounds // cfg.curve_points),
                                     progress=progress)

                def on_eval(rec, student, kind=kind, seed=seed, width=width, u_t=u_teacher,
                            report=report):
                    u = ev(greedy(student), report)
                    curves.append({"teacher": kind, "seed": seed, "width": width, **rec,
                                   "utility": u, "utility_ratio": u / u_t})
                    return {"utility": u}

                res = distill(teacher.q, teacher.states, dcfg, on_eval=on_eval)
                metrics = {"agreement": res.agreement, "q_regret": res.q_regret,
                           "teacher": kind, "teacher_utility": u_teacher, "seed": seed}
                path = export_policy(res.student, out / "models" / f"{kind}-s{seed}-w{width}.onnx",
                                     n_units=cfg.n_units, version=f"{kind}-s{seed}-w{width}",
                                     metrics=metrics)
                policy = OnnxPolicy(path.read_bytes())
                # the exported artefact through the controller's runner, not the torch module
                u_student = ev(policy.act_batch, report)
                rows.append({"teacher": kind, "seed": seed, "report_seed": report,
                             "width": width,
                             "agreement": res.agreement, "q_regret": res.q_regret,
                             "teacher_utility": u_teacher, "student_utility": u_student,
                             "utility_ratio": u_student / u_teacher, "random_utility": u_random,
                             "pool_states": len(teacher.states), "onnx": str(path.name),
                             "seconds": round(time.time() - t0, 1)})
    write_csv(out / "distill.csv", rows)
    write_csv(out / "distill_curves.csv", curves)
    _plot(out / "distill.png", rows, curves, cfg)
    refs = None if env_factory else yardstick_references(
        cfg.baselines, "paper", cfg.report_seeds, cfg.eval_steps, cfg.eval_cells)
    summary: dict = {"experiment": "distill", "config": asdict(cfg),
                     "seconds": round(time.time() - t_start, 1), "groups": {},
                     "protocol": {
                         "train_seeds": cfg.train_seeds, "report_seeds": cfg.report_seeds,
                         "seed_override": cfg.allow_any_seeds,
                         "evaluation": f"{cfg.eval_steps} windows x {cfg.eval_cells} cells of "
                                       f"report seed {cfg.first_report_seed} + i for pair i",
                         "served": "every student from its ONNX file through the controller's "
                                   "runner",
                         "utility_ratio": "student / its own teacher, same report seed",
                         "references": cfg.baselines if refs else None,
                         "oracle": "full-search clairvoyant (one-step)" if refs else None,
                         "statistics": "mean, 95 % CI (Student t over seed pairs), per seed"}}
    if refs:
        summary["references"] = {k: protocol.mean_ci(v) for k, v in refs.items()}
    for kind in cfg.kinds:
        for width in cfg.widths:
            sel = sorted((r for r in rows if r["teacher"] == kind and r["width"] == width),
                         key=lambda r: r["seed"])
            g = {k: mean_std([r[k] for r in sel])
                 for k in ("agreement", "utility_ratio", "student_utility", "teacher_utility",
                           "random_utility")}
            g["student_vs_yardstick"] = against_references([r["student_utility"] for r in sel],
                                                           refs)
            summary["groups"][f"{kind}/w{width}"] = g
    if {"dt", "no-dt"} <= set(cfg.kinds):  # the paper's claim: DT teachers distil better
        summary["dt_minus_no_dt"] = {}
        for width in cfg.widths:
            dt, no = (sorted((r for r in rows if r["teacher"] == k and r["width"] == width),
                             key=lambda r: r["seed"]) for k in ("dt", "no-dt"))
            summary["dt_minus_no_dt"][f"w{width}"] = {
                "student_utility": protocol.paired([r["student_utility"] for r in dt],
                                                   [r["student_utility"] for r in no]),
                "teacher_utility": protocol.paired([r["teacher_utility"] for r in dt],
                                                   [r["teacher_utility"] for r in no])}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _plot(path: Path, rows: list[dict], curves: list[dict], cfg: DistillExperimentConfig) -> None:
    import matplotlib  # lazy: matplotlib, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when plotting

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind in cfg.kinds:
        for width in cfg.widths:
            sel = [c for c in curves if c["teacher"] == kind and c["width"] == width]
            if not sel:
                continue
            rounds = sorted({c["round"] for c in sel})
            for ax, key in zip(axes, ("utility", "agreement"), strict=True):
                m = [np.mean([c[key] for c in sel if c["round"] == r]) for r in rounds]
                ax.plot(rounds, m, marker="o", label=f"teacher {kind}, {width} units")
    for i, kind in enumerate(cfg.kinds):
        t = [r["teacher_utility"] for r in rows if r["teacher"] == kind]
        if t:
            axes[0].axhline(np.mean(t), ls="--", lw=1, color=f"C{6 + i}", label=f"teacher {kind}")
    rnd = [r["random_utility"] for r in rows]
    if rnd:
        axes[0].axhline(np.mean(rnd), ls=":", lw=1, color="grey", label="random policy")
    axes[0].set_ylabel("student mean utility (simulator)")
    axes[1].set_ylabel("top-1 agreement with teacher")
    for ax in axes:
        ax.set_xlabel("distillation round")
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 8: distillation of DT and non-DT teachers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
