"""``slicetwin experiment online --quick`` through the real CLI: CSV per run, PNG, summary.json;
and the summary's threshold bookkeeping (a seed that never reaches counts as its total)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np

from slicetwin.experiments.online import first_crossing, interactions_to
from tests.support.paths import ROOT  # noqa: E402

SLICETWIN = [sys.executable, "-c", "from slicetwin.cli.main import main; main()"]


def test_experiment_online_quick_writes_csv_png_summary(tmp_path):
    out = tmp_path / "online"
    proc = subprocess.run(
        [*SLICETWIN, "experiment", "online", "--algo", "ddqn", "--algo", "random", "--twin",
         "--quick", "--seeds", "2", "--rounds", "2", "--out", str(out), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["out"] == str(out)

    csvs = sorted((out / "runs").glob("*.csv"))
    names = {p.stem for p in csvs}
    learners = ("ddqn_baseline", "ddqn_twin", "ddqn_baseline-matched", "ddqn_baseline-twin-eps")
    assert names == ({f"{v}_seed{s}" for v in (*learners, "random_random") for s in (0, 1)}
                     | {f"{v}_seed{s}_greedy" for v in learners for s in (0, 1)})
    with open(out / "runs" / "ddqn_twin_seed1_greedy.csv") as f:
        curve = list(csv.DictReader(f))
    # the greedy curve: every 40 interactions (quick), from 0 to the end of the run
    assert [int(r["real_interactions"]) for r in curve] == list(range(0, 401, 40))
    with open(out / "runs" / "ddqn_twin_seed0.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [1, 2]
    assert [int(r["real_interactions"]) for r in rows] == [200, 400]
    assert set(rows[0]) == {"round", "real_interactions", "mean_reward", "mean_utility",
                            "wall_time_s"}
    assert all(0.0 <= float(r["mean_reward"]) <= 3.0 for r in rows)
    assert float(rows[1]["wall_time_s"]) >= float(rows[0]["wall_time_s"]) > 0

    png = out / "online_ddqn.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    s = json.loads((out / "summary.json").read_text())
    assert s["oracle_utility"] > 0 and set(s["oracle_utility_per_seed"]) == {"0", "1"}
    by = {(c["algo"], c["variant"]): c for c in s["configs"]}
    assert set(by) == {("ddqn", "baseline"), ("ddqn", "twin"), ("ddqn", "baseline-matched"),
                       ("ddqn", "baseline-twin-eps"), ("random", "random")}
    twin = by[("ddqn", "twin")]
    assert twin["twin"] is True and twin["seeds"] == 2
    for key in ("interactions_to_reward_0.8", "interactions_to_reward_0.9"):
        for k2 in (key, f"{key}_rounds", f"greedy_{key}"):
            assert len(twin[k2]["per_seed"]) == 2 and "mean" in twin[k2]
        # full resolution: a whole round's window (>= 200) and a multiple of the 4 cells
        assert all(200 <= x <= 400 and x % 4 == 0 for x in twin[key]["per_seed"])
        assert all(x in (200, 400) for x in twin[f"{key}_rounds"]["per_seed"])
        assert f"{key}_ratio_to_baseline" in twin and f"{key}_ratio_to_baseline-twin-eps" in twin
    # the twin variant really used counterfactual twin transitions, and counted none of them
    run0 = twin["runs"][0]
    assert run0["twin_transitions"] > run0["real_interactions"] == 400
    assert "mean" in twin["final_reward"] and "mean" in twin["final_utility"]
    assert len(twin["greedy_utility_vs_oracle"]["per_seed"]) == 2
    # fairness bookkeeping: the matched baseline spends what the twin variant spends in total
    assert by[("ddqn", "baseline-matched")]["grad_steps_per_real"] > by[("ddqn", "baseline")][
        "grad_steps_per_real"]
    assert by[("random", "random")]["grad_steps_per_real"] == 0
    # the evaluation protocol: report seed 10000 + training seed, mean with 95 % CI and per-seed
    # values, every ratio named after its reference, the served ONNX student beside the greedy
    # Q-network, both against the oracle on the same traffic
    p = s["protocol"]
    assert p["train_seeds"] == [0, 1] and p["report_seeds"] == [10_000, 10_001]
    assert "clairvoyant" in p["oracle"] and "ONNX" in p["served"]
    for k2 in ("interactions_to_reward_0.8", "greedy_utility", "served_utility",
               "served_utility_vs_oracle", "greedy_utility_vs_oracle"):
        assert "ci95" in twin[k2] and len(twin[k2]["per_seed"]) == 2
    assert 0.0 < twin["served_utility_vs_oracle"]["mean"] < 1.2
    for ref in ("baseline", "baseline-matched", "baseline-twin-eps"):
        r = twin[f"interactions_to_reward_0.8_ratio_to_{ref}_per_seed"]
        assert r["n"] == 2 and "ci95" in r
        assert twin[f"served_utility_diff_vs_{ref}"]["n"] == 2
    assert len(list((out / "models").glob("ddqn_*_seed*.onnx"))) == 4 * 2
    fig5b = s["paper_fig5b"]
    assert fig5b["paper"]["baseline_over_twin"] == 1.5
    assert set(fig5b["ddqn"]) == {"baseline_over_twin", "baseline-matched_over_twin"}
    b_over_t = fig5b["ddqn"]["baseline_over_twin"]
    assert b_over_t["of_means"] == round(by[("ddqn", "baseline")]["interactions_to_reward_0.8"][
        "mean"] / twin["interactions_to_reward_0.8"]["mean"], 4)


def test_interactions_to_flags_seeds_that_never_reach():
    def rows(rewards):
        return [{"real_interactions": 200 * (i + 1), "mean_reward": r} for i, r in enumerate(rewards)]

    got = interactions_to([rows([0.1, 0.85, 0.9, 0.95]), rows([0.1, 0.2, 0.3, 0.4])], 0.8, smooth=1)
    assert got["per_seed"] == [400, 800]
    assert got["reached"] == [True, False] and got["never_reached"] == 1
    assert got["mean"] == 600
    # trailing moving average: 0.85 alone is not enough with smooth=2 ((0.1+0.85)/2 < 0.8)
    got2 = interactions_to([rows([0.1, 0.85, 0.9, 0.95])], 0.8, smooth=2)
    assert got2["per_seed"] == [600]


def test_first_crossing_full_resolution_window():
    # 4 cells per step; rewards 0 for 100 interactions, then 1: a 200-wide window reaches a
    # mean of 0.8 once at most 40 zeros remain in it, i.e. at k = 260
    r = np.concatenate([np.zeros(100), np.ones(300)])
    assert first_crossing(r, 4, 200, 0.8) == 260
    assert first_crossing(r, 4, 200, 1.0) == 300
    # never reached, and too short for one full window
    assert first_crossing(np.full(400, 0.5), 4, 200, 0.8) is None
    assert first_crossing(np.ones(100), 4, 200, 0.8) is None
    # a window is never shorter than `window`: early good luck does not count
    lucky = np.concatenate([np.ones(40), np.zeros(200), np.ones(400)])
    assert first_crossing(lucky, 4, 200, 0.8) == 240 + 160


def test_greedy_curve_needs_consecutive_evaluations_to_count():
    from slicetwin.experiments.online import GreedyCurve, OnlineExperimentConfig

    curve = GreedyCurve.__new__(GreedyCurve)  # only the bookkeeping, no simulator needed
    curve.cfg = OnlineExperimentConfig(curve_hold=2)
    curve.points = [{"real_interactions": k, "greedy_reward": r, "greedy_utility": 0.0}
                    for k, r in [(0, 0.85), (20, 0.5), (40, 0.82), (60, 0.95), (80, 0.7)]]
    assert curve.crossing(0.8) == 40  # 0 alone was a single lucky evaluation
    assert curve.crossing(0.9) is None
    curve.cfg = OnlineExperimentConfig(curve_hold=1)
    assert curve.crossing(0.8) == 0


def test_a1_config_collects_whole_vector_steps_and_stops_at_the_budget():
    from slicetwin.experiments.online import OnlineExperimentConfig, a1_config

    a1 = a1_config(OnlineExperimentConfig(n_cells=8, rounds=3))  # 100 random is not 8-divisible
    assert a1.initial_collect == 104 and a1.initial_collect % 8 == 0
    assert a1.max_interactions == 600
    assert a1.initial_collect + a1.iterations * a1.real_steps >= 600  # enough iterations
    a1 = a1_config(OnlineExperimentConfig(n_cells=4, rounds=30))
    assert (a1.initial_collect, a1.iterations, a1.counterfactual_actions) == (100, 30, 31)


def test_first_seed_moves_every_run_and_the_oracle_to_held_out_seeds():
    import pytest

    from slicetwin.experiments.online import OnlineExperimentConfig, specs

    cfg = OnlineExperimentConfig(algos=("ddqn", "random"), seeds=3, first_seed=5)
    assert cfg.seed_list == [5, 6, 7]
    by_variant: dict[str, set[int]] = {}
    for s in specs(cfg):
        by_variant.setdefault(s.variant, set()).add(s.seed)
    assert set(by_variant) == {"baseline", "twin", "baseline-matched", "baseline-twin-eps",
                               "random"}
    assert all(seeds == {5, 6, 7} for seeds in by_variant.values())
    assert {s.seed for s in specs(OnlineExperimentConfig(seeds=2))} == {0, 1}
    with pytest.raises(ValueError, match="first_seed"):
        OnlineExperimentConfig(first_seed=-1)


def test_report_seeds_are_refused_as_training_seeds():
    import subprocess
    import sys

    import pytest

    from slicetwin.core.protocol import SeedRangeError
    from slicetwin.experiments.online import OnlineExperimentConfig, report_seed

    with pytest.raises(SeedRangeError, match="train seeds"):
        OnlineExperimentConfig(first_seed=9_998, seeds=5)
    assert OnlineExperimentConfig(first_seed=1000).seed_role == "tune"  # probes
    assert OnlineExperimentConfig(first_seed=10_000, allow_any_seeds=True).seed_list[0] == 10_000
    assert report_seed(3) == 10_003
    r = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "experiment", "online",
                        "--quick", "--first-seed", "10000"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "train seeds must lie in 0-999" in r.stderr


def test_profile_reaches_the_training_env_and_bad_profiles_are_refused():
    import subprocess
    import sys

    from slicetwin.experiments.online import OnlineExperimentConfig, make_env

    env = make_env(OnlineExperimentConfig(sim_profile="diurnal"), 0)
    assert env.env.sim.config.profile == "diurnal"
    r = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "experiment", "online", "--quick",
                        "--profile", "rush-hour"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown profile" in r.stderr
