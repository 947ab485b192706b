"""The yardstick: every baseline (and any extra policy) on report traffic, with the protocol's
statistics. Used by ``slicetwin baselines`` and ``slicetwin experiment compare``.

Per profile:

- fitted on *training* traffic (train seeds; causal): ``best_fixed_train`` (the best fixed split
  there) and ``tuned_proportional`` (the heuristic's weights and offsets, grid-searched);
- fitted in *hindsight* on the *report* traffic: ``best_fixed_hindsight`` (one split for all
  report seeds and cells: the ceiling of any static configuration, the reference of every
  ratio) and, where cells differ (``hetero``), ``best_fixed_per_cell_hindsight`` (what per-cell
  hand tuning could reach);
- no fitting: ``equal``, ``proportional``, ``planner`` (model-known MPC, causal), ``oracle``
  (full-search clairvoyant).

Every policy's utility is the mean over the same report seeds' cell-windows; results carry mean,
95 % CI over seeds, per-seed values, paired differences against best-fixed-in-hindsight, and
ratios to best-fixed-in-hindsight, the planner and the oracle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from slicetwin.core import protocol
from slicetwin.sim.baselines import (
    DemandProportionalPolicy,
    FixedPolicy,
    OraclePolicy,
    PlannerPolicy,
    equal_split,
    fixed_tables_for,
    run_policy,
    tune_proportional,
)
from slicetwin.sim.config import SimConfig
from slicetwin.sim.search import best_split, unit_values

REFERENCE = "best_fixed_hindsight"
# issue 15's floors for a served policy: >= 5 % over best fixed (hindsight), >= 3 % over the
# tuned heuristic, >= 95 % of the model-known planner
FLOORS = {"over_best_fixed_hindsight": 1.05, "over_tuned_heuristic": 1.03, "of_planner": 0.95}


@dataclass
class YardstickConfig:
    report_seeds: int = 5  # report seeds 10000, 10001, ...
    windows: int = 150  # evaluation windows per report seed and cell
    cells: int = 8  # cells per report seed
    train_seeds: int = 3  # training seeds 0, 1, ... for the causal fits
    train_windows: int = 150
    planner_futures: int = 8
    first_report_seed: int = protocol.RANGES["report"][0]
    allow_any_seeds: bool = False  # reproduce figures on seeds outside the protocol's ranges

    def __post_init__(self) -> None:
        for k in ("report_seeds", "windows", "cells", "train_seeds", "train_windows",
                  "planner_futures"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")
        protocol.check_seeds("report", self.report_seed_list, self.allow_any_seeds)

    @property
    def report_seed_list(self) -> list[int]:
        return list(range(self.first_report_seed, self.first_report_seed + self.report_seeds))

    @property
    def train_seed_list(self) -> list[int]:
        return protocol.seeds_for("train", self.train_seeds)

    @classmethod
    def quick(cls, **kw) -> YardstickConfig:
        base = dict(report_seeds=2, windows=12, cells=2, train_seeds=1, train_windows=12,
                    planner_futures=2)
        base.update(kw)
        return cls(**base)


@dataclass
class PolicyEval:
    """A policy's per-seed mean utility on report traffic."""

    name: str
    per_seed: list[float]
    kind: str  # "baseline" | "learned" | "ceiling"
    info: dict = field(default_factory=dict)


def has_cell_heterogeneity(cfg: SimConfig) -> bool:
    return any(c.mix_concentration is not None or c.radius_range_m is not None
               for c, _ in cfg.phases())


def evaluate_baselines(cfg: SimConfig, yc: YardstickConfig, progress: bool = False,
                       log: Callable[[str], None] | None = None) -> dict[str, PolicyEval]:
    """Every baseline of the module docstring on ``yc``'s report seeds."""
    say = log or (lambda _: None)
    codec = cfg.codec
    seeds = yc.report_seed_list
    out: dict[str, PolicyEval] = {}

    def per_seed(policy) -> list[float]:
        return [run_policy(policy, cfg, yc.windows, yc.cells, s).mean_utility for s in seeds]

    t0 = time.perf_counter()
    train = fixed_tables_for(cfg, yc.train_windows, yc.cells, yc.train_seed_list, progress)
    a_train, _ = best_split(train.mean((0, 1)), codec)
    tuned, _ = tune_proportional(cfg, yc.train_windows, yc.cells, yc.train_seed_list, progress)
    say(f"causal fits on train seeds {yc.train_seed_list}: {time.perf_counter() - t0:.1f}s")
    report = fixed_tables_for(cfg, yc.windows, yc.cells, seeds, progress)  # (S, C, V, 3)
    a_hind, _ = best_split(report.mean((0, 1)), codec)
    for name, pol in (("equal", equal_split(codec)),
                      ("proportional", DemandProportionalPolicy(cfg)),
                      ("tuned_proportional", tuned),
                      ("best_fixed_train", FixedPolicy(codec.decode(int(a_train)), codec)),
                      (REFERENCE, FixedPolicy(codec.decode(int(a_hind)), codec))):
        info = {}
        if isinstance(pol, FixedPolicy):
            info["units"] = pol.units.tolist()
        if pol is tuned:
            info.update(tuned.params())
        out[name] = PolicyEval(name, per_seed(pol), "baseline", info)
    if has_cell_heterogeneity(cfg):
        a_cell, u_cell = best_split(report, codec)  # (S, C)
        out["best_fixed_per_cell_hindsight"] = PolicyEval(
            "best_fixed_per_cell_hindsight", u_cell.mean(1).tolist(), "baseline",
            {"distinct_splits": int(len(np.unique(a_cell)))})
    t1 = time.perf_counter()
    out["planner"] = PolicyEval("planner", [run_policy(
        PlannerPolicy(yc.planner_futures, seed=s), cfg, yc.windows, yc.cells, s).mean_utility
        for s in seeds], "ceiling", {"futures": yc.planner_futures})
    t2 = time.perf_counter()
    out["oracle"] = PolicyEval("oracle", per_seed(OraclePolicy("full")), "ceiling",
                               {"search": "full"})
    t3 = time.perf_counter()
    decisions = len(seeds) * yc.windows * yc.cells
    out["planner"].info["ms_per_decision"] = round(1e3 * (t2 - t1) / decisions, 2)
    out["oracle"].info["ms_per_decision"] = round(1e3 * (t3 - t2) / decisions, 2)
    out["planner"].info["copies_per_decision"] = yc.planner_futures * len(unit_values(codec))
    say(f"planner {t2 - t1:.1f}s, oracle {t3 - t2:.1f}s")
    return out


