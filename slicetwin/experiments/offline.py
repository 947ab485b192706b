"""Fig. 9: offline DRL with and without the digital twin (Algorithm 2), plus discrete CQL.

Per seed, with no interaction beyond the fixed dataset:
  1. D = transitions of a uniformly random behaviour policy on the simulator;
  2. the twin is fitted on D, and a DDQN agent (theta_2) is trained on rollouts in the twin that
     start from D's states, with K counterfactual actions tried at every visited state (free: no
     real interaction);
  3. from D alone: "offline" (DDQN, v = 0), "offline+twin" (DDQN + (v/2)||theta_1 - theta_2||^2,
     Algorithm 2) and "cql" (Double DQN + conservative term).
Every variant's greedy policy is evaluated on the simulator every few epochs (the Fig. 9 curve),
together with theta_2 itself and the behaviour policy.

Evaluation protocol (docs/training.md): pair i collects D on training seed ``first_seed + i`` and
measures every policy on report seed ``first_report_seed + i`` (10000+), ``eval_cells`` x
``eval_steps`` windows, the traffic ``slicetwin baselines`` measures on. Each final network is
also measured as served: distilled into a ``student_hidden``-unit student on D's states,
exported to ONNX and run through the controller's runner (``online.serve``).

Outputs: ``offline.csv`` (one row per variant and seed, final figures), ``offline_curves.csv``,
``offline.png``, ``summary.json`` (mean, 95 % CI and per-seed values of the networks and their
served students; paired differences twin minus no twin and twin minus CQL; with a
``slicetwin baselines`` summary of the same traffic, ratios to best fixed (hindsight) and the
oracle).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from torch import nn

from slicetwin.core import protocol
from slicetwin.core.state import STATE_DIM
from slicetwin.core.transitions import Transitions
from slicetwin.experiments.distill import (
    EnvFactory,
    against_references,
    evaluate_policy,
    greedy,
    mean_std,
    random_act,
    sim_env_factory,
    write_csv,
    yardstick_references,
)
from slicetwin.experiments.online import serve
from slicetwin.twin import Twin, TwinConfig
from trainer.agents import make_agent
from trainer.agents.envs import RealEnv, TwinEnv
from trainer.agents.loop import Learner
from trainer.distill import pool_states
from trainer.offline import OfflineConfig, train_offline
from trainer.replay import ReplayBuffer, sample_mixed


@dataclass
class OfflineExperimentConfig(protocol.SeedPairs):
    seeds: int = 5
    dataset_rounds: int = 50  # D: rounds of 200 random-policy interactions (10,000 transitions)
    epochs: int = 200  # paper: 200 epochs
    hidden: tuple[int, ...] = (256, 256, 128, 128)  # paper's network, theta_1 and theta_2
    prox_weight: float = 0.1  # v (see docs/distillation.md for how it was chosen)
    init_from_reference: bool = True  # offline+twin starts at theta_2 (off: random init + prox)
    cql_alpha: float = 1.0
    twin_interactions: int = 20_000  # visited twin states theta_2 is trained on (free)
    twin_counterfactual_actions: int = 32  # K random actions also tried (not advanced) at every
    #   visited twin state, each stored as a model transition: Q learns K+1 actions per state
    #   instead of one (only a model can replay a window under other allocations); 0 = off.
    #   Measured at the quick size: K = 32 beat 16, 64 and 128 at the same gradient steps
    twin_real_ratio: float = 0.05  # share of D in theta_2's batches (rest: twin), MBPO-style;
    #   0.5 was right without counterfactuals, with them the twin's rows carry more than D's
    twin_train_every: float = 1.0  # visited twin states per gradient step of theta_2
    twin_batch_size: int = 256  # as the offline learners: batch 64 learned markedly worse here
    twin_config: dict = field(default_factory=lambda: {"epochs": 40, "patience": 5,
                                                       "max_fit_seconds": 60.0})
    variants: tuple[str, ...] = ("offline", "offline+twin", "cql")
    n_units: int = 100
    n_cells: int = 8  # cells D is collected on
    eval_cells: int = 4  # report traffic: the yardstick's cells and windows (slicetwin baselines)
    eval_steps: int = 150  # windows per report seed
    first_seed: int = 0  # training seeds (D): 0-999 (1000-1999 for probes)
    first_report_seed: int = protocol.RANGES["report"][0]
    allow_any_seeds: bool = False
    baselines: str | None = None  # `slicetwin baselines` summary of the same report traffic
    student_hidden: int = 16  # the served student of each final network
    distill_rounds: int = 2000  # 0: no students
    curve_points: int = 5

    def __post_init__(self) -> None:
        self.check_seed_pairs()


QUICK = dict(seeds=2, dataset_rounds=10, epochs=30, hidden=(64, 64), twin_interactions=4000,
             twin_config={"epochs": 40, "patience": 5, "max_fit_seconds": 30.0, "ensemble": 2,
                          "lstm_hidden": 16, "head_hidden": 16, "reward_hidden": (32, 32)},
             eval_steps=40, curve_points=3, distill_rounds=300)


def collect_random(env_factory: EnvFactory, seed: int, n_transitions: int) -> Transitions:
    """The fixed dataset D: a uniformly random behaviour policy, recorded as Transitions."""

    real = RealEnv(env_factory(seed))
    rng = np.random.default_rng(seed + 31)
    real.reset()
    n_actions = int(real.env.n_actions)
    while real.interactions < n_transitions:
        real.step(rng.integers(0, n_actions, size=real.n))
    return real.transitions()


class _Recorded:
    """What ``TwinEnv`` needs of a real environment: its recorded data and a clock."""

    def __init__(self, data: Transitions):
        self._data, self.interactions = data, len(data)

    def transitions(self) -> Transitions:
        return self._data


def twin_trained_agent(data: Transitions, n_actions: int, cfg: OfflineExperimentConfig,
                       seed: int) -> tuple[nn.Module, dict]:
    """theta_2: fit the twin on D, then train DDQN on short rollouts in the twin that start from
    D's states, each batch mixing ``twin_real_ratio`` of D with twin transitions (MBPO-style:
    the twin widens D's action coverage, D anchors the agent where the twin is wrong).

    With ``twin_counterfactual_actions`` = K, every visited twin state is also tried under K
    uniformly random actions without advancing (``TwinEnv.branch``), and those K transitions go
    into the model replay next to the policy's own one. ``twin_interactions`` counts the
    policy's (advancing) twin steps, i.e. visited states; gradient steps are owed per policy step
    (``twin_train_every``), so K changes what each batch teaches, not how many batches there are.
    """

    if cfg.twin_counterfactual_actions < 0:
        raise ValueError("twin_counterfactual_actions must be >= 0")
    t0 = time.time()
    twin = Twin(TwinConfig(seed=seed, n_units=cfg.n_units, **cfg.twin_config))
    fit = twin.fit(data)
    rng = np.random.default_rng(seed)
    agent = make_agent("ddqn", STATE_DIM, n_actions, seed=seed, hidden=tuple(cfg.hidden),
                       eps_decay_steps=cfg.twin_interactions // 2, batch_size=cfg.twin_batch_size)
    env = TwinEnv(twin, _Recorded(data), batch=64, rng=rng)
    real = ReplayBuffer(len(data), STATE_DIM)
    real.add(data.state, data.action, data.reward, data.next_state)
    k = int(cfg.twin_counterfactual_actions)
    rollout = 5  # short rollouts from real states: model error compounds (MBPO)
    # room for every visited state and its K counterfactuals (the last rollout may overshoot)
    model = ReplayBuffer((cfg.twin_interactions + env.n * rollout) * (k + 1), STATE_DIM)
    learner = Learner(agent, rng, replay=model, train_every=cfg.twin_train_every,
                      sampler=lambda bs, g: sample_mixed(real, model, bs, cfg.twin_real_ratio, g))
    visited = counterfactual = 0
    while visited < cfg.twin_interactions:
        s = env.reset()
        for _ in range(rollout):
            a = agent.act(s, agent.cfg.epsilon(visited), rng)
            if k:
                extra = rng.integers(0, n_actions, size=(env.n, k))
                cf = env.branch(extra)
                model.add(np.repeat(s, k, axis=0), extra.reshape(-1), cf.reward, cf.next_state,
                          cf.done)
                counterfactual += extra.size
            out = env.step(a)
            visited += env.n
            learner.observe(s, a, out.reward, out.next_state, out.done)
            s = out.next_state
            if out.done is not None and np.any(out.done):
                break
    info = {"twin_fit": {k_: v for k_, v in fit.items() if isinstance(v, (int, float))},
            "twin_transitions": visited, "counterfactual_transitions": counterfactual,
            "model_replay": len(model), "grad_steps": learner.updates,
            "seconds": round(time.time() - t0, 1)}
    return agent.q.eval(), info


def run(out: Path, cfg: OfflineExperimentConfig, env_factory: EnvFactory | None = None,
        reference_fn: Callable[[Transitions, int, int], tuple[nn.Module, dict]] | None = None,
        progress: bool = True) -> dict:
    """Run the experiment; ``reference_fn(data, n_actions, seed) -> (theta_2, info)`` defaults to
    ``twin_trained_agent`` (tests pass a cheaper one)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_factory = env_factory or sim_env_factory(cfg.n_cells, cfg.n_units)
    eval_factory = env_factory or sim_env_factory(cfg.eval_cells, cfg.n_units)
    reference_fn = reference_fn or (lambda d, n, s: twin_trained_agent(d, n, cfg, s))
    every = max(1, cfg.epochs // cfg.curve_points)
    rows, curves = [], []
    t_start = time.time()
    for seed, report in zip(cfg.train_seeds, cfg.report_seeds, strict=True):

        def ev(act, report=report) -> float:
            return evaluate_policy(act, eval_factory, cfg.eval_steps, (report,), warmup=0)

        data = collect_random(data_factory, seed, cfg.dataset_rounds * 200)
        n_actions = int(data_factory(0).n_actions)
        states = pool_states(data)

        def served(q, variant: str, seed=seed, ev=ev, states=states) -> dict:
            """The network as served: its ONNX student through the controller's runner."""
            if cfg.distill_rounds <= 0:
                return {}
            name = f"{variant.split(' ')[0].replace('+', '_')}-s{seed}"
            policy, agree = serve(q, states, out / "models" / f"{name}.onnx", cfg.n_units,
                                  cfg.student_hidden, cfg.distill_rounds, seed,
                                  metrics={"variant": variant})
            return {"served_utility": ev(policy.act_batch), "served_agreement": agree}

        theta2, ref_info = reference_fn(data, n_actions, seed)
        u_ref, u_beh = ev(greedy(theta2)), ev(random_act(n_actions, seed))
        rows.append({"variant": "twin-agent (theta_2)", "seed": seed, "report_seed": report,
                     "utility": u_ref, **served(theta2, "twin-agent (theta_2)"),
                     "dataset": len(data), "info": json.dumps(ref_info)})
        rows.append({"variant": "behaviour (random)", "seed": seed, "report_seed": report,
                     "utility": u_beh, "dataset": len(data)})
        for variant in cfg.variants:
            t0 = time.time()
            ocfg = OfflineConfig(algo="cql" if variant == "cql" else "ddqn",
                                 hidden=tuple(cfg.hidden), epochs=cfg.epochs, seed=seed,
                                 cql_alpha=cfg.cql_alpha, progress=progress)
            ref = None
            if variant == "offline+twin":
                ocfg = replace(ocfg, prox_weight=cfg.prox_weight,
                               init_from_reference=cfg.init_from_reference)
                ref = theta2

            def on_epoch(epoch, q, variant=variant, seed=seed):
                if epoch % every and epoch != cfg.epochs:
                    return None
                u = ev(greedy(q))
                curves.append({"variant": variant, "seed": seed, "epoch": epoch, "utility": u})
                return {"utility": u}

            res = train_offline(data, n_actions, ocfg, reference=ref, on_epoch=on_epoch)
            last = res.history[-1]
            rows.append({"variant": variant, "seed": seed, "report_seed": report,
                         "utility": last["utility"], **served(res.q, variant),
                         "td": last["td"], "prox": last["prox"], "cql": last["cql"],
                         "dataset": len(data), "seconds": round(time.time() - t0, 1)})
    write_csv(out / "offline.csv", rows)
    write_csv(out / "offline_curves.csv", curves)
    _plot(out / "offline.png", rows, curves, cfg)
    refs = None if env_factory else yardstick_references(
        cfg.baselines, "paper", cfg.report_seeds, cfg.eval_steps, cfg.eval_cells)
    summary: dict = {
        "experiment": "offline", "config": asdict(cfg),
        "seconds": round(time.time() - t_start, 1), "utility": {}, "served_utility": {},
        "protocol": {
            "train_seeds": cfg.train_seeds, "report_seeds": cfg.report_seeds,
            "seed_override": cfg.allow_any_seeds,
            "evaluation": f"{cfg.eval_steps} windows x {cfg.eval_cells} cells of report seed "
                          f"{cfg.first_report_seed} + i for pair i",
            "utility": "the final network's greedy policy (the paper's Fig. 9)",
            "served_utility": f"its {cfg.student_hidden}-unit student ({cfg.distill_rounds} "
                              f"distillation rounds on D's states), ONNX through the "
                              f"controller's runner" if cfg.distill_rounds > 0 else None,
            "references": cfg.baselines if refs else None,
            "oracle": "full-search clairvoyant (one-step)" if refs else None,
            "statistics": "mean, 95 % CI (Student t over seed pairs), per seed"}}
    if refs:
        summary["references"] = {k: protocol.mean_ci(v) for k, v in refs.items()}

    def per_seed(variant: str, key: str) -> list[float]:
        return [r[key] for r in sorted(rows, key=lambda r: r["seed"])
                if r["variant"] == variant and key in r]

    for v in sorted({r["variant"] for r in rows}):
        for key in ("utility", "served_utility"):
            if per_seed(v, key):
                summary[key][v] = {**mean_std(per_seed(v, key)),
                                   **against_references(per_seed(v, key), refs)}
    for key in ("utility", "served_utility"):
        for other, name in (("offline", "twin_minus_no_twin"), ("cql", "twin_minus_cql")):
            a, b = per_seed("offline+twin", key), per_seed(other, key)
            if a and len(a) == len(b):
                d = protocol.paired(a, b)
                summary[name if key == "utility" else f"served_{name}"] = {
                    **d, **mean_std(np.subtract(a, b)), "seeds": d["n"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _plot(path: Path, rows: list[dict], curves: list[dict], cfg: OfflineExperimentConfig) -> None:
    import matplotlib  # lazy: matplotlib, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when plotting

    fig, ax = plt.subplots(figsize=(6, 4))
    for v in cfg.variants:
        sel = [c for c in curves if c["variant"] == v]
        ep = sorted({c["epoch"] for c in sel})
        m = np.array([np.mean([c["utility"] for c in sel if c["epoch"] == e]) for e in ep])
        lo = np.array([np.min([c["utility"] for c in sel if c["epoch"] == e]) for e in ep])
        hi = np.array([np.max([c["utility"] for c in sel if c["epoch"] == e]) for e in ep])
        ax.plot(ep, m, marker="o", label=v)
        ax.fill_between(ep, lo, hi, alpha=0.15)
    for v, ls in (("twin-agent (theta_2)", "--"), ("behaviour (random)", ":")):
        u = [r["utility"] for r in rows if r["variant"] == v]
        ax.axhline(np.mean(u), ls=ls, color="grey", label=v)
    ax.set_xlabel("epoch over the fixed dataset")
    ax.set_ylabel("greedy mean utility (simulator)")
    ax.set_title("Fig. 9: offline DRL with and without the twin")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
