"""The measurements of ``experiment adapt`` on hand-made curves."""

from __future__ import annotations

import numpy as np
import pytest

from slicetwin.experiments import adapt_measures as am


def test_trailing_sums_are_sums_over_the_last_width_windows():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert am.trailing_sums(x, 2).tolist() == [3.0, 5.0, 7.0, 9.0]
    assert am.trailing_sums(x, 5).tolist() == [15.0]
    assert len(am.trailing_sums(x, 6)) == 0


def test_windows_to_target_is_the_first_window_whose_trailing_ratio_reaches_it():
    best = np.full(10, 2.0)
    served = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    # trailing 2-window ratios end at windows 2..10: .5 .5 .75 1 1 ...
    assert am.windows_to_target(served, best, smooth=2, target=0.95) == 5
    assert am.windows_to_target(served, best, smooth=2, target=0.75) == 4
    assert am.windows_to_target(served, best, smooth=1, target=1.0) == 4
    assert am.windows_to_target(served * 0.9, best, smooth=2, target=0.95) is None


def test_the_target_is_judged_against_best_fixed_on_the_same_windows():
    # traffic drops by half from window 5: a policy at 96 % of best fixed throughout reaches the
    # target at once, although its utility is far below best fixed's mean over the run
    best = np.array([4.0] * 4 + [2.0] * 6)
    served = 0.96 * best
    assert am.windows_to_target(served, best, smooth=3) == 3
    assert served[4:].mean() < 0.95 * best.mean()
    with pytest.raises(ValueError, match="positive"):
        am.smoothed_ratio(served, np.zeros(10), 3)


def test_worst_dip_is_the_lowest_width_window_mean_and_its_ratio():
    served = np.array([3.0, 3.0, 1.0, 1.0, 2.0, 3.0, 3.0])
    best = np.array([3.0, 3.0, 2.0, 4.0, 4.0, 3.0, 3.0])
    d = am.worst_dip(served, best, width=2)
    assert d["end_window"] == 4 and d["utility"] == 1.0
    assert d["best_fixed"] == 3.0 and d["ratio"] == pytest.approx(1 / 3)
    means = [served[i - 2:i].mean() for i in range(2, 8)]
    assert d["utility"] == min(means)
    with pytest.raises(ValueError, match="at least 8"):
        am.worst_dip(served, best, width=8)


def test_censored_seeds_count_as_the_horizon():
    assert am.censored([10, None, 30], 100) == ([10, 100, 30], 1)


def test_bootstrap_ratio_is_the_ratio_of_means_with_a_seeded_interval():
    b = am.bootstrap_ratio([10, 20, 30], [40, 40, 40], n_boot=2000, seed=3)
    assert b["ratio"] == 0.5
    assert b["ci95_low"] <= 0.5 <= b["ci95_high"] and b["ci95_low"] >= 0.25
    assert b == am.bootstrap_ratio([10, 20, 30], [40, 40, 40], n_boot=2000, seed=3)
    same = am.bootstrap_ratio([7, 7], [7, 7])
    assert same["ci95_low"] == same["ci95_high"] == 1.0
    with pytest.raises(ValueError):
        am.bootstrap_ratio([1, 2], [1])
