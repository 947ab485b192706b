"""``slicetwin experiment explore-cost``: the utility live exploration gives up, by radius.

The controller explores with probability epsilon per decision; an explored split moves
1..radius units between two slices of the served one (radius 0: any action, uniformly;
``ActionCodec.explore``, the controller's own rule). Arrivals are exogenous, so the served
policy with and without exploration, run on the same seed, sees the same traffic: the
difference in mean utility is the utility exploration gave up, including what an explored
window leaves behind in the queues. Per seed, per radius: utility given up per cell-window, per
explored decision, and as a share of the served policy's utility; mean +/- 95 % CI over seeds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slicetwin.core import protocol
from slicetwin.experiments.distill import write_csv
from slicetwin.experiments.online import ServedPolicy
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim.baselines import DemandProportionalPolicy, run_policy, tune_proportional
from slicetwin.sim.config import SimConfig


@dataclass(frozen=True)
class ExploreCostConfig:
    profile: str = "diurnal"
    seeds: int = 5
    seed_role: str = "report"  # report seeds 10000+, or "tune" (1000+) to pick a setting
    windows: int = 150
    cells: int = 4
    epsilon: float = 0.2  # the demo's controller epsilon
    radii: tuple[int, ...] = (0, 2, 5, 10, 20)
    policy: str = "tuned"  # tuned | proportional | path of an ONNX student
    train_seeds: int = 3  # training seeds of the tuned heuristic's fit
    train_windows: int = 100

    def __post_init__(self) -> None:
        if self.seed_role not in ("report", "tune"):
            raise ValueError("seed_role must be 'report' (10000+) or 'tune' (1000-1999)")
        if not self.radii or any(r < 0 for r in self.radii):
            raise ValueError("radii must be a non-empty list of integers >= 0")
        if not 0 < self.epsilon <= 1:
            raise ValueError("epsilon must lie in (0, 1]")
        if min(self.seeds, self.windows, self.cells, self.train_seeds, self.train_windows) < 1:
            raise ValueError("seeds, windows, cells and the training sizes must be >= 1")

    @classmethod
    def quick(cls, **kw) -> ExploreCostConfig:
        base = dict(seeds=2, windows=30, cells=2, radii=(0, 3), policy="proportional")
        return cls(**{**base, **kw})


class ExploringPolicy:
    """``base`` with the controller's exploration: epsilon per decision, within ``radius``."""

    def __init__(self, base, epsilon: float, radius: int, seed: int):
        self.base, self.epsilon, self.radius = base, epsilon, radius
        self.rng = np.random.default_rng(seed)
        self.explored = 0
        self.name = f"{getattr(base, 'name', 'policy')}+explore(r={radius})"

    def act(self, sim, state: np.ndarray) -> np.ndarray:
        actions = np.array(self.base.act(sim, state), dtype=np.int64)
        for i in np.flatnonzero(self.rng.random(actions.shape[0]) < self.epsilon):
            actions[i] = sim.codec.explore(int(actions[i]), self.rng, self.radius)
            self.explored += 1
        return actions


def served_policy(cfg: ExploreCostConfig, sim_cfg: SimConfig, progress: bool):
    """The policy exploration departs from: the tuned heuristic (fit on training seeds),
    demand-proportional, or an ONNX student through the controller's runner."""
    if cfg.policy == "proportional":
        return DemandProportionalPolicy(sim_cfg)
    if cfg.policy == "tuned":
        pol, _ = tune_proportional(sim_cfg, cfg.train_windows, cfg.cells,
                                   protocol.seeds_for("train", cfg.train_seeds), progress)
        return pol
    path = Path(cfg.policy)
    if not path.is_file():
        raise FileNotFoundError(f"--policy {cfg.policy!r}: not 'tuned', 'proportional' or an "
                                f"ONNX file")
    return ServedPolicy(OnnxPolicy(path.read_bytes()))


