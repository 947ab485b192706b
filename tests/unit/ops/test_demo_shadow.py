"""The demo's shadow baselines are exact: the same arrivals give the same utility as an offline
``slicetwin.sim`` run of the fixed or heuristic policy on the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from slicetwin.ops.demo.run import DemoConfig, demo_simulator
from slicetwin.ops.demo.shadow import BEST_FIXED, DemoShadow
from slicetwin.sim.baselines import (
    DemandProportionalPolicy,
    FixedPolicy,
    TunedProportionalPolicy,
    best_fixed,
    equal_split,
    run_policy,
)

CELLS, WINDOWS, SEED = 3, 25, 4


def _served_loop(profile: str, bank_cells=None, tuned=None, seed=SEED):
    """The demo's cells under random allocations (a policy nobody would serve), with their
    shadows; every third cell-window flagged as explored (not a policy decision)."""
    sim = demo_simulator(DemoConfig(cells=CELLS, seed=seed, profile=profile))
    sim.reset()
    shadow = DemoShadow(sim, tuned, {"weights": "x"} if tuned else None, bank_cells)
    rng = np.random.default_rng(0)
    served, masks = [], []
    for k in range(WINDOWS):
        _, kpis = sim.step_actions(rng.integers(0, sim.codec.n_actions, CELLS))
        mask = (np.arange(CELLS) + k) % 3 != 0
        shadow.record(kpis.utility, mask)
        served.append(np.asarray(kpis.utility, float))
        masks.append(mask)
    return sim, shadow, np.asarray(served), np.asarray(masks)


@pytest.mark.parametrize("profile", ["paper", "diurnal", "flash-crowd", "hetero"])
def test_shadow_baselines_equal_offline_runs_of_the_same_policies(profile):
    tuned = TunedProportionalPolicy(demo_simulator(DemoConfig(profile=profile)).config,
                                    (1.0, 2.0, 1.0), (0.0, 0.3, 0.1))
    sim, shadow, served, masks = _served_loop(profile, tuned=tuned)
    cfg, codec = sim.config, sim.codec
    fig = shadow.figures()
    assert fig["windows"] == WINDOWS
    allc, pol = fig["all_cells"], fig["policy_cells"]
    assert allc["served"] == pytest.approx(served.mean(), abs=1e-12)
    assert pol["served"] == pytest.approx(served[masks].mean(), abs=1e-12)
    offline = {"equal": run_policy(equal_split(codec), cfg, WINDOWS, CELLS, SEED),
               "proportional": run_policy(DemandProportionalPolicy(cfg), cfg, WINDOWS, CELLS,
                                          SEED),
               "tuned_proportional": run_policy(tuned, cfg, WINDOWS, CELLS, SEED)}
    for name, res in offline.items():
        assert abs(allc["baselines"][name]["utility"] - res.mean_utility) < 1e-9, name
        # the same cell-windows as the policy's decisions
        assert abs(pol["baselines"][name]["utility"] - res.utilities[masks].mean()) < 1e-9
        b = allc["baselines"][name]
        assert b["margin"] == pytest.approx(allc["served"] / b["utility"] - 1, abs=1e-12)
    # best fixed in hindsight: the split the shadows found earns, offline, exactly the figure,
    # and it is the optimum the offline exact search finds on the same traffic
    bf = allc["baselines"][BEST_FIXED]
    run = run_policy(FixedPolicy(bf["units"], codec), cfg, WINDOWS, CELLS, SEED)
    assert abs(bf["utility"] - run.mean_utility) < 1e-9
    a_off, u_off = best_fixed(cfg, WINDOWS, CELLS, [SEED])
    assert codec.decode(a_off).tolist() == bf["units"] and abs(u_off - bf["utility"]) < 1e-9
    assert bf["utility"] >= offline["equal"].mean_utility - 1e-12
    # over the policy's cell-windows: the best fixed split there, scored on those only
    bp = pol["baselines"][BEST_FIXED]
    runp = run_policy(FixedPolicy(bp["units"], codec), cfg, WINDOWS, CELLS, SEED)
    assert abs(bp["utility"] - runp.utilities[masks].mean()) < 1e-9
    assert bp["utility"] >= offline["equal"].utilities[masks].mean() - 1e-12
    # the plot's per-window curve of the overall best fixed split
    units, per, same = shadow.best_fixed_per_window()
    assert units == bf["units"] and np.allclose(per, run.utilities.mean(1), atol=1e-9)
    assert np.allclose(same, served.mean(1), atol=1e-12)


def test_best_fixed_on_a_subset_of_cells_and_the_last_windows():
    """``bank_cells`` tracks the first cells only (served compared on those same cells); the
    last-N-windows figures use exactly those windows."""
    sim, shadow, served, masks = _served_loop("diurnal", bank_cells=1)
    cfg, codec = sim.config, sim.codec
    last = 10
    fig = shadow.figures(last)
    assert fig["windows"] == last and fig["from_window"] == WINDOWS - last
    bf = fig["all_cells"]["baselines"][BEST_FIXED]
    assert bf["cells"] == 1 and bf["cell_windows"] == last
    assert bf["served_same_cells"] == pytest.approx(served[-last:, 0].mean(), abs=1e-12)
    run = run_policy(FixedPolicy(bf["units"], codec), cfg, WINDOWS, CELLS, SEED)
    assert abs(bf["utility"] - run.utilities[-last:, 0].mean()) < 1e-9
    eq = run_policy(equal_split(codec), cfg, WINDOWS, CELLS, SEED)
    assert abs(fig["all_cells"]["baselines"]["equal"]["utility"]
               - eq.utilities[-last:].mean()) < 1e-9
    assert fig["all_cells"]["served"] == pytest.approx(served[-last:].mean(), abs=1e-12)


def test_no_bank_cells_and_a_used_simulator():
    sim, shadow, _, _ = _served_loop("paper", bank_cells=0)
    fig = shadow.figures()
    assert BEST_FIXED not in fig["all_cells"]["baselines"]
    assert shadow.best_fixed_per_window() is None
    assert set(shadow.summary()["overall"]["all_cells"]["baselines"]) == {"equal",
                                                                          "proportional"}
    with pytest.raises(ValueError, match="freshly reset"):
        DemoShadow(sim)  # already stepped: its copies would not replay the cells' traffic


def _loop_serving(policy_of, profile="foreign", windows=140, seed=SEED):
    sim = demo_simulator(DemoConfig(cells=CELLS, seed=seed, profile=profile))
    state = sim.reset()
    shadow = DemoShadow(sim, None, None, None)
    for _ in range(windows):
        state, kpis = sim.step_actions(policy_of(sim, state))
        shadow.record(kpis.utility, np.ones(CELLS, bool))
    return sim, shadow


def test_live_loop_checks_of_a_loop_serving_the_heuristic_and_the_best_fixed_split():
    """Serving the heuristic itself: its worst block margin over the heuristic is 0. Serving
    the run's best fixed split: it reaches the best fixed split in the very first block."""
    sim, shadow = _loop_serving(lambda s, x: DemandProportionalPolicy(s.config).act(s, x))
    live = shadow.live_loop()
    assert live["worst_margin_vs_proportional"] == pytest.approx(0.0, abs=1e-12)
    units = live["best_fixed_units"]
    fixed = FixedPolicy(units, sim.codec)
    _, shadow2 = _loop_serving(fixed.act)
    live2 = shadow2.live_loop()
    assert live2["best_fixed_units"] == units
    assert live2["windows_to_best_fixed"] == 99 and live2["windows_to_99pct_best_fixed"] == 99
    assert live2["last_block_ratio_to_best_fixed"] == pytest.approx(1.0, abs=1e-12)
    # a loop shorter than one block reports no figures
    _, short = _loop_serving(fixed.act, windows=99)
    assert set(short.live_loop()) == {"block_windows", "windows"}


