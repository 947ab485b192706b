"""What ``experiment adapt`` measures on a post-change utility curve (pure numpy, unit-tested).

Every curve is per real window after the regime change (window 1 is the first window of the new
regime), each value the mean utility over the run's cells in that window:

- ``served``: the served ONNX student's utility on the post-change traffic;
- ``best``: the new regime's best fixed split (in hindsight, one split for all cells) on the
  same traffic and windows.

Smoothing is a trailing mean over ``smooth`` windows. The served policy has *reached* a share
``target`` of best fixed at window n when its utility over windows (n - smooth, n] is at least
``target`` times best fixed's utility over the same windows: comparing like with like removes the
traffic's own swings (a flash crowd lowers both), so the crossing is about the policy.
"""

from __future__ import annotations

import math

import numpy as np


def trailing_sums(x: np.ndarray, width: int) -> np.ndarray:
    """Sums over windows (n - width, n] for n = width .. len(x) (index 0 is n = width)."""
    x = np.asarray(x, np.float64)
    if width < 1 or len(x) < width:
        return np.zeros(0)
    c = np.concatenate([[0.0], np.cumsum(x)])
    return c[width:] - c[:-width]


def smoothed_ratio(served: np.ndarray, best: np.ndarray, smooth: int) -> np.ndarray:
    """Served over best fixed on trailing ``smooth``-window sums; entry i is window smooth + i."""
    s, b = trailing_sums(served, smooth), trailing_sums(best, smooth)
    if np.any(b <= 0):
        raise ValueError("best fixed utility must be positive over every smoothing window")
    return s / b


def windows_to_target(served: np.ndarray, best: np.ndarray, smooth: int,
                      target: float = 0.95) -> int | None:
    """First window count n >= ``smooth`` at which the trailing ``smooth``-window utility of the
    served policy is >= ``target`` x best fixed's over the same windows (None: never)."""
    r = smoothed_ratio(served, best, smooth)
    hit = np.flatnonzero(r >= target - 1e-12)
    return int(hit[0]) + smooth if len(hit) else None


def worst_dip(served: np.ndarray, best: np.ndarray, width: int = 50) -> dict:
    """The lowest ``width``-window mean utility of the served policy after the change: where it
    ends (window n), its value, best fixed's mean over the same windows and their ratio."""
    s = trailing_sums(served, width)
    if len(s) == 0:
        raise ValueError(f"need at least {width} windows for a {width}-window dip")
    i = int(np.argmin(s))
    b = trailing_sums(best, width)[i] / width
    return {"end_window": i + width, "utility": float(s[i] / width), "best_fixed": float(b),
            "ratio": float(s[i] / width / b) if b > 0 else None}


def censored(values: list[int | None], horizon: int) -> tuple[list[int], int]:
    """Windows per seed with a censored seed (None: never reached) counted as the horizon, and
    how many were censored; a mean over these is a lower bound when any were."""
    out = [horizon if v is None else int(v) for v in values]
    return out, sum(v is None for v in values)


def bootstrap_ratio(num: list[float], den: list[float], n_boot: int = 10_000,
                    seed: int = 0) -> dict:
    """mean(num) / mean(den) over seeds, with a 95 % percentile bootstrap over seeds (the same
    seeds resampled for both, as they are paired)."""
    a, b = np.asarray(num, np.float64), np.asarray(den, np.float64)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError("num and den must be paired and non-empty")
    point = float(a.mean() / b.mean()) if b.mean() > 0 else math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    db = b[idx].mean(1)
    ok = db > 0
    boots = a[idx].mean(1)[ok] / db[ok]
    lo, hi = (np.percentile(boots, [2.5, 97.5]) if len(boots) else (math.nan, math.nan))
    return {"ratio": round(point, 4), "ci95_low": round(float(lo), 4),
            "ci95_high": round(float(hi), 4), "n_boot": n_boot, "seed": seed}
