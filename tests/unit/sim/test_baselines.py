"""Baselines a sceptic would use: exact oracle and best fixed, the model-known planner, the tuned
heuristic, and the seed protocol they are reported under."""

from __future__ import annotations

import numpy as np
import pytest

from slicetwin.core import protocol
from slicetwin.sim import RanSimulator, SimConfig
from slicetwin.sim.baselines import (
    DemandProportionalPolicy,
    FixedPolicy,
    OraclePolicy,
    PlannerPolicy,
    TunedProportionalPolicy,
    best_fixed,
    run_policy,
    tune_proportional,
)
from slicetwin.sim.config import DiurnalLoad, paper_traffic
from slicetwin.sim.search import best_split, unit_values


@pytest.mark.parametrize("profile", ["paper", "hetero", "flash-crowd"])
def test_full_oracle_equals_brute_force_over_every_action(profile):
    sim = RanSimulator(SimConfig.from_profile(profile), n_cells=2, seed=21)
    sim.reset()
    for _ in range(3):
        sim.step_actions(np.array([100, 3000]))
    full, brute = OraclePolicy("full"), OraclePolicy("brute")
    for c in range(2):
        a, u = full.best(sim, c)
        b, v = brute.best(sim, c)
        assert u == pytest.approx(v, abs=1e-9)
    # coarse is a lower bound, never above the full search
    assert OraclePolicy("coarse").best(sim, 0)[1] <= full.best(sim, 0)[1] + 1e-12


def test_best_split_is_the_argmax_over_the_simplex():
    cfg = SimConfig(n_units=20)
    codec = cfg.codec
    rng = np.random.default_rng(0)
    tables = rng.random((5, len(unit_values(codec)), 3))
    a, best = best_split(tables, codec)
    v0 = unit_values(codec)[0]
    for i in range(5):
        scores = [sum(tables[i, u[n] - v0, n] for n in range(3)) for u in codec.table]
        assert best[i] == pytest.approx(max(scores))
        assert scores[a[i]] == pytest.approx(max(scores))


def test_best_fixed_is_exact_over_all_fixed_actions():
    """The separable search finds the same best fixed allocation as running every one of the
    171 fixed actions (1 MHz units) on the same traffic."""
    cfg = SimConfig(n_units=20)
    codec = cfg.codec
    windows, cells, seed = 8, 2, 4
    a, u = best_fixed(cfg, windows, cells, [seed])
    sim = RanSimulator(cfg, n_cells=cells, seed=seed)
    sim.reset()
    big = sim.replicate_many(np.tile(np.arange(cells), codec.n_actions))
    units = np.repeat(codec.table, cells, axis=0)
    tot = np.zeros(codec.n_actions * cells)
    for _ in range(windows):
        _, k = big.step(units)
        tot += k.utility
    per_action = tot.reshape(codec.n_actions, cells).mean(1) / windows
    assert u == pytest.approx(per_action.max(), abs=1e-9)
    assert per_action[a] == pytest.approx(per_action.max(), abs=1e-9)
    assert run_policy(FixedPolicy(codec.decode(a), codec), cfg, windows, cells,
                      seed).mean_utility == pytest.approx(u, abs=1e-9)


def _alternating() -> SimConfig:
    """Deterministic alternating load: a 'day' of 2 windows, video busy in one and URLLC in the
    other, no noise, no quiet regimes."""
    busy = tuple(t.__class__(t.interarrival, t.size, on_prob=(t.on_prob[1],) * 2,
                             regime_leave=t.regime_leave, on_persist=0.0) for t in paper_traffic())
    hi_lo = tuple(0.6 if h < 12 else 0.001 for h in range(24))
    lo_hi = tuple(0.001 if h < 12 else 1.2 for h in range(24))
    return SimConfig(traffic=busy, diurnal=DiurnalLoad(
        day_windows=2, curves=((1.0,) * 24, hi_lo, lo_hi), noise_sd=0.0, random_start=False))


