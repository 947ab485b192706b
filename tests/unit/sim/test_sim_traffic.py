"""Statistical conformance of the traffic models (fixed seeds, analytic means and CDFs)."""

import math

import numpy as np
import pytest
from scipy import stats

from slicetwin.sim import _kernel as K
from slicetwin.sim.config import SimConfig, reference_traffic
from slicetwin.sim.traffic import Dist

PAPER = SimConfig().traffic
REF = reference_traffic()
CASES = {
    "volte_interarrival": PAPER[0].interarrival,
    "video_interarrival": PAPER[1].interarrival,
    "video_size": PAPER[1].size,
    "urllc_interarrival": PAPER[2].interarrival,
    "urllc_size": PAPER[2].size,
    "ref_video_interarrival": REF[1].interarrival,
    "ref_video_size": REF[1].size,
    "exp_truncated": Dist.exp(1.0, 2.0),
}
N = 200_000


@pytest.mark.parametrize("name", list(CASES))
def test_mean_and_shape_match_analytic(name):
    d = CASES[name]
    x = K.sample_many(12345, d.encode(), N)
    sd = x.std()
    assert abs(x.mean() - d.mean()) < 5 * sd / math.sqrt(N), (x.mean(), d.mean())
    if d.kind == "lomax_capped":  # atom at the cap: check its mass, then KS below the cap
        a, sc, cap = d.params
        p_cap = (1 + cap / sc) ** (-a)
        assert abs((x >= cap).mean() - p_cap) < 5 * math.sqrt(p_cap * (1 - p_cap) / N)
        below = x[x < cap]
        ks = stats.kstest(below, lambda v: d.cdf(v) / (1 - p_cap))
    else:
        ks = stats.kstest(x, d.cdf)
    assert ks.pvalue > 1e-3, ks


def test_spec_means_are_the_tables():
    # sim_spec.md: VoLTE U[0,160] ms (mean 80), video mean 6 ms / 100 B, URLLC exp mean 180 ms
    assert PAPER[0].interarrival.mean() == pytest.approx(0.080)
    assert PAPER[1].interarrival.mean() == pytest.approx(6e-3, rel=1e-6)
    assert PAPER[1].size.mean() == pytest.approx(800.0, rel=1e-6)
    assert PAPER[1].interarrival.params[2] == 12.5e-3 and PAPER[1].size.params[2] == 2000.0
    assert PAPER[2].interarrival.mean() == pytest.approx(0.180)
    assert PAPER[0].size.mean() == 320.0


def test_wrong_sampler_would_fail_ks():
    """The KS check has power: the untruncated Pareto with the same scale is rejected."""
    d = PAPER[1].interarrival
    a, xm, _ = d.params
    x = xm / (1 - np.random.default_rng(0).random(N)) ** (1 / a)
    assert stats.kstest(x, d.cdf).pvalue < 1e-6


def test_choice_frequencies():
    d = REF[2].size  # URLLC reference: {0.3..0.7} MB uniformly
    x = K.sample_many(7, d.encode(), 50_000)
    vals, counts = np.unique(np.round(x / 8e6, 3), return_counts=True)
    assert vals.tolist() == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert stats.chisquare(counts).pvalue > 1e-3


def test_lognormal_truncation_and_moments():
    d = PAPER[2].size
    x = K.sample_many(3, d.encode(), N)
    assert x.max() <= d.params[2] + 1e-6
    # log of the samples is ~ normal(mu, sigma) away from the (tiny) truncated tail
    mu, sg, _ = d.params
    assert abs(np.log(x).mean() - mu) < 0.01 and abs(np.log(x).std() - sg) < 0.01


@pytest.mark.parametrize("d", [PAPER[0].interarrival, PAPER[1].interarrival,
                               REF[1].interarrival])
def test_forward_recurrence_is_stationary(d):
    """Users turning ON start at a forward-recurrence time: mean E[X^2] / (2 E[X])."""
    x = K.sample_many(11, d.encode(), N)
    expect = (x**2).mean() / (2 * x.mean())
    f = K.sample_fwd_many(13, d.encode(), N)
    assert abs(f.mean() - expect) < 5 * f.std() / math.sqrt(N)


@pytest.mark.parametrize("bad", [lambda: Dist("gamma", (1.0,)), lambda: Dist.uniform(2, 1),
                                 lambda: Dist.tpareto(1.2, 5.0, 1.0), lambda: Dist.const(-1),
                                 lambda: Dist.exp(0.0)])
def test_bad_distribution_raises(bad):
    with pytest.raises(ValueError):
        bad()
