import numpy as np
import pytest

from slicetwin.core.actions import ActionCodec
from slicetwin.core.slices import UnknownSliceError, slice_index
from slicetwin.core.utility import RewardShaper, UtilityConfig, ssr


def test_codec_round_trip_all_4851_actions():
    c = ActionCodec()
    assert c.n_actions == 4851
    idx = np.arange(c.n_actions)
    units = c.decode(idx)
    assert (units.sum(1) == 100).all() and (units >= 1).all()
    assert (c.encode(units) == idx).all()
    assert len({tuple(r) for r in units}) == 4851
    bw = c.bandwidth_hz(idx)
    assert np.allclose(bw.sum(1), 20e6)


def test_codec_1mhz_has_171_actions():
    c = ActionCodec.at_resolution(1e6)
    assert c.n_actions == 171 and c.n_units == 20


@pytest.mark.parametrize("kw", [dict(total_bandwidth_hz=-1), dict(n_units=0),
                                dict(n_units=2), dict(min_units=-1)])
def test_codec_bad_config(kw):
    with pytest.raises(ValueError):
        ActionCodec(**kw)


def test_codec_rejects_invalid_allocations():
    c = ActionCodec()
    with pytest.raises(ValueError):
        c.encode([0, 50, 50])
    with pytest.raises(ValueError):
        c.encode([30, 30, 30])
    with pytest.raises(ValueError):
        c.decode(4851)


def test_from_weights_always_valid():
    c = ActionCodec()
    rng = np.random.default_rng(0)
    w = rng.exponential(size=(1000, 3)) * (rng.random((1000, 3)) > 0.3)
    w[0] = [np.nan, np.inf, -1]
    u = c.from_weights(w)
    assert (u.sum(1) == 100).all() and (u >= 1).all()
    assert np.abs(c.from_weights(np.array([1.0, 2.0, 1.0])) - [25, 50, 25]).max() <= 1


def test_nearest_is_exact_on_our_grid():
    c = ActionCodec()
    for a in np.random.default_rng(0).integers(0, c.n_actions, 200):
        assert c.nearest(c.bandwidth_hz(a)) == (a, 0.0)


@pytest.mark.parametrize("codec", [ActionCodec(n_units=20), ActionCodec(n_units=20, min_units=3),
                                   ActionCodec.at_resolution(1e6, total_bandwidth_hz=10e6)])
def test_nearest_matches_brute_force_l1_on_any_grid(codec):
    """Any grid that fits the carrier: the chosen split is an L1-closest action to the shares."""
    rng = np.random.default_rng(1)
    table = codec.table
    for _ in range(300):
        rb_hz = rng.choice([180e3, 360e3, 30e3, 1e6 / 7])
        n_rb = int(codec.total_bandwidth_hz // rb_hz) - int(rng.integers(0, 5))
        rbs = rng.multinomial(n_rb, rng.dirichlet(np.full(3, 0.7)))
        bw = rbs * rb_hz
        a, off = codec.nearest(bw)
        target = bw / bw.sum() * codec.n_units
        best = np.abs(table - target).sum(1).min()
        assert np.abs(table[a] - target).sum() <= best + 1e-9
        assert off == pytest.approx(np.abs(bw - table[a] * bw.sum() / codec.n_units).sum())


@pytest.mark.parametrize("bw, msg", [([1e6, 1e6], "expected 3"), ([-1.0, 1e6, 1e6], ">= 0"),
                                     ([np.nan, 1e6, 1e6], "finite"), ([0, 0, 0], "empty"),
                                     ([10e6, 10e6, 1e6], "more than")])
def test_nearest_refuses_what_does_not_fit(bw, msg):
    with pytest.raises(ValueError, match=msg):
        ActionCodec().nearest(bw)


@pytest.mark.parametrize("radius", [1, 4, 10])
def test_shift_moves_between_two_slices_within_the_radius(radius):
    c, rng = ActionCodec(), np.random.default_rng(2)
    moves = set()
    for a in rng.integers(0, c.n_actions, 500):
        d = c.decode(c.shift(int(a), rng, radius)) - c.decode(int(a))
        assert d.sum() == 0 and (d != 0).sum() == 2 and 1 <= d.max() <= radius
        moves.add(int(d.max()))
    assert moves == set(range(1, radius + 1))  # every size up to the radius is drawn


def test_shift_with_no_slack_or_no_radius_serves_the_action():
    c, rng = ActionCodec(n_units=3), np.random.default_rng(0)
    assert c.shift(0, rng, 5) == 0  # every slice at its minimum: nothing can move
    assert ActionCodec().shift(7, rng, 0) == 7


def test_ssr_and_utility():
    s = ssr(np.array([5, 0, 3]), np.array([10, 0, 3]))
    assert np.allclose(s, [0.5, 1.0, 1.0])
    u = UtilityConfig().utility(np.array(20.0), s)
    assert np.isclose(u, 0.2 + 2.5)


def test_reward_shaping():
    r = RewardShaper(gamma_min=1.0, gamma_max=2.0, sigma=0.1)
    assert np.isclose(r.threshold(5), 1.5) and np.isclose(r.threshold(100), 2.0)
    assert r.reward(1.4, 5) == 0.0 and r.reward(1.6, 5) == 1.0
    assert np.isclose(r.reward(2.6, 5), 1.3)


def test_slice_lookup_by_name_or_snssai():
    assert slice_index("VIDEO") == 1 and slice_index("2-000003") == 2
    with pytest.raises(UnknownSliceError, match="known slices"):
        slice_index("embb")
