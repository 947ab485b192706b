"""``experiment demo-ceiling``: the ceilings of the demo's floor, on the demo's own traffic."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slicetwin.experiments.demo_ceiling import (
    DemoCeilingConfig,
    demo_served,
    hindsight_fixed,
    run_demo_ceiling,
)
from slicetwin.sim.baselines import FixedPolicy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator

DEMO = Path(__file__).parents[3] / "docs/figures/demo_live_loop/diurnal_planner_summary.json"


def _fixed_recent(sim_cfg, cfg, seed, units) -> float:
    """A fixed split run offline from window 0; its mean utility over the recent windows of the
    shadow cells."""
    sim = RanSimulator(sim_cfg, n_cells=cfg.cells, seed=seed)
    sim.reset()
    pol = FixedPolicy(units, sim_cfg.codec)
    start, tot = cfg.windows - cfg.recent_windows, 0.0
    for w in range(cfg.windows):
        _, k = sim.step_actions(pol.act(sim, None))
        if w >= start:
            tot += float(k.utility[: cfg.shadow_cells].mean())
    return tot / cfg.recent_windows


@pytest.mark.parametrize("profile", ["diurnal", "flash-crowd"])
def test_hindsight_split_is_exact_and_beats_other_fixed_splits(profile):
    cfg = DemoCeilingConfig.quick(profile=profile, cells=3, shadow_cells=2, duration_s=8.0,
                                  recent_s=4.0)
    sim_cfg = SimConfig.from_profile(profile)
    got = hindsight_fixed(sim_cfg, cfg, seed=3)
    assert got["utility"] == pytest.approx(_fixed_recent(sim_cfg, cfg, 3, got["units"]), abs=1e-9)
    rng = np.random.default_rng(0)
    for a in rng.integers(0, sim_cfg.codec.n_actions, 6):
        assert _fixed_recent(sim_cfg, cfg, 3, sim_cfg.codec.decode(int(a))) <= got["utility"] + 1e-9


def test_quick_run_writes_its_files_and_orders_the_references(tmp_path):
    cfg = DemoCeilingConfig.quick(profile="flash-crowd", seeds=(1, 2))
    res = run_demo_ceiling(cfg, tmp_path, progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {"summary.json", "demo_ceiling.md",
                                                   "demo_ceiling.png"}
    assert json.loads((tmp_path / "summary.json").read_text()) == res
    p = res["policies"]
    assert p["best_fixed"]["utility"]["n"] == 2
    for row in res["per_seed"]:
        # the clairvoyant oracle sees the window it decides for: no causal policy does better
        for name in ("proportional", "tuned_proportional", "planner"):
            assert row["oracle"] >= row[name] - 1e-9
        assert row["planner_margin"] == pytest.approx(row["planner"] / row["best_fixed"] - 1)
    assert res["reach_the_floor"] == [n for n in ("proportional", "tuned_proportional", "planner",
                                                  "oracle")
                                      if p[n]["margin_over_best_fixed"]["mean"] >= 0.05]


def test_demo_summary_must_come_from_the_same_traffic():
    full = DemoCeilingConfig()
    d = demo_served(DEMO, full)
    raw = json.loads(DEMO.read_text())["shadow_baselines"]["last_5min"]["all_cells"]
    bf = raw["baselines"]["best_fixed"]
    assert d["margin"] == pytest.approx(bf["margin"], abs=1e-9)
    assert d["served_same_cells"] == bf["served_same_cells"]
    for other in (DemoCeilingConfig(seeds=(1,)), DemoCeilingConfig(cells=4),
                  DemoCeilingConfig(profile="paper"), DemoCeilingConfig(duration_s=300.0)):
        with pytest.raises(ValueError, match="not on the traffic measured here"):
            demo_served(DEMO, other)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "experiment",
                           "demo-ceiling", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def test_cli_refuses_bad_settings_with_a_clear_message(tmp_path):
    r = _cli("--quick", "--demo-summary", str(tmp_path / "missing.json"), "--out", str(tmp_path))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = _cli("--shadow-cells", "9", "--out", str(tmp_path))
    assert r.returncode == 2 and "shadow_cells must lie in 1..cells" in r.stderr
    r = _cli("--profile", "nope", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown profile" in r.stderr
    assert not list(tmp_path.iterdir())
