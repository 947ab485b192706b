"""``slicetwin experiment plan-distill``: the served student against the yardstick (quick run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slicetwin.core.protocol import SeedRangeError
from slicetwin.experiments.plan_distill import (
    POLICIES,
    PlanDistillExperimentConfig,
    run_plan_distill,
)
from slicetwin.runtime.onnx_policy import OnnxPolicy
from tests.unit.experiments.test_experiment_compare import quick_baselines

POLICY = POLICIES["simulator"]


def test_quick_run_measures_the_served_student_beside_every_baseline(tmp_path):
    base = quick_baselines(tmp_path / "base")
    cfg = PlanDistillExperimentConfig.quick(baselines_from=(str(base / "summary.json"),))
    res = run_plan_distill(cfg, tmp_path / "out", progress=False)
    assert res["baselines_reused"] == ["diurnal"]
    s = res["profiles"]["diurnal"]
    row = s["policies"][POLICY]
    assert row["kind"] == "served" and len(row["per_seed"]) == 2
    for k in ("ratio_to_best_fixed_hindsight", "ratio_to_planner", "ratio_to_oracle",
              "paired_diff_vs_best_fixed_hindsight"):
        assert row[k] is not None
    assert s["best_served"]["policy"] == POLICY
    assert s["protocol"]["report_seeds"] == [10000, 10001]
    assert "needed_for_all" in s["floors"]
    models = sorted((tmp_path / "out" / "models").glob("*.onnx"))
    assert [m.name for m in models] == ["diurnal_plan_distilled_seed0.onnx",
                                        "diurnal_plan_distilled_seed1.onnx"]
    OnnxPolicy(models[0].read_bytes())  # passes the serving contract
    for f in ("summary.json", "runs.csv", "plan_distill.md"):
        assert (tmp_path / "out" / f).exists()


def test_the_student_does_better_than_an_equal_split(tmp_path):
    """A statistical floor a broken fit or fold would miss: 2 pairs, 8 x 80 labels."""
    from slicetwin.experiments.plan_distill import one_pair

    cfg = PlanDistillExperimentConfig.quick(windows=40, cells=4,
                                            plan={"cells": 8, "windows": 80, "steps": 1500})
    from slicetwin.sim.baselines import equal_split, run_policy
    from slicetwin.sim.config import SimConfig

    sim_cfg = SimConfig.from_profile("diurnal")
    for i in range(2):
        row = one_pair("diurnal", i, cfg, str(tmp_path))
        equal = run_policy(equal_split(sim_cfg.codec), sim_cfg, 40, 4, row["report_seed"])
        assert row["student_utility"] > equal.mean_utility + 0.2


def test_training_on_report_seeds_is_refused():
    with pytest.raises(SeedRangeError):
        PlanDistillExperimentConfig(first_seed=10_000)
    with pytest.raises(ValueError, match="windows"):
        PlanDistillExperimentConfig(plan={"windows": 0})
    with pytest.raises(ValueError, match="unknown teacher"):
        PlanDistillExperimentConfig(teacher="oracle")
    with pytest.raises(ValueError, match="plan_rows"):
        PlanDistillExperimentConfig(twin={"plan_rows": 0})


def test_cli_quick_prints_one_json_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "experiment", "plan-distill",
                        "--quick", "--no-progress", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["best_served"]["diurnal"]["policy"] == POLICY
    bad = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "experiment",
                          "plan-distill", "--first-seed", "10000", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "seed" in bad.stderr.lower()


def test_the_twin_teacher_plans_with_a_twin_fitted_on_training_data(tmp_path):
    """``--teacher twin``: no simulator planner, a learned twin; its student is served and still
    clearly better than an equal split (a broken rating, projection or fold would not be)."""
    from slicetwin.experiments.plan_distill import one_pair
    from slicetwin.sim.baselines import equal_split, run_policy
    from slicetwin.sim.config import SimConfig

    cfg = PlanDistillExperimentConfig.quick(
        teacher="twin", windows=40, cells=4, plan={"steps": 1500},
        twin={"cells": 4, "windows": 100, "plan_rows": 60, "max_fit_seconds": 20.0})
    sim_cfg = SimConfig.from_profile("diurnal")
    row = one_pair("diurnal", 0, cfg, str(tmp_path))
    assert row["teacher"] == "twin" and row["labels"] == 60
    assert row["twin_metrics"]["next_state_rmse"] > 0
    assert row["onnx"] == "diurnal_twin_plan_distilled_seed0.onnx"
    OnnxPolicy((tmp_path / "models" / row["onnx"]).read_bytes())
    equal = run_policy(equal_split(sim_cfg.codec), sim_cfg, 40, 4, row["report_seed"])
    assert row["student_utility"] > equal.mean_utility + 0.1
