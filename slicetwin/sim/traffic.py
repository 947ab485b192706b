"""Pluggable random distributions for packet inter-arrival times and sizes.

Each ``Dist`` knows its analytic mean and CDF (used by the conformance tests) and encodes itself
as a float64 row ``[kind, p0, p1, p2, p3, p4]`` that the numba kernel samples from. Times are in
seconds, sizes in bits. "Truncated" means conditioned on ``x <= max`` (density renormalised), the
textbook meaning; ``lomax_capped`` reproduces the reference code's ``min(scale * pareto(a), cap)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("const", "uniform", "exp", "tpareto", "lomax_capped", "tlognormal", "choice")


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class Dist:
    kind: str
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown distribution kind {self.kind!r}; known: {', '.join(KINDS)}")
        p = self.params
        need = {"const": 1, "uniform": 2, "exp": 2, "tpareto": 3, "lomax_capped": 3,
                "tlognormal": 3, "choice": 3}[self.kind]
        if len(p) != need:
            raise ValueError(f"{self.kind} takes {need} parameters, got {len(p)}")
        if any(not math.isfinite(x) for x in p if not (self.kind in ("exp",) and x == math.inf)):
            raise ValueError(f"{self.kind} parameters must be finite: {p}")
        ok = {
            "const": lambda: p[0] >= 0,
            "uniform": lambda: 0 <= p[0] <= p[1],
            "exp": lambda: p[0] > 0 and p[1] > 0,
            "tpareto": lambda: p[0] > 0 and p[0] != 1 and 0 < p[1] < p[2],
            "lomax_capped": lambda: p[0] > 1 and p[1] > 0 and p[2] > 0,
            "tlognormal": lambda: p[1] > 0 and p[2] > 0,
            "choice": lambda: p[0] >= 0 and p[1] >= 0 and p[2] >= 1,
        }[self.kind]()
        if not ok:
            raise ValueError(f"invalid parameters for {self.kind}: {p}")
        if self.mean() <= 0:
            raise ValueError(f"{self.kind}{p} has a non-positive mean")

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def const(cls, value: float) -> Dist:
        return cls("const", (float(value),))

    @classmethod
    def uniform(cls, low: float, high: float) -> Dist:
        return cls("uniform", (float(low), float(high)))

    @classmethod
    def exp(cls, mean: float, max: float = math.inf) -> Dist:  # noqa: A002
        return cls("exp", (float(mean), float(max)))

    @classmethod
    def tpareto(cls, shape: float, xm: float, max: float) -> Dist:  # noqa: A002
        return cls("tpareto", (float(shape), float(xm), float(max)))

    @classmethod
    def tpareto_mean(cls, shape: float, mean: float, max: float) -> Dist:  # noqa: A002
        """Truncated Pareto whose (truncated) mean is ``mean``: solve the scale by bisection."""
        if not 0 < mean < max:
            raise ValueError("need 0 < mean < max")
        lo, hi = mean * 1e-9, mean
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if cls("tpareto", (shape, mid, max)).mean() < mean:
                lo = mid
            else:
                hi = mid
        return cls.tpareto(shape, 0.5 * (lo + hi), max)

    @classmethod
    def lomax_capped(cls, shape: float, scale: float, cap: float) -> Dist:
        return cls("lomax_capped", (float(shape), float(scale), float(cap)))

    @classmethod
    def tlognormal_mean(cls, mean: float, std: float, max: float) -> Dist:  # noqa: A002
        """Log-normal with the given (untruncated) mean and std, conditioned on x <= max."""
        s2 = math.log1p((std / mean) ** 2)
        return cls("tlognormal", (math.log(mean) - s2 / 2, math.sqrt(s2), float(max)))

    @classmethod
    def choice(cls, low: float, step: float, n: int) -> Dist:
        """Uniform over {low, low + step, ..., low + (n-1) step}."""
        return cls("choice", (float(low), float(step), float(n)))

    # -- analytic properties ------------------------------------------------------------------
    def mean(self) -> float:
        p = self.params
        k = self.kind
        if k == "const":
            return p[0]
        if k == "uniform":
            return 0.5 * (p[0] + p[1])
        if k == "exp":
            m, mx = p
            if mx == math.inf:
                return m
            e = math.exp(-mx / m)
            return m - mx * e / (1 - e)
        if k == "tpareto":
            a, xm, mx = p
            c = 1 - (xm / mx) ** a
            return a * xm**a / c * (mx ** (1 - a) - xm ** (1 - a)) / (1 - a)
        if k == "lomax_capped":
            a, s, cap = p
            return s * (1 - (1 + cap / s) ** (1 - a)) / (a - 1)
        if k == "tlognormal":
            mu, sg, mx = p
            lm = math.log(mx)
            return math.exp(mu + sg * sg / 2) * _phi((lm - mu - sg * sg) / sg) / _phi((lm - mu) / sg)
        low, step, n = p
        return low + step * (n - 1) / 2

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Analytic CDF (vectorised), for Kolmogorov-Smirnov conformance tests."""
        x = np.asarray(x, dtype=np.float64)
        p = self.params
        k = self.kind
        if k == "const":
            return (x >= p[0]).astype(float)
        if k == "uniform":
            return np.clip((x - p[0]) / max(p[1] - p[0], 1e-300), 0, 1)
        if k == "exp":
            m, mx = p
            f = 1 - np.exp(-np.clip(x, 0, None) / m)
            return np.where(x >= mx, 1.0, f / (1 - math.exp(-mx / m)))
        if k == "tpareto":
            a, xm, mx = p
            xc = np.clip(x, xm, mx)
            return (1 - (xm / xc) ** a) / (1 - (xm / mx) ** a)
        if k == "lomax_capped":
            a, s, cap = p
            f = 1 - (1 + np.clip(x, 0, None) / s) ** (-a)
            return np.where(x >= cap, 1.0, f)
        if k == "tlognormal":
            from scipy.special import ndtr  # lazy: scipy

            mu, sg, mx = p
            z = (np.log(np.clip(x, 1e-300, mx)) - mu) / sg
            return np.where(x >= mx, 1.0, ndtr(z) / _phi((math.log(mx) - mu) / sg))
        low, step, n = p
        return np.clip(np.floor((x - low) / step + 1e-9) + 1, 0, n) / n

    def encode(self) -> np.ndarray:
        """Row for the kernel: [kind, p0, p1, p2, derived0, derived1]."""
        p = list(self.params) + [0.0] * (3 - len(self.params))
        d0 = d1 = 0.0
        if self.kind == "exp":
            d0 = 1.0 - math.exp(-p[1] / p[0]) if p[1] != math.inf else 1.0
        elif self.kind == "tpareto":
            d0 = 1.0 - (p[1] / p[2]) ** p[0]
            d1 = 1.0 / p[0]
        elif self.kind == "lomax_capped":
            d1 = -1.0 / p[0]
        return np.array([KINDS.index(self.kind), *p, d0, d1], dtype=np.float64)
