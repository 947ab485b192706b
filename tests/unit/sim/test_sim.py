"""Simulator core: arrivals vs analytic expectation, allocation, SSR bounds, monotonicity,
determinism, snapshot/replicate (common random numbers), KPI reports, bad configuration."""

import dataclasses

import numpy as np
import pytest

from slicetwin.core.schemas import KPIReport
from slicetwin.core.slices import UnknownSliceError
from slicetwin.sim import RanSimulator, SimConfig, SliceTraffic


def _run(sim, units, windows):
    out = []
    for _ in range(windows):
        out.append(sim.step(units)[1])
    return out


def _static(cfg: SimConfig) -> SimConfig:
    """All users always ON (no load dynamics)."""
    tr = tuple(dataclasses.replace(t, on_prob=(1.0, 1.0), regime_leave=(0.0, 0.0))
               for t in cfg.traffic)
    return cfg.with_(traffic=tr)


def test_mean_arrivals_within_5pct_of_analytic_with_dynamics():
    cfg = SimConfig()
    sim = RanSimulator(cfg, n_cells=64, seed=101)
    sim.reset()
    u = np.tile([4, 60, 36], (64, 1))
    arr = np.stack([k.arrived for k in _run(sim, u, 200)])  # (W, C, 3)
    mean = arr.reshape(-1, 3).mean(0)
    expect = cfg.expected_arrivals()
    assert np.all(np.abs(mean / expect - 1) < 0.05), (mean, expect)


@pytest.mark.parametrize("profile", ["paper", "reference"])
def test_mean_arrivals_static_load_tight(profile):
    cfg = _static(SimConfig.from_profile(profile, users_per_slice=(46, 46, 8)))
    sim = RanSimulator(cfg, n_cells=32, seed=7)
    sim.reset()
    u = np.tile([4, 60, 36], (32, 1))
    arr = np.stack([k.arrived for k in _run(sim, u, 60)]).reshape(-1, 3).mean(0)
    expect = cfg.expected_arrivals()
    assert np.all(np.abs(arr / expect - 1) < 0.03), (arr, expect)


def test_allocation_units_validated_and_rbs_sum():
    sim = RanSimulator(n_cells=2, seed=0)
    sim.reset()
    idx = np.arange(sim.codec.n_actions)
    rbs = sim.rbs_of(sim.codec.decode(idx))
    assert (rbs.sum(1) == 100).all() and (rbs >= 1).all()
    for bad in ([[50, 50, 1], [34, 33, 33]], [[0, 50, 50], [34, 33, 33]], [[34, 33, 33]]):
        with pytest.raises(ValueError):
            sim.step(np.array(bad))
    with pytest.raises(TypeError):
        sim.step(np.array([[34.0, 33, 33], [34, 33, 33]]))


def test_kpis_bounded_and_consistent():
    sim = RanSimulator(n_cells=8, seed=3)
    sim.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):
        _, k = sim.step_actions(rng.integers(0, sim.codec.n_actions, 8))
        assert np.all((k.ssr >= 0) & (k.ssr <= 1))
        assert np.all(k.sla_met <= k.delivered)
        assert np.all(k.throughput_bps >= 0) and np.all(k.spectral_efficiency >= 0)
        assert np.all(k.spectral_efficiency <= 7.4063 * 4 + 1e-9)
        ok = ~np.isnan(k.latency_p95_s)
        assert np.all(k.latency_p95_s[ok] > 0)
        assert np.array_equal(ok, k.delivered > 0)
        np.testing.assert_allclose(k.utility, 0.01 * k.spectral_efficiency + k.ssr.sum(1))


def test_ssr_never_drops_with_more_bandwidth():
    """Monotonicity in expectation over many seeds, with common random numbers per seed."""
    base = RanSimulator(n_cells=48, seed=2024)
    base.reset()
    grid = [3, 10, 25, 45, 70, 90]
    for s in range(3):
        means = []
        for g in grid:
            units = np.zeros((48, 3), np.int64)
            others = [j for j in range(3) if j != s]
            units[:, s] = g
            units[:, others[0]] = (100 - g) // 2
            units[:, others[1]] = 100 - g - (100 - g) // 2
            sim = base.replicate_many(np.arange(48))
            ssr = np.mean([k.ssr[:, s] for k in _run(sim, units, 6)])
            means.append(ssr)
        assert all(b >= a - 0.005 for a, b in zip(means, means[1:], strict=False)), (s, means)
        if s > 0:  # video and URLLC respond strongly to their bandwidth
            assert means[-1] - means[0] > 0.2, (s, means)


def test_determinism_and_seed_sensitivity():
    u = np.tile([10, 50, 40], (3, 1))
    a = RanSimulator(n_cells=3, seed=42)
    b = RanSimulator(n_cells=3, seed=42)
    c = RanSimulator(n_cells=3, seed=43)
    sa, sb = a.reset(), b.reset()
    c.reset()
    assert np.array_equal(sa, sb)
    for _ in range(5):
        ka, kb, kc = a.step(u)[1], b.step(u)[1], c.step(u)[1]
        for f in ("arrived", "sla_met", "utility", "throughput_bps"):
            assert np.array_equal(getattr(ka, f), getattr(kb, f))
    assert not np.array_equal(ka.arrived, kc.arrived)
    assert a.t == 5


