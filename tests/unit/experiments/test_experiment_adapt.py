"""``slicetwin experiment adapt``: the quick run's outputs and their invariants (the full run is
marked slow)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from slicetwin.core.protocol import SeedRangeError
from slicetwin.experiments import adapt_measures as am
from slicetwin.experiments.adapt import AdaptConfig, best_fixed_curve, run_adapt
from slicetwin.sim import RanSimulator, SimConfig


def _curves(path):
    by = defaultdict(list)
    with open(path) as f:
        for r in csv.DictReader(f):
            by[(int(r["seed"]), r["variant"])].append(r)
    return by


def test_adapt_quick_writes_consistent_outputs(tmp_path):
    cfg = AdaptConfig.quick()
    res = run_adapt(cfg, tmp_path, progress=False)
    for f in ("summary.json", "adapt.csv", "adapt.md", "adapt.png", "seeds.jsonl"):
        assert (tmp_path / f).exists(), f
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["experiment"] == "adapt" and s["protocol"]["seeds"] == [0, 1]
    pre, post = cfg.phase_windows
    curves = _curves(tmp_path / "adapt.csv")
    variants = ("twin", "twin-plan", "matched")
    assert set(curves) == {(seed, v) for seed in (0, 1) for v in variants}
    for seed in (0, 1):
        tw, bl = curves[(seed, "twin")], curves[(seed, "matched")]
        tp = curves[(seed, "twin-plan")]
        assert [r["arrived"] for r in tp] == [r["arrived"] for r in bl]
        assert [r["served_utility"] for r in tp[:cfg.refresh_every]] == [
            r["served_utility"] for r in bl[:cfg.refresh_every]]
        # the twin-planned student differs from the matched one after its first refresh
        assert [r["served_utility"] for r in tp] != [r["served_utility"] for r in bl]
        assert [int(r["window"]) for r in tw] == list(range(1, post + 1))
        # both variants meet the same post-change traffic and the same best fixed split
        assert [r["arrived"] for r in tw] == [r["arrived"] for r in bl]
        assert [r["best_fixed_utility"] for r in tw] == [r["best_fixed_utility"] for r in bl]
        # until the first refresh both serve the pre-change student on that traffic
        k = cfg.refresh_every
        assert [r["served_utility"] for r in tw[:k]] == [r["served_utility"] for r in bl[:k]]
        assert [int(r["student"]) for r in tw[k - 1:k + 1]] == [0, 1]
        assert int(tw[-1]["student"]) == (post - 1) // k
        for v, rows in (("twin", tw), ("twin-plan", tp), ("matched", bl)):
            served = np.array([float(r["served_utility"]) for r in rows])
            best = np.array([float(r["best_fixed_utility"]) for r in rows])
            m = s["per_seed"][str(seed)][v]
            # the summary's figures are what the CSV curve gives
            assert m["windows_to_target"] == am.windows_to_target(served, best, cfg.smooth,
                                                                  cfg.target)
            w = cfg.dip_windows
            means = [served[i - w:i].mean() for i in range(w, post + 1)]
            assert m["dip"]["utility"] == pytest.approx(min(means), abs=1e-5)
            assert m["dip"]["ratio"] == pytest.approx(
                min(means) / best[m["dip"]["end_window"] - w:m["dip"]["end_window"]].mean(),
                abs=1e-5)
    for v in variants:
        wt = s["variants"][v]["windows_to_target"]
        raw = wt["per_seed_raw"]
        assert wt["censored"] == sum(x is None for x in raw)
        assert wt["per_seed"] == [post if x is None else x for x in raw]
    # the matched baseline is given the twin variant's gradient steps per real interaction
    tw_v, bl_v = s["variants"]["twin"], s["variants"]["matched"]
    assert bl_v["train_every"] == pytest.approx(1 / tw_v["configured_grad_steps_per_real"],
                                                abs=1e-3)
    assert bl_v["grad_steps_per_real"] > 0 and tw_v["grad_steps_per_real"] > 0
    r = s["twin_over_matched_windows"]
    tw_w = s["variants"]["twin"]["windows_to_target"]["per_seed"]
    bl_w = s["variants"]["matched"]["windows_to_target"]["per_seed"]
    assert r["ratio"] == pytest.approx(np.mean(tw_w) / np.mean(bl_w), abs=1e-4)
    assert r["ci95_low"] <= r["ratio"] <= r["ci95_high"]
    assert "| twin |" in (tmp_path / "adapt.md").read_text()
    # twin-plan: its student regression spends exactly the budget matched is given, and its
    # ratio to matched is reported beside Algorithm 1's
    tp_v = s["variants"]["twin-plan"]
    assert tp_v["grad_steps_per_real"] == pytest.approx(tw_v["configured_grad_steps_per_real"],
                                                        abs=1e-3)
    rp = s["twin_plan_over_matched_windows"]
    tp_w = tp_v["windows_to_target"]["per_seed"]
    assert rp["ratio"] == pytest.approx(np.mean(tp_w) / np.mean(bl_w), abs=1e-4)
    assert "`twin-plan` / matched" in (tmp_path / "adapt.md").read_text()

    # --resume finds both seeds and trains nothing: the same figures
    again = run_adapt(cfg, tmp_path, progress=False, resume=True)
    assert again["variants"] == res["variants"]
    assert again["total_wall_time_s"] < 5
    # another target measures the same runs again, without re-running them
    level = run_adapt(replace(cfg, target=1.0), tmp_path, progress=False, resume=True)
    assert level["total_wall_time_s"] < 5 and level["protocol"]["target"] == 1.0
    for v in variants:
        assert level["variants"][v]["mean_ratio"] == res["variants"][v]["mean_ratio"]
        for a, b in zip(level["variants"][v]["windows_to_target"]["per_seed"],
                        res["variants"][v]["windows_to_target"]["per_seed"], strict=True):
            assert a >= b  # a higher bar is never reached sooner


def test_best_fixed_curve_is_exact_and_best():
    cfg = SimConfig.from_profile("paper:3,flash-crowd:30")
    sim = RanSimulator(cfg, n_cells=2, seed=1000)
    sim.reset()
    for _ in range(3):
        sim.step_actions(np.zeros(2, np.int64))
    b = best_fixed_curve(sim, 15)
    assert len(b["curve"]) == 15 and sum(b["units"]) == cfg.n_units

    def fixed(action):
        c = sim.replicate_many(np.arange(2))
        return np.array([np.mean(c.step_actions(np.full(2, action))[1].utility)
                         for _ in range(15)])
    assert np.allclose(fixed(b["action"]), b["curve"], atol=1e-9)  # exact, not estimated
    equal = int(cfg.codec.encode(np.array([[33, 33, 34]]))[0])
    for a in (0, equal, cfg.codec.n_actions - 1):
        assert fixed(a).mean() <= b["curve"].mean() + 1e-12


def test_adapt_refuses_bad_settings():
    with pytest.raises(ValueError, match="exactly two phases"):
        AdaptConfig(schedule="paper")
    with pytest.raises(ValueError, match="unknown profile"):
        AdaptConfig(schedule="paper:100,rush-hour:200")
    with pytest.raises(SeedRangeError):
        AdaptConfig(first_seed=10_000)
    with pytest.raises(ValueError, match="at least"):
        AdaptConfig(schedule="paper:100,flash-crowd:20")
    with pytest.raises(ValueError, match="unknown variant"):
        AdaptConfig(variants=("ppo",))
    r = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "experiment", "adapt",
                        "--schedule", "paper", "--out", "/nonexistent/never"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "exactly two phases" in r.stderr
    r = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "experiment", "adapt",
                        "--target", "1.6", "--out", "/nonexistent/never"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "target must be in (0, 1.5]" in r.stderr


@pytest.mark.slow
def test_adapt_full_size_run(tmp_path):
    """The documented run at a reduced seed count: twin and matched, every output written."""
    cfg = AdaptConfig(seeds=2, workers=2)
    s = run_adapt(cfg, tmp_path, progress=False)
    assert s["twin_over_matched_windows"]["per_seed"]
    assert len(s["variants"]["twin"]["windows_to_target"]["per_seed"]) == 2
