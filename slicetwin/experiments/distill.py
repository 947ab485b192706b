"""Fig. 8: distil DT-trained and plain teachers into 4- and 16-unit students.

For each teacher kind ("dt": trained with the digital twin, Algorithm 1; "no-dt": the same agent
without the twin) and seed: train the teacher, take the states of its experience pool, distil a
student per width (hard labels, paper eq. 12), export it to ONNX, and measure on the simulator
the mean utility of teacher, students (run from the ONNX file through the controller's runner,
i.e. exactly what would serve) and a random policy, all on the same evaluation seeds.

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


def mean_std(x) -> dict[str, float]:
    x = np.asarray(x, float)
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            "n": int(len(x))}


# ------------------------------------------------------------------------------- the experiment

@dataclass
class DistillExperimentConfig:
    seeds: int = 3
    kinds: tuple[str, ...] = ("dt", "no-dt")
    widths: tuple[int, ...] = (4, 16)  # paper: students with 2 hidden layers of 4 or 16 units
    rounds: int = 10_000  # paper's distillation budget
    mode: str = "hard"  # eq. 12; "soft" for the temperature variant
    teacher_interactions: int = 20_000  # real interactions per teacher (100 rounds of 200)
    teacher_agent: str = "ddqn"
    teacher_hidden: tuple[int, ...] = (256, 256, 128, 128)
    n_units: int = 100
    eval_cells: int = 8
    eval_steps: int = 100  # windows per evaluation seed
    eval_seeds: tuple[int, ...] = (10_001, 10_002)
    curve_points: int = 5  # utility checkpoints along the distillation


QUICK = dict(seeds=2, rounds=2000, teacher_interactions=4000, teacher_hidden=(64, 64),
             eval_steps=40, eval_seeds=(10_001,), curve_points=4)


def run(out: Path, cfg: DistillExperimentConfig,
        teacher_fn: Callable[[str, int], TrainedAgent] | None = None,
        env_factory: EnvFactory | None = None, progress: bool = True) -> dict:
    """Run the experiment; ``teacher_fn(kind, seed)`` and ``env_factory`` default to Algorithm 1
    on the simulator (tests pass a toy problem)."""

    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    env_factory = env_factory or sim_env_factory(cfg.eval_cells, cfg.n_units)
    if teacher_fn is None:
        def teacher_fn(kind: str, seed: int) -> TrainedAgent:
            return train_agent(kind, seed, env_factory, cfg.teacher_interactions,
                               cfg.teacher_agent, cfg.teacher_hidden, cfg.n_units, progress)

    def ev(act: Act) -> float:
        return evaluate_policy(act, env_factory, cfg.eval_steps, cfg.eval_seeds)

    rows, curves = [], []
    t_start = time.time()
    for kind in cfg.kinds:
        for seed in range(cfg.seeds):
            t0 = time.time()
            teacher = teacher_fn(kind, seed)
            n_actions = int(teacher.q(torch.zeros(1, 3)).shape[1])
            u_teacher = ev(greedy(teacher.q))
            u_random = ev(random_act(n_actions, seed))
            for width in cfg.widths:
                dcfg = DistillConfig(hidden=width, rounds=cfg.rounds, mode=cfg.mode, seed=seed,
                                     eval_every=max(1, cfg.rounds // cfg.curve_points),
                                     progress=progress)

                def on_eval(rec, student, kind=kind, seed=seed, width=width, u_t=u_teacher):
                    u = ev(greedy(student))
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
                u_student = ev(policy.act_batch)  # the exported artefact, not the torch module
                rows.append({"teacher": kind, "seed": seed, "width": width,
                             "agreement": res.agreement, "q_regret": res.q_regret,
                             "teacher_utility": u_teacher, "student_utility": u_student,
                             "utility_ratio": u_student / u_teacher, "random_utility": u_random,
                             "pool_states": len(teacher.states), "onnx": str(path.name),
                             "seconds": round(time.time() - t0, 1)})
    write_csv(out / "distill.csv", rows)
    write_csv(out / "distill_curves.csv", curves)
    _plot(out / "distill.png", rows, curves, cfg)
    summary: dict = {"experiment": "distill", "config": asdict(cfg),
                     "seconds": round(time.time() - t_start, 1), "groups": {}}
    for kind in cfg.kinds:
        for width in cfg.widths:
            sel = [r for r in rows if r["teacher"] == kind and r["width"] == width]
            summary["groups"][f"{kind}/w{width}"] = {
                k: mean_std([r[k] for r in sel])
                for k in ("agreement", "utility_ratio", "student_utility", "teacher_utility",
                          "random_utility")}
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