def evaluate_policy(name: str, policy, cfg: SimConfig, yc: YardstickConfig,
                    kind: str = "learned", info: dict | None = None) -> PolicyEval:
    """Any ``act(sim, state)`` policy on the report seeds (learned policies, served students)."""
    return PolicyEval(name, [run_policy(policy, cfg, yc.windows, yc.cells, s).mean_utility
                             for s in yc.report_seed_list], kind, dict(info or {}))


def summarise(evals: dict[str, PolicyEval], cfg: SimConfig, yc: YardstickConfig) -> dict:
    """JSON-ready table: per policy mean, ci95, per_seed, ratios to best-fixed-in-hindsight,
    planner and oracle, and the paired difference against best-fixed-in-hindsight."""
    ref = evals[REFERENCE].per_seed
    means = {k: float(np.mean(v.per_seed)) for k, v in evals.items()}
    policies = {}
    for name, ev in evals.items():
        row = protocol.mean_ci(ev.per_seed)
        row["kind"] = ev.kind
        row["ratio_to_best_fixed_hindsight"] = protocol.ratio(means[name], means[REFERENCE])
        row["ratio_to_planner"] = protocol.ratio(means[name], means["planner"])
        row["ratio_to_oracle"] = protocol.ratio(means[name], means["oracle"])
        if name != REFERENCE:
            row["paired_diff_vs_best_fixed_hindsight"] = protocol.paired(ev.per_seed, ref)
        row.update(ev.info)
        policies[name] = row
    return {
        "profile": cfg.profile if not cfg.schedule else "schedule",
        "policies": policies,
        "margins": {
            "oracle_over_best_fixed_hindsight": round(means["oracle"] / means[REFERENCE] - 1, 4),
            "planner_over_best_fixed_hindsight": round(
                means["planner"] / means[REFERENCE] - 1, 4)},
        "floors": floor_headroom(means),
        "protocol": {"report_seeds": yc.report_seed_list, "train_seeds": yc.train_seed_list,
                     "windows": yc.windows, "cells": yc.cells,
                     "reference": REFERENCE, "oracle": "full-search clairvoyant (one-step)",
                     "planner": f"model-known one-step MPC, {yc.planner_futures} futures",
                     "seed_override": yc.allow_any_seeds},
        "config": asdict(yc),
    }


def floor_headroom(means: dict[str, float]) -> dict:
    """The utility a served policy needs to meet every floor at once, and whether the planner
    (model-known, causal) and the oracle (clairvoyant) reach it: a floor above the oracle is out
    of reach for any policy on this profile, one above the planner asks a learner to out-plan
    a model-known MPC."""
    need = {"over_best_fixed_hindsight": FLOORS["over_best_fixed_hindsight"] * means[REFERENCE],
            "of_planner": FLOORS["of_planner"] * means["planner"]}
    if "tuned_proportional" in means:
        need["over_tuned_heuristic"] = FLOORS["over_tuned_heuristic"] * means["tuned_proportional"]
    binding = max(need, key=need.get)
    all_floors = need[binding]
    return {"needed": {k: round(v, 4) for k, v in need.items()},
            "needed_for_all": round(all_floors, 4), "binding": binding,
            "planner_reaches": bool(means["planner"] >= all_floors),
            "oracle_reaches": bool(means["oracle"] >= all_floors),
            "needed_over_planner": round(all_floors / means["planner"] - 1, 4),
            "needed_over_oracle": round(all_floors / means["oracle"] - 1, 4)}


def markdown_table(summary: dict) -> str:
    """One markdown table of a profile's summary (mean ± CI and the three ratios)."""
    lines = [f"### {summary['profile']}", "",
             "| policy | utility (mean ± 95 % CI) | / best fixed (hindsight) | / planner | "
             "/ oracle | paired diff vs best fixed (wins) |",
             "|---|---|---|---|---|---|"]
    for name, r in sorted(summary["policies"].items(), key=lambda kv: kv[1]["mean"]):
        ci = f"{r['mean']:.3f} ± {r['ci95']:.3f}" if r["ci95"] is not None else f"{r['mean']:.3f}"
        d = r.get("paired_diff_vs_best_fixed_hindsight")
        ds = f"{d['mean']:+.3f} ± {d['ci95']:.3f} ({d['wins']}/{d['n']})" if d and d["ci95"] \
            is not None else "—"
        lines.append(f"| {name} | {ci} | {r['ratio_to_best_fixed_hindsight']} | "
                     f"{r['ratio_to_planner']} | {r['ratio_to_oracle']} | {ds} |")
    return "\n".join(lines) + "\n"
