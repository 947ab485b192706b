"""``slicetwin experiment compare``: learned teachers and served ONNX students against every
baseline on report traffic (quick run; the full run is marked slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slicetwin.core.protocol import SeedRangeError
from slicetwin.experiments.compare import CompareConfig, journal_from_summary, run_compare
from slicetwin.runtime.onnx_policy import OnnxPolicy


def quick_baselines(out):
    """`slicetwin baselines --quick` on diurnal into ``out`` (the compare quick run's protocol)."""
    r = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "baselines", "--quick",
                        "--profile", "diurnal", "--json", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def test_compare_quick_writes_the_table_for_teachers_and_served_students(tmp_path):
    base = quick_baselines(tmp_path / "base")
    cfg = CompareConfig.quick(baselines_from=(str(tmp_path / "none"), str(base)))
    res = run_compare(cfg, tmp_path, progress=False)
    assert res["baselines_reused"] == ["diurnal"]  # same protocol: reused, not re-measured
    measured = json.loads((base / "summary.json").read_text())["profiles"]["diurnal"]
    assert res["profiles"]["diurnal"]["policies"]["oracle"]["per_seed"] == \
        measured["policies"]["oracle"]["per_seed"]
    s = res["profiles"]["diurnal"]
    pol = s["policies"]
    for name in ("equal", "proportional", "tuned_proportional", "best_fixed_train",
                 "best_fixed_hindsight", "planner", "oracle",
                 "ddqn/twin (student, served)", "ddqn/twin (teacher)",
                 "gan-ddqn/baseline (student, served)"):
        row = pol[name]
        assert len(row["per_seed"]) == 2 and row["ci95"] is not None
        assert row["ratio_to_oracle"] <= 1.0 + 1e-9  # nothing beats the oracle on its traffic
        for k in ("ratio_to_best_fixed_hindsight", "ratio_to_planner"):
            assert row[k] is not None
    assert pol["ddqn/twin (student, served)"]["kind"] == "served"
    assert s["protocol"]["report_seeds"] == [10_000, 10_001]
    assert res["train_seeds"] == [0, 1]
    assert s["best_served"]["policy"].endswith("(student, served)")
    # the students that were measured are real ONNX files the controller's runner accepts
    models = sorted((tmp_path / "models").glob("*.onnx"))
    assert len(models) == 8
    OnnxPolicy(models[0].read_bytes())
    for f in ("summary.json", "compare.md", "runs.csv"):
        assert (tmp_path / f).exists()
    assert json.loads((tmp_path / "summary.json").read_text())["experiment"] == "compare"
    assert "| oracle |" in (tmp_path / "compare.md").read_text()

    # a journal rebuilt from the summary alone tables the same figures (run dirs are not kept)
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    rows = journal_from_summary(res, "summary.json")
    assert len(rows) == 8  # 4 variants x 2 seeds, one row per learned run
    (rebuilt / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = run_compare(cfg, rebuilt, progress=False, report_only=True)
    for name, row in pol.items():
        assert again["profiles"]["diurnal"]["policies"][name]["per_seed"] == row["per_seed"], name


def test_compare_refuses_report_seeds_outside_the_report_range():
    with pytest.raises(SeedRangeError):
        CompareConfig.quick(first_report_seed=3)
    assert CompareConfig.quick(first_report_seed=3, allow_any_seeds=True).report_seeds == [3, 4]
    r = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "experiment", "compare",
                        "--quick", "--first-seed", "1000"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "report seeds must lie" in r.stderr
    with pytest.raises(ValueError, match="unknown algo"):
        CompareConfig(algos=("ppo",))
    with pytest.raises(ValueError, match="unknown profile"):
        CompareConfig(profiles=("rush-hour",))


def test_baselines_measured_under_another_protocol_are_not_reused(tmp_path):
    from slicetwin.experiments.compare import reuse_baselines

    base = quick_baselines(tmp_path / "base")
    assert reuse_baselines(base, "diurnal", CompareConfig.quick().yardstick_config()) is not None
    other = CompareConfig.quick(yardstick={"windows": 13, "cells": 2, "train_seeds": 1,
                                           "train_windows": 12, "planner_futures": 2})
    assert reuse_baselines(base, "diurnal", other.yardstick_config()) is None
    assert reuse_baselines(base, "hetero", CompareConfig.quick().yardstick_config()) is None


def test_resume_skips_finished_runs(tmp_path):
    cfg = CompareConfig.quick(algos=("ddqn",), variants=("baseline",), seeds=2)
    first = run_compare(cfg, tmp_path, progress=False)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 2
    # drop one finished run: --resume trains only that one again and keeps the other's row
    (tmp_path / "runs.jsonl").write_text(lines[0] + "\n")
    kept = json.loads(lines[0])
    again = run_compare(cfg, tmp_path, progress=False, resume=True)
    rows = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0] == kept
    name = "ddqn/baseline (student, served)"
    assert again["profiles"]["diurnal"]["policies"][name]["per_seed"] == \
        first["profiles"]["diurnal"]["policies"][name]["per_seed"]  # deterministic retrain
    # --report-only trains nothing; a variant missing a seed is left out of the table
    (tmp_path / "runs.jsonl").write_text(lines[0] + "\n")
    partial = run_compare(cfg, tmp_path, progress=False, report_only=True)
    assert name not in partial["profiles"]["diurnal"]["policies"]
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_compare_five_seeds_full_protocol(tmp_path):
    """A reduced full run (5 seed pairs, every variant of one algorithm, real networks): every
    variant gets 5 per-seed values, the CI uses them, and nothing beats the oracle."""
    cfg = CompareConfig(profiles=("diurnal",), seeds=5, algos=("ddqn",), rounds=2,
                        distill_rounds=500, workers=2,
                        yardstick={"windows": 30, "cells": 2, "train_seeds": 2,
                                   "train_windows": 30, "planner_futures": 4})
    res = run_compare(cfg, tmp_path, progress=False)
    pol = res["profiles"]["diurnal"]["policies"]
    for v in ("baseline", "twin", "baseline-matched", "baseline-twin-eps"):
        row = pol[f"ddqn/{v} (student, served)"]
        assert len(row["per_seed"]) == 5 and row["ci95"] > 0
        assert row["mean"] <= pol["oracle"]["mean"] + 1e-9
    assert res["profiles"]["diurnal"]["protocol"]["report_seeds"] == list(range(10_000, 10_005))