def test_live_loop_finds_the_worst_block():
    """Equal split serves: worse than the heuristic on foreign in every block, and never at the
    best fixed split."""
    sim, shadow = _loop_serving(lambda s, x: equal_split(s.codec).act(s, x))
    live = shadow.live_loop()
    sums = shadow.sum_all.view()
    j = 1 + shadow.names.index("proportional")
    blocks = [sums[i:i + 100, 0].sum() / sums[i:i + 100, j].sum() - 1 for i in range(41)]
    assert live["worst_margin_vs_proportional"] == pytest.approx(min(blocks), abs=1e-12)
    assert live["worst_block_ends_at_window"] == int(np.argmin(blocks)) + 99
    assert live["worst_margin_vs_proportional"] < -0.02
    assert live["windows_to_best_fixed"] is None


def test_plot_survives_an_interrupt_between_the_shadows_step_and_the_row(tmp_path):
    """Ctrl-C can land after the shadows stepped a window and before the recorder added it:
    the plot then has one best-fixed value more than rows, and must still be drawn."""
    from slicetwin.ops.demo.record import Recorder, WindowRow, plot

    rec = Recorder(cells=2)
    for k in range(5):
        rec.add(WindowRow(k=k, t=0.1 * k, utility=2.0, utility_policy=2.0, ssr=[1.0, 0.5, 0.5],
                          share=[0.2, 0.4, 0.4], version="fallback", baselines={"equal": 1.8}))
    rec.best_fixed = ([1, 49, 50], np.full(6, 1.9), np.full(6, 2.0))
    assert sorted(plot(rec, tmp_path)) == sorted(
        [str(tmp_path / "utility_ssr.png"), str(tmp_path / "allocation.png")])