def test_planner_beats_best_fixed_where_it_must_and_oracle_beats_all():
    cfg = _alternating()
    windows, cells, seed = 30, 2, 10_001
    _, fixed_u = best_fixed(cfg, windows, cells, [seed])
    planner = run_policy(PlannerPolicy(futures=4, seed=1), cfg, windows, cells, seed)
    oracle = run_policy(OraclePolicy(), cfg, windows, cells, seed)
    prop = run_policy(DemandProportionalPolicy(cfg), cfg, windows, cells, seed)
    assert planner.mean_utility > fixed_u * 1.1
    for other in (planner, prop):
        assert oracle.mean_utility >= other.mean_utility
    assert oracle.mean_utility >= fixed_u
    # per window the oracle is never below the planner's choice (same state at window 0)
    assert np.all(oracle.utilities[0] >= planner.utilities[0] - 1e-12)


def test_tuned_heuristic_is_at_least_the_plain_one_on_its_training_traffic():
    cfg = SimConfig()
    pol, u = tune_proportional(cfg, windows=10, cells=2, seeds=[3])
    plain = run_policy(TunedProportionalPolicy(cfg), cfg, 10, 2, 3).mean_utility
    same = run_policy(DemandProportionalPolicy(cfg), cfg, 10, 2, 3).mean_utility
    assert plain == pytest.approx(same)  # weights 1 and offsets 0 are the plain heuristic
    assert u >= plain - 1e-12
    assert run_policy(pol, cfg, 10, 2, 3).mean_utility == pytest.approx(u)


def test_seed_ranges_are_disjoint_and_enforced():
    assert protocol.seeds_for("report", 3) == [10_000, 10_001, 10_002]
    assert protocol.seeds_for("tune", 2, offset=5) == [1005, 1006]
    with pytest.raises(protocol.SeedRangeError):
        protocol.seeds_for("train", 5, offset=998)
    with pytest.raises(protocol.SeedRangeError, match="report seeds must lie"):
        protocol.check_seeds("report", [10_000, 3])
    with pytest.raises(protocol.SeedRangeError, match="train seeds"):
        protocol.check_seeds("train", [1500])
    assert protocol.check_seeds("report", [3], allow_any=True) == [3]
    roles = ["train", "tune", "report"]
    for s in (0, 999, 1000, 1999, 10_000, 123_456):
        assert sum(protocol.in_range(r, s) for r in roles) == 1
    assert not any(protocol.in_range(r, 5000) for r in roles)


def test_mean_ci_and_paired_differences():
    ci = protocol.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert ci["mean"] == 3.0 and ci["ci95"] == pytest.approx(2.776 * np.std([1, 2, 3, 4, 5],
                                                                            ddof=1) / 5**0.5,
                                                            abs=1e-4)
    d = protocol.paired([2.0, 3.0, 1.0], [1.0, 1.0, 2.0])
    assert d["mean"] == pytest.approx(2 / 3, abs=1e-4) and d["wins"] == 2
    assert protocol.ratio(2.0, 4.0) == 0.5 and protocol.ratio(1.0, 0.0) is None


def test_window_tables_over_a_horizon_hold_the_split_and_discount_later_windows():
    from slicetwin.sim.search import fixed_tables, window_tables

    sim = RanSimulator(SimConfig.from_profile("diurnal"), n_cells=2, seed=5)
    sim.reset()
    for _ in range(3):
        sim.step_actions(np.zeros(2, np.int64))
    # the true future, undiscounted: H windows of the held split = H x the fixed-split mean
    np.testing.assert_allclose(window_tables(sim, horizon=3), 3 * fixed_tables(sim, 3),
                               rtol=1e-9, atol=1e-9)
    one = window_tables(sim, np.random.default_rng(1), futures=2)
    assert np.array_equal(one, window_tables(sim, np.random.default_rng(1), futures=2,
                                             horizon=4, discount=0.0))
    two = window_tables(sim, np.random.default_rng(1), futures=2, horizon=2, discount=0.5)
    assert np.all(two >= one - 1e-12) and not np.allclose(two, one)
