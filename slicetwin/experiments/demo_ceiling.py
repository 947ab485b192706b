"""``slicetwin experiment demo-ceiling``: how far above the best fixed split any policy can end
on the demo's own traffic.

The demo's floor is a margin of the served policy over the split that was best, in hindsight,
over its last 5 minutes, on the cells its shadow bank tracks. Arrivals are exogenous, so an
offline simulator with the demo's profile, cells and seed replays exactly that traffic (the demo's
shadow tests check this to 1e-9). On it this measures, over the same windows and cells:

- the best fixed split in hindsight, from a bank started at window 0 as the demo's;
- demand-proportional and the tuned heuristic (tuned as the demo tunes it);
- the model-known planner (causal one-step MPC that knows the simulator: the ceiling for a
  twin-based method) and the clairvoyant oracle (it sees the coming window).

Before the measured range the cells are driven by demand-proportional (the demo's cold start):
the backlog this leaves at the range's start is all that differs from the demo's own history.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slicetwin.core import protocol
from slicetwin.core.slices import N_SLICES
from slicetwin.core.state import state_from_arrivals
from slicetwin.sim.baselines import (
    DemandProportionalPolicy,
    OraclePolicy,
    PlannerPolicy,
    tune_proportional,
)
from slicetwin.sim.config import SimConfig
from slicetwin.sim.search import best_split, contributions, diagonal_clones, step_diagonal
from slicetwin.sim.simulator import RanSimulator

RECENT_S = 300.0  # the demo's "last 5 minutes" (slicetwin.ops.demo.shadow.RECENT_S; a sibling layer)
FLOOR_MARGIN = 0.05  # issue 15: the served policy ends >= 5 % above best fixed
TUNE_WINDOWS, TUNE_CELLS = 50, 2  # how the demo tunes its shadow heuristic (training seed 0)
POLICIES = ("proportional", "tuned_proportional", "planner", "oracle")


@dataclass(frozen=True)
class DemoCeilingConfig:
    profile: str = "diurnal"
    seeds: tuple[int, ...] = (0,)  # the demo's --seed values (its traffic)
    cells: int = 8  # the demo's --cells
    shadow_cells: int = 2  # cells its best-fixed bank tracks (--shadow-cells)
    duration_s: float = 600.0
    window_ms: float = 200.0
    recent_s: float = RECENT_S
    futures: int = 8  # sampled futures per planner decision (as `slicetwin baselines`)

    def __post_init__(self) -> None:
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ValueError("seeds must be a non-empty list of integers >= 0")
        if not 1 <= self.shadow_cells <= self.cells:
            raise ValueError("shadow_cells must lie in 1..cells")
        if self.window_ms <= 0 or self.duration_s <= 0 or self.recent_s <= 0:
            raise ValueError("duration, window and the recent span must be > 0")
        if self.recent_windows > self.windows:
            raise ValueError(f"the recent span ({self.recent_windows} windows) is longer than the "
                             f"run ({self.windows} windows)")
        if self.futures < 1:
            raise ValueError("futures must be >= 1")

    @property
    def windows(self) -> int:
        return max(1, round(self.duration_s * 1000.0 / self.window_ms))

    @property
    def recent_windows(self) -> int:
        return max(1, round(self.recent_s * 1000.0 / self.window_ms))

    @classmethod
    def quick(cls, **kw) -> DemoCeilingConfig:
        base = dict(cells=2, shadow_cells=1, duration_s=12.0, recent_s=6.0, futures=2)
        return cls(**{**base, **kw})


def _sim(sim_cfg: SimConfig, cfg: DemoCeilingConfig, seed: int) -> RanSimulator:
    sim = RanSimulator(sim_cfg, n_cells=cfg.cells, seed=seed)
    sim.reset()
    return sim


def hindsight_fixed(sim_cfg: SimConfig, cfg: DemoCeilingConfig, seed: int) -> dict:
    """Best fixed split over the recent windows of the shadow cells, every split held from
    window 0 (the demo's per-slice bank; exact over all splits)."""
    sim = _sim(sim_cfg, cfg, seed)
    clone, units = diagonal_clones(sim, np.arange(cfg.shadow_cells))
    start = cfg.windows - cfg.recent_windows
    tot = 0.0
    for w in range(cfg.windows):
        c = contributions(clone, step_diagonal(clone, units))
        if w >= start:
            tot = tot + c
    tab = (tot / cfg.recent_windows).reshape(cfg.shadow_cells, -1, N_SLICES).mean(0)
    a, u = best_split(tab, sim_cfg.codec)
    return {"units": sim_cfg.codec.decode(int(a)).tolist(), "utility": float(u)}


def make_policy(name: str, sim_cfg: SimConfig, cfg: DemoCeilingConfig, seed: int):
    if name == "proportional":
        return DemandProportionalPolicy(sim_cfg)
    if name == "tuned_proportional":
        return tune_proportional(sim_cfg, TUNE_WINDOWS, TUNE_CELLS, [0])[0]
    if name == "planner":
        return PlannerPolicy(cfg.futures, seed=seed)
    if name == "oracle":
        return OraclePolicy()
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")


def recent_utility(policy, sim_cfg: SimConfig, cfg: DemoCeilingConfig, seed: int,
                   progress: bool = False) -> float:
    """Mean utility of ``policy`` over the recent windows of the shadow cells; the cells run
    demand-proportional before them."""
    sim = _sim(sim_cfg, cfg, seed)
    warm = DemandProportionalPolicy(sim_cfg)
    state = state_from_arrivals(sim.state.last_arrived)
    for _ in range(cfg.windows - cfg.recent_windows):
        state, _ = sim.step_actions(warm.act(sim, state))
    sub = sim.replicate_many(np.arange(cfg.shadow_cells))
    state = state_from_arrivals(sub.state.last_arrived)
    total = 0.0
    for _ in tqdm(range(cfg.recent_windows), desc=getattr(policy, "name", "policy"),
                  leave=False, disable=not progress):
        state, k = sub.step_actions(policy.act(sub, state))
        total += float(np.mean(k.utility))
    return total / cfg.recent_windows


def measure_seed(cfg: DemoCeilingConfig, seed: int, progress: bool = False) -> dict:
    sim_cfg = SimConfig.from_profile(cfg.profile)
    fixed = hindsight_fixed(sim_cfg, cfg, seed)
    row = {"seed": seed, "best_fixed_units": fixed["units"], "best_fixed": fixed["utility"]}
    for name in POLICIES:
        u = recent_utility(make_policy(name, sim_cfg, cfg, seed), sim_cfg, cfg, seed, progress)
        row[name] = u
        row[f"{name}_margin"] = u / fixed["utility"] - 1
    return row


def demo_served(path: Path, cfg: DemoCeilingConfig) -> dict:
    """The served figure of a demo summary.json over its last 5 minutes, after checking that the
    demo ran on the traffic measured here."""
    d = json.loads(Path(path).read_text())
    c = d.get("config", {})
    shadow = d.get("shadow_baselines") or {}
    want = {"profile": cfg.profile, "seed": cfg.seeds[0], "cells": cfg.cells,
            "shadow_cells": cfg.shadow_cells, "windows": cfg.windows}
    got = {"profile": c.get("profile"), "seed": c.get("seed"), "cells": c.get("cells"),
           "shadow_cells": c.get("shadow_cells"), "windows": d.get("windows")}
    if got != want or "last_5min" not in shadow:
        raise ValueError(f"{path}: the demo ran with {got}, not on the traffic measured here "
                         f"({want}), or has no shadow baselines")
    bf = shadow["last_5min"]["all_cells"]["baselines"]["best_fixed"]
    return {"file": str(path), "seed": cfg.seeds[0], "served_same_cells": bf["served_same_cells"],
            "best_fixed": bf["utility"], "margin": bf["served_same_cells"] / bf["utility"] - 1}


def summarise(rows: list[dict], cfg: DemoCeilingConfig, demo: dict | None) -> dict:
    rows = sorted(rows, key=lambda r: r["seed"])
    policies = {"best_fixed": {"utility": protocol.mean_ci([r["best_fixed"] for r in rows]),
                               "units": [r["best_fixed_units"] for r in rows]}}
    for name in POLICIES:
        policies[name] = {"utility": protocol.mean_ci([r[name] for r in rows]),
                          "margin_over_best_fixed": protocol.mean_ci(
                              [r[f"{name}_margin"] for r in rows])}
    reach = [n for n in POLICIES if policies[n]["margin_over_best_fixed"]["mean"] >= FLOOR_MARGIN]
    return {
        "experiment": "demo-ceiling", "config": {**asdict(cfg), "windows": cfg.windows,
                                                 "recent_windows": cfg.recent_windows},
        "range": {"from_window": cfg.windows - cfg.recent_windows, "windows": cfg.recent_windows,
                  "cells": list(range(cfg.shadow_cells))},
        "baseline": "best fixed split in hindsight over the same windows and cells",
        "floor_margin": FLOOR_MARGIN, "policies": policies, "reach_the_floor": reach,
        "demo": demo, "per_seed": rows,
    }


def markdown(s: dict) -> str:
    c = s["config"]
    lines = [f"# Demo ceiling: `{c['profile']}`, last {s['range']['windows']} of {c['windows']} "
             f"windows, cells {s['range']['cells']}, demo seeds {list(c['seeds'])}", "",
             "Means over the demo seeds; the served figure is the one demo run's.", "",
             "| policy | utility | margin over best fixed (hindsight) |", "|---|---|---|"]
    bf = s["policies"]["best_fixed"]
    lines.append(f"| best fixed in hindsight (per seed) | {bf['utility']['mean']:.4f} | — |")
    for name in POLICIES:
        p = s["policies"][name]
        lines.append(f"| {name} | {p['utility']['mean']:.4f} | "
                     f"{p['margin_over_best_fixed']['mean']:+.2%} |")
    if s["demo"]:
        lines.append(f"| served (the demo run, seed {s['demo']['seed']} only) | "
                     f"{s['demo']['served_same_cells']:.4f} | "
                     f"{s['demo']['margin']:+.2%} |")
    lines += ["", f"Floor: {s['floor_margin']:+.0%}. Reached on the mean by: "
              f"{', '.join(s['reach_the_floor']) or 'none'}.", "",
              "| demo seed | best fixed | " + " | ".join(POLICIES) + " |",
              "|---|---|" + "---|" * len(POLICIES)]
    for r in s["per_seed"]:
        lines.append(f"| {r['seed']} | {r['best_fixed_units']} {r['best_fixed']:.4f} | " + " | ".join(
            f"{r[f'{n}_margin']:+.2%}" for n in POLICIES) + " |")
    return "\n".join(lines) + "\n"


def plot(s: dict, path: Path) -> None:
    """Per demo seed: each reference's margin over that seed's best fixed split, the served
    demo's beside its seed, and the floor."""
    import matplotlib  # lazy: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib

    rows = s["per_seed"]
    x = np.arange(len(rows))
    width = 0.8 / len(POLICIES)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, name in enumerate(POLICIES):
        ax.bar(x + (i - (len(POLICIES) - 1) / 2) * width,
               [100 * r[f"{name}_margin"] for r in rows], width, label=name)
    if s["demo"]:
        j = [r["seed"] for r in rows].index(s["demo"]["seed"])
        ax.plot([x[j]], [100 * s["demo"]["margin"]], "k*", ms=12, label="served (demo run)")
    ax.axhline(100 * s["floor_margin"], color="#c44e52", ls="--", label="demo floor")
    ax.set_xticks(x, [f"seed {r['seed']}" for r in rows])
    ax.set_ylabel("% over best fixed (hindsight)")
    ax.set_title(f"{s['config']['profile']}: last {s['range']['windows']} windows, "
                 f"cells {s['range']['cells']}")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo_ceiling(cfg: DemoCeilingConfig, out: Path, demo_summary: Path | None = None,
                     workers: int = 1, progress: bool = True) -> dict:
    demo = demo_served(demo_summary, cfg) if demo_summary else None
    if workers > 1 and len(cfg.seeds) > 1:
        with ProcessPoolExecutor(min(workers, len(cfg.seeds))) as ex:
            futs = [ex.submit(measure_seed, cfg, s) for s in cfg.seeds]
            rows = [f.result() for f in tqdm(futs, desc="demo seeds", disable=not progress)]
    else:
        rows = [measure_seed(cfg, s, progress) for s in cfg.seeds]
    summary = json.loads(json.dumps(summarise(rows, cfg, demo)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "demo_ceiling.md").write_text(markdown(summary))
    plot(summary, out / "demo_ceiling.png")
    return summary