def measure_seed(base, sim_cfg: SimConfig, cfg: ExploreCostConfig, seed: int) -> list[dict]:
    """One seed: the served policy alone, then with exploration at every radius (same traffic)."""
    served = run_policy(base, sim_cfg, cfg.windows, cfg.cells, seed).mean_utility
    rows = []
    for r in cfg.radii:
        pol = ExploringPolicy(base, cfg.epsilon, r, seed=seed * 1000 + r)
        u = run_policy(pol, sim_cfg, cfg.windows, cfg.cells, seed).mean_utility
        lost = served - u
        rows.append({"seed": seed, "radius": r, "served_utility": round(served, 6),
                     "explored_utility": round(u, 6), "explored_decisions": pol.explored,
                     "given_up_per_window": round(lost, 6),
                     "given_up_per_explored": round(
                         lost * cfg.windows * cfg.cells / max(pol.explored, 1), 6),
                     "given_up_share": round(lost / served, 6) if served > 0 else None})
    return rows


def summarise(rows: list[dict], cfg: ExploreCostConfig) -> dict:
    by_radius = {}
    for r in cfg.radii:
        sel = [x for x in rows if x["radius"] == r]
        by_radius[str(r)] = {
            "rule": "uniform over all actions" if r == 0 else f"1..{r} units between two slices",
            "given_up_per_window": protocol.mean_ci([x["given_up_per_window"] for x in sel]),
            "given_up_per_explored": protocol.mean_ci([x["given_up_per_explored"] for x in sel]),
            "given_up_share": protocol.mean_ci([x["given_up_share"] for x in sel]),
            "explored_decisions": sum(x["explored_decisions"] for x in sel)}
    served = sorted({(x["seed"], x["served_utility"]) for x in rows})
    return {"config": asdict(cfg), "seeds": [s for s, _ in served],
            "served_utility": protocol.mean_ci([u for _, u in served]),
            "baseline": "the served policy without exploration, same seed (same arrivals)",
            "by_radius": by_radius}


def markdown(summary: dict) -> str:
    c = summary["config"]
    lines = [f"# Utility given up by exploration ({c['profile']}, epsilon {c['epsilon']}, "
             f"served policy {c['policy']}, {c['seed_role']} seeds {summary['seeds']})", "",
             "| radius | rule | given up per cell-window | per explored decision | share of served |",
             "|---|---|---|---|---|"]
    for r, v in summary["by_radius"].items():
        f = [v[k] for k in ("given_up_per_window", "given_up_per_explored", "given_up_share")]
        lines.append(f"| {r} | {v['rule']} | " + " | ".join(
            f"{x['mean']:+.4f} ± {x['ci95']:.4f}" if x["ci95"] is not None else f"{x['mean']:+.4f}"
            for x in f) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib  # lazy: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib

    radii = list(summary["by_radius"])
    v = [summary["by_radius"][r]["given_up_per_explored"] for r in radii]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([("uniform" if r == "0" else r) for r in radii], [x["mean"] for x in v],
           yerr=[x["ci95"] or 0 for x in v], capsize=4, color="#4c72b0")
    ax.set_xlabel("exploration radius (units)")
    ax.set_ylabel("utility given up per explored decision")
    ax.set_title(f"{summary['config']['profile']}: cost of exploring, mean ± 95 % CI")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_explore_cost(cfg: ExploreCostConfig, out: Path, progress: bool = True) -> dict:
    seeds = protocol.seeds_for(cfg.seed_role, cfg.seeds)
    sim_cfg = SimConfig.from_profile(cfg.profile)
    base = served_policy(cfg, sim_cfg, progress)
    rows = []
    for seed in tqdm(seeds, desc="explore-cost seeds", disable=not progress):
        rows += measure_seed(base, sim_cfg, cfg, seed)
    summary = json.loads(json.dumps(summarise(rows, cfg)))  # as written: lists, not tuples
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "explore_cost.md").write_text(markdown(summary))
    write_csv(out / "explore_cost.csv", rows)
    plot(summary, out / "explore_cost.png")
    return summary