def test_snapshot_restore_and_replicate_common_random_numbers():
    sim = RanSimulator(n_cells=2, seed=5)
    sim.reset()
    u = np.array([[5, 60, 35], [20, 40, 40]])
    sim.step(u)
    snap = sim.snapshot()
    first = [sim.step(u)[1] for _ in range(3)]
    sim.restore(snap)
    again = [sim.step(u)[1] for _ in range(3)]
    for k1, k2 in zip(first, again, strict=True):
        assert np.array_equal(k1.sla_met, k2.sla_met) and np.array_equal(k1.utility, k2.utility)
    # clones of cell 1: same arrivals whatever the allocation; same action -> same outcome
    sim.restore(snap)
    clones = sim.replicate(1, 3)
    _, kc = clones.step(np.array([[20, 40, 40], [1, 1, 98], [98, 1, 1]]))
    _, ks = sim.step(u)
    assert (kc.arrived == ks.arrived[1]).all()
    assert np.array_equal(kc.sla_met[0], ks.sla_met[1]) and kc.utility[0] == ks.utility[1]
    # and the allocation does matter (a busy cell: many seeds, replicate_many of all cells)
    big = RanSimulator(n_cells=16, seed=6)
    big.reset()
    a = big.replicate_many(np.arange(16))
    b = big.replicate_many(np.arange(16))
    ka = a.step(np.tile([1, 98, 1], (16, 1)))[1]
    kb = b.step(np.tile([1, 1, 98], (16, 1)))[1]
    assert np.array_equal(ka.arrived, kb.arrived) and not np.array_equal(ka.sla_met, kb.sla_met)


def test_backlog_carried_or_cleared():
    starve = np.array([[1, 1, 98]])
    carry = RanSimulator(SimConfig(), n_cells=1, seed=9)
    clear = RanSimulator(SimConfig(carry_backlog=False), n_cells=1, seed=9)
    carry.reset(), clear.reset()
    kc = _run(carry, starve, 5)[-1]
    kl = _run(clear, starve, 5)[-1]
    assert kl.backlog.sum() == 0 and kc.backlog[0, 1] > 0


def test_reports_are_valid_kpi_reports():
    sim = RanSimulator(n_cells=2, seed=1)
    sim.reset()
    u = np.array([[5, 60, 35], [34, 33, 33]])
    _, k = sim.step(u)
    reps = k.to_reports(["c0", "c1"], window=sim.t, units=u, config=sim.config)
    assert all(isinstance(r, KPIReport) for r in reps)
    r = KPIReport.model_validate_json(reps[0].model_dump_json())
    assert [s.arrived_packets for s in r.slices] == k.arrived[0].tolist()
    assert sum(a.bandwidth_hz for a in r.allocation) == pytest.approx(20e6)
    assert r.window_ms == pytest.approx(200.0)


@pytest.mark.parametrize("kw", [
    dict(bandwidth_hz=-20e6), dict(n_units=0), dict(n_units=2), dict(slots_per_window=0),
    dict(profile="lte"), dict(geometry="hexagon"), dict(users_per_slice=(50, 50, 50)),
    dict(rb_hz=1e6), dict(latency_check="sometimes"), dict(buffer_packets=0),
])
def test_bad_config_raises_clear_error(kw):
    with pytest.raises(ValueError):
        SimConfig(**kw)


def test_unknown_slice_in_traffic_mapping():
    t = SimConfig().traffic
    with pytest.raises(UnknownSliceError, match="known slices"):
        SimConfig(traffic={"volte": t[0], "video": t[1], "embb": t[2]})
    ok = SimConfig(traffic={"urllc": t[2], "1-000001": t[0], "video": t[1]})
    assert ok.traffic == t
    with pytest.raises(ValueError, match="unknown profile"):
        SimConfig.from_profile("nope")
    with pytest.raises(ValueError):
        SliceTraffic(t[0].interarrival, t[0].size, on_prob=(1.5, 0.2))
    with pytest.raises(ValueError):
        RanSimulator(n_cells=0)


def test_discard_late_drops_hopeless_packets():
    starve = np.array([[49, 50, 1]])  # URLLC with 1 RB cannot meet 1 ms
    keep = RanSimulator(SimConfig(), n_cells=1, seed=12)
    disc = RanSimulator(SimConfig(discard_late=(False, False, True)), n_cells=1, seed=12)
    keep.reset(), disc.reset()
    kk = _run(keep, starve, 15)
    kd = _run(disc, starve, 15)
    assert sum(k.arrived[0, 2] for k in kd) > 0
    assert sum(k.dropped[0, 2] for k in kd) > 0 and sum(k.dropped[0, 2] for k in kk) == 0
    assert kd[-1].backlog[0, 2] <= kk[-1].backlog[0, 2]


def test_kernel_parameter_order_is_checked(monkeypatch):
    """Swapping two fields of a kernel structure (or two kernel parameters) fails at import
    instead of silently feeding one array where the other belongs."""
    from collections import namedtuple

    from slicetwin.sim import _kernel as K

    K._check_kernel_parameters()  # the shipped order holds
    f = list(K.Queues._fields)
    f[0], f[1] = f[1], f[0]
    monkeypatch.setattr(K, "Queues", namedtuple("Queues", f))
    with pytest.raises(TypeError, match="step_cells|_cell_window"):
        K._check_kernel_parameters()
