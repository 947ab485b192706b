"""Fig. 7: loss landscapes of agents trained with and without the digital twin.

Per kind ("dt": Algorithm 1; "no-dt": the same agent on real data only, same real budget) and
seed: train the agent, then on B held-out transitions (a uniformly random policy on a simulator
seed no agent trained on; the same set for every model of that seed, so losses are comparable)
compute the TD loss along
  - the normalised gradient direction (paper eq. 11), lambda in [-grad_range, grad_range];
  - a filter-normalised random direction (Li et al. 2018), lambda in [-1, 1];
and the Hessian's top eigenvalue (power iteration). One PNG per model (both curves), one Fig. 7
PNG with the mean curves per kind, ``landscape.csv`` (every point), ``sharpness.csv`` (one row per
model) and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from slicetwin.experiments.distill import (
    EnvFactory,
    TrainedAgent,
    mean_std,
    sim_env_factory,
    train_agent,
    write_csv,
)
from slicetwin.experiments.offline import collect_random
from trainer.landscape import (
    filter_normalised_direction,
    gradient_direction,
    hessian_top_eigenvalue,
    loss_curve,
    plot_curves,
    sharpness,
    td_loss_fn,
)


@dataclass
class LandscapeExperimentConfig:
    seeds: int = 3
    kinds: tuple[str, ...] = ("dt", "no-dt")
    agent: str = "ddqn"
    hidden: tuple[int, ...] = (256, 256, 128, 128)
    interactions: int = 20_000  # real interactions per agent
    holdout: int = 1024  # B held-out transitions
    points: int = 41  # lambda grid size (odd, so lambda = 0 is on it)
    grad_range: float = 1.0  # lambda range along the unit gradient direction
    random_range: float = 1.0  # lambda range along the filter-normalised direction
    hessian_iters: int = 30
    gamma: float = 0.8  # as the agents (TD targets of the held-out loss)
    n_units: int = 100
    n_cells: int = 8


QUICK = dict(seeds=2, hidden=(64, 64), interactions=4000, holdout=512, points=21,
             hessian_iters=15)


def run(out: Path, cfg: LandscapeExperimentConfig,
        agent_fn: Callable[[str, int], TrainedAgent] | None = None,
        env_factory: EnvFactory | None = None, progress: bool = True) -> dict:

    out = Path(out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    env_factory = env_factory or sim_env_factory(cfg.n_cells, cfg.n_units)
    if agent_fn is None:
        def agent_fn(kind: str, seed: int) -> TrainedAgent:
            return train_agent(kind, seed, env_factory, cfg.interactions, cfg.agent, cfg.hidden,
                               cfg.n_units, progress)

    lam_g = np.linspace(-cfg.grad_range, cfg.grad_range, cfg.points)
    lam_r = np.linspace(-cfg.random_range, cfg.random_range, cfg.points)
    points, sharp = [], []
    per_kind: dict[str, dict[str, list]] = {k: {"gradient": [], "random": []} for k in cfg.kinds}
    t_start = time.time()
    for seed in range(cfg.seeds):
        held = collect_random(env_factory, 90_000 + seed, cfg.holdout)
        for kind in cfg.kinds:
            t0 = time.time()
            ag = agent_fn(kind, seed)
            q = ag.q.eval()
            loss_fn = td_loss_fn(q, ag.target if ag.target is not None else q, held.state,
                                 held.action, held.reward, held.next_state, gamma=cfg.gamma)
            base = float(loss_fn(q).detach())
            curves = {
                "gradient": loss_curve(q, loss_fn, gradient_direction(q, loss_fn), lam_g),
                "random": loss_curve(q, loss_fn, filter_normalised_direction(q, seed), lam_r),
            }
            eig = hessian_top_eigenvalue(q, loss_fn, iters=cfg.hessian_iters, seed=seed)
            for direction, lam in (("gradient", lam_g), ("random", lam_r)):
                per_kind[kind][direction].append(curves[direction])
                points += [{"kind": kind, "seed": seed, "direction": direction,
                            "lambda": float(x), "loss": float(y)}
                           for x, y in zip(lam, curves[direction], strict=True)]
            s_g, s_r = sharpness(lam_g, curves["gradient"]), sharpness(lam_r, curves["random"])
            sharp.append({"kind": kind, "seed": seed, "loss": base, "hessian_top_eig": eig,
                          **{f"grad_{k}": v for k, v in s_g.items()},
                          **{f"random_{k}": v for k, v in s_r.items()},
                          "seconds": round(time.time() - t0, 1)})
            plot_curves({"gradient direction (eq. 11)": (lam_g, curves["gradient"]),
                         "filter-normalised random": (lam_r, curves["random"])},
                        out / "models" / f"{kind}-s{seed}.png",
                        title=f"{kind} seed {seed}: top Hessian eig {eig:.3g}")
            torch.save(q.state_dict(), out / "models" / f"{kind}-s{seed}.pt")
    write_csv(out / "landscape.csv", points)
    write_csv(out / "sharpness.csv", sharp)
    for direction, lam in (("gradient", lam_g), ("random", lam_r)):
        plot_curves({k: (lam, np.stack(per_kind[k][direction])) for k in cfg.kinds},
                    out / f"landscape_{direction}.png",
                    title=f"Fig. 7: TD loss along the {direction} direction")
    summary: dict = {"experiment": "landscape", "config": asdict(cfg),
                     "seconds": round(time.time() - t_start, 1), "kinds": {}}
    for kind in cfg.kinds:
        sel = [r for r in sharp if r["kind"] == kind]
        summary["kinds"][kind] = {k: mean_std([r[k] for r in sel]) for k in
                                  ("loss", "hessian_top_eig", "grad_max_rise", "grad_curvature",
                                   "random_max_rise", "random_curvature")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
