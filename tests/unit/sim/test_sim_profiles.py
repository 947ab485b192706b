"""Profiles where adapting pays (diurnal, flash-crowd, hetero, schedules): their load statistics
against the documented formulas, and the invariants the baselines rely on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from slicetwin.sim import RanSimulator, SimConfig
from slicetwin.sim.config import DiurnalLoad, FlashCrowds, paper_traffic


def _run(cfg: SimConfig, cells: int, windows: int, seed: int = 0, record=()):
    sim = RanSimulator(cfg, n_cells=cells, seed=seed)
    sim.reset()
    eq = np.tile(sim.codec.from_weights(np.ones(3)), (cells, 1))
    arrived, rec = [], {k: [] for k in record}
    for _ in range(windows):
        win = sim.state.win.copy()  # the window about to run
        _, k = sim.step(eq)
        arrived.append(k.arrived.copy())
        for key in record:
            rec[key].append(win if key == "win" else getattr(sim.state, key).copy())
    return sim, np.stack(arrived), {k: np.stack(v) for k, v in rec.items()}


def test_paper_profile_has_no_load_model():
    sim, _, rec = _run(SimConfig(), 4, 5, record=("load", "crowd"))
    assert (rec["load"] == 1.0).all() and (rec["crowd"] == -1).all()


def test_unknown_profile_and_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="unknown profile"):
        SimConfig.from_profile("rush-hour")
    with pytest.raises(ValueError, match="only the last phase"):
        SimConfig.from_profile("paper,flash-crowd:100")
    with pytest.raises(ValueError, match="WINDOWS"):
        SimConfig.from_profile("paper:x,flash-crowd")
    with pytest.raises(ValueError, match="mix"):
        SimConfig.from_profile("paper:10,mix=1/2:10")
    with pytest.raises(ValueError, match="changes n_units"):
        SimConfig(profile="schedule", schedule=((SimConfig(), 5), (SimConfig(n_units=20), 5)))
    with pytest.raises(ValueError, match="base_load"):
        SimConfig(base_load=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="curves"):
        DiurnalLoad(curves=((1.0,) * 24,) * 2)


def test_diurnal_arrivals_follow_the_daily_curves_per_phase():
    """Mean arrivals per slice in each 4-hour phase of the day match expected_arrivals(hour)
    averaged over the same windows (the documented curve x the paper's analytic mean)."""
    day = 480  # 20 windows per hour
    cfg = SimConfig.from_profile("diurnal", diurnal=DiurnalLoad(day_windows=day))
    sim, arrived, rec = _run(cfg, 48, day, seed=3, record=("win",))
    hour = 24.0 * ((sim.state.day0[None, :] + rec["win"]) % day) / day  # (windows, cells)
    expected = cfg.expected_arrivals(hour)  # (windows, cells, 3)
    phase = (hour // 4).astype(int)
    for p in range(6):
        m = phase == p
        got, want = arrived[m].mean(0), expected[m].mean(0)
        np.testing.assert_allclose(got, want, rtol=0.12, atol=1.0, err_msg=f"phase {p}")
    # the curves really differ by phase: video's evening mean is several times its daytime mean
    v = [arrived[phase == p][:, 1].mean() for p in range(6)]
    assert max(v) > 4 * min(v)


def test_diurnal_clock_shared_or_per_cell():
    per_cell = RanSimulator(SimConfig.from_profile("diurnal"), n_cells=16, seed=1)
    per_cell.reset()
    assert len(set(per_cell.state.day0.tolist())) > 8
    shared = SimConfig.from_profile("diurnal", diurnal=DiurnalLoad(shared_clock=True))
    sim = RanSimulator(shared, n_cells=16, seed=1)
    sim.reset()
    assert len(set(sim.state.day0.tolist())) == 1


def test_flash_crowds_match_their_documented_law():
    f = FlashCrowds()
    cfg = SimConfig.from_profile("flash-crowd")
    sim, arrived, rec = _run(cfg, 32, 1500, seed=5,
                             record=("crowd", "surge_mult", "surge_left"))
    crowd = rec["crowd"]  # (windows, cells)
    share = (crowd >= 0).mean()
    assert share == pytest.approx(f.surge_fraction(), abs=0.08)
    # surges: durations within bounds, multipliers within bounds, all slices drawn
    left = rec["surge_left"]  # windows left after this one (counts down by 1 within a surge)
    prev_crowd = np.vstack([np.full((1, crowd.shape[1]), -1), crowd[:-1]])
    prev_left = np.vstack([np.zeros((1, crowd.shape[1]), np.int64), left[:-1]])
    starts = (crowd >= 0) & ((prev_crowd < 0) | (left >= prev_left))
    lengths = left[starts] + 1
    assert len(lengths) > 50
    assert lengths.min() >= f.dur_min and lengths.max() <= f.dur_max
    assert lengths.mean() == pytest.approx(f.mean_duration, rel=0.15)
    slices = crowd[starts]
    assert set(slices.tolist()) == {0, 1, 2}
    w = np.asarray(f.slice_weights) / sum(f.slice_weights)
    np.testing.assert_allclose(np.bincount(slices, minlength=3) / len(slices), w, atol=0.1)
    mult = rec["surge_mult"][crowd >= 0]
    assert mult.min() >= f.mult_min and mult.max() <= f.mult_max
    # arrivals of the surging slice (after 5 windows of catch-up) match surge_arrivals(m)
    ratios = {n: [] for n in range(3)}
    for c in range(crowd.shape[1]):
        for t in range(5, crowd.shape[0]):
            n = crowd[t, c]
            if n >= 0 and (crowd[t - 5:t, c] == n).all():
                ratios[n].append((arrived[t, c, n], cfg.surge_arrivals(rec["surge_mult"][t, c])[n]))
    for n in (0, 1):  # URLLC's few packets per window make its per-window ratio too noisy
        got, want = np.array(ratios[n]).T
        assert got.mean() == pytest.approx(want.mean(), rel=0.1), n
    # long-run mean arrivals include the surges
    np.testing.assert_allclose(arrived.mean((0, 1))[:2], cfg.expected_arrivals()[:2], rtol=0.15)


def test_hetero_cells_draw_their_own_mix_and_radius():
    cfg = SimConfig.from_profile("hetero")
    sim = RanSimulator(cfg, n_cells=400, seed=2)
    sim.reset()
    counts = sim.state.hi - sim.state.lo
    shares = counts / cfg.n_users
    np.testing.assert_allclose(shares.mean(0), cfg.mean_shares(), atol=0.03)
    # Dirichlet(k * p) share sd = sqrt(p (1 - p) / (k + 1)), plus multinomial noise
    k, p = cfg.mix_concentration, cfg.mean_shares()
    sd = np.sqrt(p * (1 - p) / (k + 1) + p * (1 - p) / cfg.n_users)
    np.testing.assert_allclose(shares.std(0), sd, rtol=0.2)
    lo, hi = cfg.radius_range_m
    snr_min = sim.state.snr.min(1)  # the farthest user of each cell sets the cell's edge
    assert snr_min.max() / snr_min.min() > 100  # cells of very different sizes
    paper = RanSimulator(SimConfig(), n_cells=8, seed=2)
    paper.reset()
    assert (paper.state.hi - paper.state.lo == np.array([46, 46, 8])).all()


def test_schedule_switches_phase_and_redraws_users_for_a_new_mix():
    cfg = SimConfig.from_profile("paper:30,mix=10/80/10:30")
    sim, arrived, _ = _run(cfg, 16, 60, seed=4)
    assert sim.phase_index() == 1
    assert (sim.state.hi - sim.state.lo == np.array([10, 80, 10])).all()
    before = arrived[5:30].mean((0, 1))
    after = arrived[35:].mean((0, 1))
    np.testing.assert_allclose(before[:2], SimConfig().expected_arrivals()[:2], rtol=0.15)
    np.testing.assert_allclose(after[:2], cfg.schedule[1][0].expected_arrivals()[:2], rtol=0.15)
    # paper -> flash-crowd keeps the users and starts surges only after the switch
    sched = SimConfig.from_profile("paper:40,flash-crowd")
    sim2, _, rec = _run(sched, 32, 300, seed=6, record=("crowd",))
    assert (rec["crowd"][:40] == -1).all() and (rec["crowd"][40:] >= 0).any()


def test_copies_share_the_load_whatever_their_allocation():
    """Common random numbers: the load model never depends on the allocation, so the oracle's
    copies of a cell see the real cell's surges and daily noise."""
    for profile in ("diurnal", "flash-crowd"):
        sim = RanSimulator(SimConfig.from_profile(profile), n_cells=2, seed=9)
        sim.reset()
        clone = sim.replicate(0, 3)
        units = np.array([[1, 1, 98], [1, 98, 1], [98, 1, 1]])
        for _ in range(40):
            sim.step(np.tile(units[0], (2, 1)))
            clone.step(units)
            assert (clone.state.load == sim.state.load[0]).all()
            np.testing.assert_array_equal(clone.state.last_arrived, np.tile(
                sim.state.last_arrived[0], (3, 1)))


def test_always_busy_traffic_without_regimes_still_validates():
    busy = tuple(replace(t, on_prob=(t.on_prob[1], t.on_prob[1])) for t in paper_traffic())
    cfg = SimConfig(traffic=busy, base_load=(1.0, 0.5, 2.0))
    np.testing.assert_allclose(cfg.expected_arrivals(),
                               SimConfig(traffic=busy).expected_arrivals() * [1, 0.5, 2])


def test_foreign_profile_is_another_gnb():
    """10 MHz in 1 MHz units on 180 kHz blocks, 50 users 20/24/6, diurnal, 2 layers."""
    cfg = SimConfig.from_profile("foreign")
    assert (cfg.codec.n_actions, cfg.unit_hz, cfg.rb_hz) == (36, 1e6, 180e3)
    assert cfg.diurnal is not None and cfg.se_multiplier == 2.0
    sim, arrived, _ = _run(cfg, 4, 30)
    assert sim.codec.total_bandwidth_hz == 10e6
    # another traffic scale than the one the fixed state scales were set for
    paper = _run(SimConfig(), 4, 30)[1]
    assert not np.allclose(arrived.mean((0, 1)), paper.mean((0, 1)), rtol=0.3)
