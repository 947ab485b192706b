"""Evaluation protocol: disjoint seed ranges and the statistics every reported figure carries.

Three roles, three disjoint ranges of simulator seeds:

- ``train`` 0-999: traffic that learners train on and that causal baselines are fitted on
  (best fixed chosen on training traffic, the tuned heuristic's grid search);
- ``tune`` 1000-1999: probes that pick a setting (hyper-parameters, defaults);
- ``report`` 10000 and up: the traffic every reported figure is measured on; nothing is trained
  or tuned on it.

An experiment asks for its seeds by role (``seeds_for``) and checks seeds it is given
(``check_seeds``); a seed outside its role's range is refused unless the caller says
``allow_any=True`` (a CLI flag, for reproducing old figures), and the result is then marked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

RANGES: dict[str, tuple[int, int | None]] = {
    "train": (0, 1000),
    "tune": (1000, 2000),
    "report": (10_000, None),  # open-ended
}

# two-sided 95 % Student-t quantiles for 1..30 degrees of freedom (normal beyond)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


class SeedRangeError(ValueError):
    """A seed was used outside the range of its role."""


def _role(role: str) -> tuple[int, int | None]:
    if role not in RANGES:
        raise ValueError(f"unknown seed role {role!r}; known: {', '.join(RANGES)}")
    return RANGES[role]


def in_range(role: str, seed: int) -> bool:
    lo, hi = _role(role)
    return seed >= lo and (hi is None or seed < hi)


def seeds_for(role: str, n: int, offset: int = 0) -> list[int]:
    """``n`` consecutive seeds of ``role``'s range, starting ``offset`` seeds into it."""
    lo, hi = _role(role)
    if n < 1 or offset < 0:
        raise ValueError("need n >= 1 and offset >= 0")
    out = list(range(lo + offset, lo + offset + n))
    if hi is not None and out[-1] >= hi:
        raise SeedRangeError(f"{n} {role} seeds from offset {offset} leave the {role} range "
                             f"{lo}-{hi - 1}")
    return out


def check_seeds(role: str, seeds: Iterable[int], allow_any: bool = False) -> list[int]:
    """Return ``seeds`` as ints if all lie in ``role``'s range; else raise SeedRangeError
    naming the offenders (``allow_any``: accept them anyway)."""
    seeds = [int(s) for s in seeds]
    bad = [s for s in seeds if not in_range(role, s)]
    if bad and not allow_any:
        lo, hi = _role(role)
        span = f"{lo}-{hi - 1}" if hi is not None else f"{lo} and up"
        raise SeedRangeError(
            f"{role} seeds must lie in {span}; got {bad[:5]}{' ...' if len(bad) > 5 else ''}. "
            f"Seed ranges: train 0-999, tune 1000-1999, report 10000+ (docs/training.md, "
            f"'Evaluation protocol'); pass --allow-any-seeds to override")
    return seeds


class SeedPairs:
    """Mixin of an experiment's config with ``seeds``, ``first_seed``, ``first_report_seed`` and
    ``allow_any_seeds``: pair i trains on ``first_seed + i`` (the training range, or the tuning
    range for probes) and is measured on report seed ``first_report_seed + i``."""

    seeds: int
    first_seed: int
    first_report_seed: int
    allow_any_seeds: bool

    def check_seed_pairs(self) -> None:
        """Raise ValueError / SeedRangeError unless both seed lists lie in their ranges."""
        if self.seeds < 1:
            raise ValueError("seeds must be >= 1")
        role = "tune" if in_range("tune", self.first_seed) else "train"
        check_seeds(role, self.train_seeds, self.allow_any_seeds)
        check_seeds("report", self.report_seeds, self.allow_any_seeds)

    @property
    def train_seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def report_seeds(self) -> list[int]:
        return list(range(self.first_report_seed, self.first_report_seed + self.seeds))


def t95(n: int) -> float:
    """Two-sided 95 % Student-t quantile for a mean of ``n`` values."""
    if n < 2:
        return math.nan
    return _T95[n - 2] if n - 1 <= len(_T95) else 1.96


def mean_ci(values: Sequence[float]) -> dict:
    """Mean, 95 % CI half-width (Student t over the values, e.g. one per seed) and the values."""
    x = np.asarray(values, np.float64)
    n = len(x)
    half = t95(n) * float(x.std(ddof=1)) / math.sqrt(n) if n >= 2 else math.nan
    return {"mean": round(float(x.mean()), 5), "ci95": round(half, 5) if n >= 2 else None,
            "n": n, "per_seed": [round(float(v), 5) for v in x]}


def paired(values: Sequence[float], reference: Sequence[float]) -> dict:
    """Paired difference ``values - reference`` per seed: mean, CI, wins (seeds with a positive
    difference)."""
    d = np.asarray(values, np.float64) - np.asarray(reference, np.float64)
    out = mean_ci(d)
    out["wins"] = int((d > 0).sum())
    return out


def ratio(value: float, reference: float) -> float | None:
    """value / reference, None when the reference is not positive."""
    return round(value / reference, 4) if reference > 0 else None
