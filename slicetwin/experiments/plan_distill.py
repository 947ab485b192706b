"""``slicetwin experiment plan-distill``: the planner distilled into the served student, on
report traffic, against the yardstick.

Per profile and seed pair i (``protocol.SeedPairs``):

1. ``trainer.plan_distill`` samples the model-known planner's per-slice tables along its own
   trajectory on training seed ``first_seed + i`` and fits the 16-unit student to them;
2. the student is exported to ONNX and loaded with the controller's runner (``OnnxPolicy``);
3. the served student is measured on report seed ``first_report_seed + i``, the traffic of every
   yardstick baseline, which are measured here or reused from a ``slicetwin baselines`` /
   ``experiment compare`` summary of the same protocol.

With ``teacher="simulator"`` the planner's model is the simulator itself (a perfect twin,
available where we train, never where we serve): what decision-time planning can give a served
student once the twin is exact. ``teacher="twin"`` plans with the learned twin instead, fitted on
real data of the training seed (``trainer.twin_plan``): what a deployment can have.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from slicetwin.core import protocol
from slicetwin.experiments.compare import baselines_job, best_served, reuse_baselines
from slicetwin.experiments.distill import write_csv
from slicetwin.experiments.online import ServedPolicy, init_torch_worker
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim.baselines import run_policy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.report import write_report
from slicetwin.sim.yardstick import PolicyEval, YardstickConfig, summarise
from trainer.export_onnx import export_policy
from trainer.plan_distill import PlanDistillConfig, plan_distill
from trainer.twin_plan import TwinTeacherConfig, twin_plan_distill

POLICIES = {"simulator": "planner-distilled (student, served)",
            "twin": "twin-planner-distilled (student, served)"}
TEACHERS = tuple(POLICIES)


@dataclass
class PlanDistillExperimentConfig(protocol.SeedPairs):
    profiles: tuple[str, ...] = ("diurnal", "flash-crowd", "hetero")
    seeds: int = 5
    first_seed: int = 0
    first_report_seed: int = protocol.RANGES["report"][0]
    allow_any_seeds: bool = False
    plan: dict = field(default_factory=dict)  # PlanDistillConfig overrides
    windows: int = 150  # report windows per seed (the yardstick's)
    cells: int = 4  # report cells per seed
    planner_futures: int = 8  # the yardstick planner's
    fit_seeds: int = 3  # training seeds the causal baselines (best fixed, tuned heuristic) fit on
    baselines_from: tuple[str, ...] = ()
    workers: int = 2
    teacher: str = "simulator"  # whose plans: the simulator's (model-known) or the learned twin's
    twin: dict = field(default_factory=dict)  # TwinTeacherConfig overrides (teacher "twin")

    def __post_init__(self) -> None:
        for p in self.profiles:
            SimConfig.from_profile(p)  # a ValueError naming the choices
        PlanDistillConfig(**self.plan)  # unknown or bad settings fail before any work
        TwinTeacherConfig(**self.twin)
        if self.teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {self.teacher!r}; choose from {list(TEACHERS)}")
        self.check_seed_pairs()

    def yardstick_config(self) -> YardstickConfig:
        return YardstickConfig(report_seeds=self.seeds, first_report_seed=self.first_report_seed,
                               allow_any_seeds=self.allow_any_seeds, windows=self.windows,
                               cells=self.cells, train_seeds=self.fit_seeds, train_windows=self.windows,
                               planner_futures=self.planner_futures)

    @classmethod
    def quick(cls, **kw) -> PlanDistillExperimentConfig:
        """Smoke run (the fast test suite): one profile, 2 seeds, a few hundred labels."""
        base = dict(profiles=("diurnal",), seeds=2, windows=12, cells=2, planner_futures=2,
                    fit_seeds=1, workers=1, plan={"cells": 4, "windows": 40, "steps": 200},
                    twin={"cells": 2, "windows": 40, "plan_rows": 24, "max_fit_seconds": 5.0})
        base.update(kw)
        return cls(**base)


def one_pair(profile: str, index: int, cfg: PlanDistillExperimentConfig, out: str) -> dict:
    """Fit the student on training seed i, export it, measure it as served on report seed i."""
    import torch  # lazy: torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sim_cfg = SimConfig.from_profile(profile)
    train_seed, report_seed = cfg.train_seeds[index], cfg.report_seeds[index]
    pcfg = PlanDistillConfig(**{**cfg.plan, "seed": train_seed})
    if cfg.teacher == "twin":
        res = twin_plan_distill(sim_cfg, TwinTeacherConfig(**cfg.twin), pcfg, train_seed)
    else:
        res = plan_distill(sim_cfg, pcfg, train_seed)
    stem = "twin_plan_distilled" if cfg.teacher == "twin" else "plan_distilled"
    path = Path(out) / "models" / f"{profile}_{stem}_seed{train_seed}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    export_policy(res.student, path, n_units=sim_cfg.n_units, version=path.stem,
                  metrics={"profile": profile, "train_seed": train_seed,
                           "holdout_mse": res.holdout_mse}, utility=sim_cfg.utility)
    served = ServedPolicy(OnnxPolicy(path.read_bytes()))
    u = run_policy(served, sim_cfg, cfg.windows, cfg.cells, report_seed).mean_utility
    return {"profile": profile, "index": index, "train_seed": train_seed,
            "report_seed": report_seed, "student_utility": u, "labels": len(res.states),
            "train_mse": round(res.train_mse, 6), "holdout_mse": round(res.holdout_mse, 6),
            "collect_s": res.collect_s, "fit_s": res.fit_s, "onnx": path.name,
            "teacher": cfg.teacher, "twin_metrics": res.config.get("twin_metrics"),
            "wall_time_s": round(time.perf_counter() - t0, 1)}


def run_plan_distill(cfg: PlanDistillExperimentConfig, out: Path, progress: bool = True) -> dict:
    """Every pair of every profile (``cfg.workers`` processes), then the baselines; writes
    ``summary.json``, ``runs.csv``, ``plan_distill.md`` and a bar plot per profile."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(p, i) for p in cfg.profiles for i in range(cfg.seeds)]
    rows = []
    bar = tqdm(total=len(jobs), desc="experiment plan-distill", disable=not progress)
    if cfg.workers <= 1:
        for p, i in jobs:
            rows.append(one_pair(p, i, cfg, str(out)))
            bar.update(1)
    else:
        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn"),
                                 initializer=init_torch_worker) as ex:
            for row in ex.map(one_pair, *zip(*jobs, strict=True),
                              [cfg] * len(jobs), [str(out)] * len(jobs)):
                rows.append(row)
                bar.update(1)
    bar.close()
    yc = cfg.yardstick_config()
    result: dict = {"experiment": "plan-distill", "profiles": {}, "baselines_reused": []}
    for p in cfg.profiles:
        found = [x for x in (reuse_baselines(Path(d), p, yc) for d in cfg.baselines_from) if x]
        if found:
            result["baselines_reused"].append(p)
        base = found[0] if found else baselines_job(p, yc)[1]
        mine = sorted((r for r in rows if r["profile"] == p), key=lambda r: r["index"])
        info = {"labels_per_seed": mine[0]["labels"],
                "holdout_mse": round(sum(r["holdout_mse"] for r in mine) / len(mine), 6)}
        name = POLICIES[cfg.teacher]
        evals = {**base, name: PolicyEval(name, [r["student_utility"] for r in mine],
                                          "served", info)}
        result["profiles"][p] = summarise(evals, SimConfig.from_profile(p), yc)
        result["profiles"][p]["best_served"] = best_served(result["profiles"][p])
    write_csv(out / "runs.csv", sorted(rows, key=lambda r: (r["profile"], r["index"])))
    result["config"] = asdict(cfg)
    result["train_seeds"] = cfg.train_seeds
    result["total_wall_time_s"] = round(time.perf_counter() - t0, 1)
    result["files"] = [p.name for p in write_report(out, result, stem="plan_distill")]
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    return result
