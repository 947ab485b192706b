"""Probe the twin teacher's pessimism on TUNING traffic: training seed i, evaluation seed 1000 + i
(the protocol's probe range), so the setting chosen here never touches report seeds.

Per (profile, seed): the twin of ``experiment plan-distill --teacher twin`` (same data, fit and
rated states), its ratings of every split at the ensemble mean and as members' mean - kappa x
spread for each kappa, a student fitted to each, measured as served (ONNX) on the tuning seed.
One JSON line per (profile, seed, rating).

    .venv/bin/python scripts/probe_twin_pessimism.py [PROFILE ...] [--twin-windows N] [--kappas none,0,0.5]

Defaults: diurnal flash-crowd hetero; the teacher's 400 windows of data per cell; kappas
none,0,0.5,1,2 (none: the utility at the ensemble mean, today's rating).

Results: docs/figures/twin_pessimism_probe_tuning_seeds.jsonl; baselines of the same tuning
traffic: docs/figures/plan_distill_probe_tuning_seeds.jsonl.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from slicetwin.experiments.online import ServedPolicy
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim.baselines import run_policy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator
from slicetwin.twin import Twin, TwinConfig
from trainer.collect import collect_transitions
from trainer.export_onnx import export_policy
from trainer.plan_distill import PlanDistillConfig, fit_student
from trainer.twin_plan import TwinTeacherConfig, separable_tables, twin_utilities

KAPPAS = (None, 0.0, 0.5, 1.0, 2.0)
SEEDS = (0, 1, 2)
WINDOWS, CELLS = 150, 4  # the yardstick's evaluation size


def probe(profile: str, seed: int, windows: int, kappas: tuple) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    sim_cfg = SimConfig.from_profile(profile)
    t = TwinTeacherConfig(windows=windows)
    data = collect_transitions(t.windows, sim=RanSimulator(sim_cfg, n_cells=t.cells, seed=seed),
                               seed=seed)
    twin = Twin(TwinConfig(seed=seed, n_units=sim_cfg.n_units,
                           max_fit_seconds=t.max_fit_seconds), utility=sim_cfg.utility)
    twin.fit(data)
    rng = np.random.default_rng([seed, 0x7717])
    rows = np.sort(rng.choice(len(data), min(t.plan_rows, len(data)), replace=False))
    out = []
    for kappa in kappas:
        t0 = time.perf_counter()
        ratings = twin_utilities(twin, data, rows, pessimism=kappa)
        pcfg = PlanDistillConfig(seed=seed)
        model, _, hold = fit_student(data.state[rows], separable_tables(ratings, sim_cfg.codec),
                                     sim_cfg.codec, pcfg)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "student.onnx"
            export_policy(model.to_student(), path, n_units=sim_cfg.n_units, version="probe",
                          utility=sim_cfg.utility)
            served = ServedPolicy(OnnxPolicy(path.read_bytes()))
        u = run_policy(served, sim_cfg, WINDOWS, CELLS, 1000 + seed).mean_utility
        out.append({"profile": profile, "train_seed": seed, "eval_seed": 1000 + seed,
                    "twin_windows": windows, "pessimism": kappa, "served_student": round(u, 5),
                    "holdout_mse": round(hold, 6), "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    args, windows, kappas = sys.argv[1:], TwinTeacherConfig().windows, KAPPAS
    if "--twin-windows" in args:
        i = args.index("--twin-windows")
        windows = int(args[i + 1])
        del args[i:i + 2]
    if "--kappas" in args:
        i = args.index("--kappas")
        kappas = tuple(None if k == "none" else float(k) for k in args[i + 1].split(","))
        del args[i:i + 2]
    profiles = args or ["diurnal", "flash-crowd", "hetero"]
    with ProcessPoolExecutor(2) as ex:
        futs = [ex.submit(probe, p, s, windows, kappas) for p in profiles for s in SEEDS]
        for f in futs:
            f.result()


if __name__ == "__main__":
    main()
