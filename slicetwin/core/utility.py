"""Utility and reward shaping (paper eq. 5-6), pure numpy: the one definition.

U = alpha * SE + sum_n beta_n * SSR_n. Reward is 0 below the moving threshold gamma_t, 1 between
gamma_t and gamma_max, and 1 + (U - gamma_max) / 2 above gamma_max, with
gamma_t = min(gamma_min + sigma * t, gamma_max).

Everything that computes a utility or a shaped reward uses these classes and their defaults:
the simulator (``SimConfig.utility``), the twin, the trainer and the controller (whose settings
take their defaults from here). The operator's priorities are the SE weight ``alpha`` and the
per-slice SLA weights ``beta`` (e.g. ``(1, 4, 6)`` to weight URLLC far above VoLTE, as the
GAN-DDQN reference code does).

Two forms of each formula: vectorised numpy (``UtilityConfig.utility``, ``shaped_reward``) and a
pure-Python scalar closure with the constants bound (``UtilityConfig.scalar``,
``RewardShaper.scalar``) for the controller's single-report path, where a numpy call costs more
than the arithmetic. Both evaluate the same operations in the same order, so they agree to the
last bit (``tests/unit/core/test_utility_reward.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from slicetwin.core.slices import N_SLICES

DEFAULT_ALPHA = 0.01
DEFAULT_BETA = (1.0, 1.0, 1.0)


def ssr(sla_met: np.ndarray, arrived: np.ndarray) -> np.ndarray:
    """SLA satisfaction ratio; defined as 1 for a window with no arrivals."""
    a = np.asarray(arrived, dtype=np.float64)
    m = np.asarray(sla_met, dtype=np.float64)
    return np.where(a > 0, np.clip(m / np.where(a > 0, a, 1.0), 0.0, 1.0), 1.0)


def _number(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


def parse_beta(value: object, name: str = "utility_beta") -> tuple[float, ...]:
    """Per-slice SLA weights from a setting: ``"1,4,6"``, ``"[1, 4, 6]"`` (JSON) or a sequence.

    Only the syntax is checked here (numbers); ``UtilityConfig`` checks count and signs."""
    items: Sequence
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{name}: not a JSON list of numbers ({e})") from None
            if not isinstance(items, list):
                raise ValueError(f"{name}: expected a list of numbers, got {text!r}")
        else:
            items = [x.strip() for x in text.split(",")]
    elif isinstance(value, Sequence):
        items = value
    else:
        raise ValueError(f"{name}: expected weights like '1,4,6' or [1, 4, 6], got {value!r}")
    out = []
    for x in items:
        try:
            if isinstance(x, bool) or x == "":
                raise ValueError
            out.append(float(x))
        except (TypeError, ValueError):
            raise ValueError(f"{name}: {x!r} is not a number (expected weights like "
                             f"'1,4,6' or [1, 4, 6])") from None
    return tuple(out)


def check_alpha(value: object) -> float:
    """A settings validator: ``alpha`` as ``UtilityConfig`` accepts it (ValueError otherwise)."""
    return UtilityConfig(alpha=value).alpha  # type: ignore[arg-type]


def check_beta(value: object) -> tuple[float, ...]:
    """A settings validator: ``beta`` from text or a sequence, as ``UtilityConfig`` accepts it."""
    return UtilityConfig(beta=parse_beta(value)).beta


@dataclass(frozen=True)
class UtilityConfig:
    """The operator's priorities: utility = alpha * SE + sum_n beta_n * SSR_n.

    Validated on construction: ``alpha`` finite and >= 0; ``beta`` one finite, non-negative
    weight per slice (VoLTE, video, URLLC) with a positive sum."""

    alpha: float = DEFAULT_ALPHA
    beta: tuple[float, ...] = DEFAULT_BETA

    def __post_init__(self) -> None:
        alpha = _number("alpha", self.alpha)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if isinstance(self.beta, str | bytes) or not isinstance(self.beta, Sequence | np.ndarray):
            raise ValueError(f"beta must be a sequence of {N_SLICES} weights, got {self.beta!r}")
        if len(self.beta) != N_SLICES:
            raise ValueError(f"beta must have {N_SLICES} weights (VoLTE, video, URLLC), got "
                             f"{len(self.beta)}: {list(self.beta)!r}")
        beta = tuple(_number(f"beta[{i}]", b) for i, b in enumerate(self.beta))
        if any(b < 0 for b in beta):
            raise ValueError(f"beta weights must be >= 0, got {list(beta)!r}")
        if sum(beta) <= 0:
            raise ValueError(f"beta weights must have a positive sum, got {list(beta)!r}")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)

    def utility(self, spectral_efficiency: np.ndarray, ssr_: np.ndarray) -> np.ndarray:
        """Vectorised: SE (...,) and SSR (..., 3) -> utility (...,)."""
        se = np.asarray(spectral_efficiency, dtype=np.float64)
        s = np.asarray(ssr_, dtype=np.float64)
        u = self.alpha * se
        for j, b in enumerate(self.beta):  # this order, as in ``scalar``: the same bits
            u = u + b * s[..., j]
        return u

    def scalar(self) -> Callable[[float, Sequence[float]], float]:
        """Pure-Python ``utility(se, ssr)`` for one window, the constants bound."""
        a, (b0, b1, b2) = self.alpha, self.beta

        def utility(se: float, s: Sequence[float]) -> float:
            return a * se + b0 * s[0] + b1 * s[1] + b2 * s[2]

        return utility

    def as_dict(self) -> dict:
        return {"alpha": self.alpha, "beta": list(self.beta)}

    def is_default(self) -> bool:
        return self.matches(UtilityConfig())

    def matches(self, other: UtilityConfig, rel: float = 1e-9) -> bool:
        """Same weights (to ``rel``: a metadata round trip must not count as a difference)."""
        return math.isclose(self.alpha, other.alpha, rel_tol=rel, abs_tol=1e-15) and all(
            math.isclose(x, y, rel_tol=rel, abs_tol=1e-15)
            for x, y in zip(self.beta, other.beta, strict=True))

    def metadata(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` (without the ``slicetwin.`` prefix) that record the
        weights a model was trained for."""
        return {"utility_alpha": repr(self.alpha), "utility_beta": json.dumps(list(self.beta))}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> UtilityConfig:
        """Weights a model was trained for, from its metadata (keys without the prefix).

        A missing key means the default: models exported before the weights were recorded
        were all trained for the defaults (alpha 0.01, beta 1, 1, 1)."""
        alpha, beta = meta.get("utility_alpha"), meta.get("utility_beta")
        try:
            a = DEFAULT_ALPHA if alpha is None else float(alpha)
        except ValueError:
            raise ValueError(f"utility_alpha: {alpha!r} is not a number") from None
        b = DEFAULT_BETA if beta is None else parse_beta(beta, "utility_beta")
        return cls(alpha=a, beta=b)


def shaped_reward(utility: np.ndarray, t: int | np.ndarray, gamma_min: float, gamma_max: float,
                  sigma: float) -> np.ndarray:
    """Paper eq. 6, vectorised over utility and t (``RewardShaper.reward``)."""
    u = np.asarray(utility, dtype=np.float64)
    g = np.minimum(gamma_min + sigma * np.asarray(t, dtype=np.float64), gamma_max)
    return np.where(u < g, 0.0, np.where(u < gamma_max, 1.0, 1.0 + (u - gamma_max) / 2.0))


@dataclass(frozen=True)
class RewardShaper:
    """Paper's shaped reward. Defaults are calibrated on the simulator (docs/simulator.md,
    "Reward calibration"): at the saturated threshold gamma_max = 1.8 the clairvoyant oracle
    earns ~1.2, demand-proportional ~0.8, the best fixed split ~0.7 and random ~0.5. Random
    cannot be pushed lower without the oracle falling below 1: ~40 % of windows have every busy
    slice served (utility >= 1.8) whatever the allocation. sigma lifts gamma_min to gamma_max
    over 2,000 interactions (10 rounds of 200, a third of the online experiment).

    ``t`` is the interaction index: the env's lifetime step counter in the simulator, the
    report's window number in the controller (so a gNB numbering windows from 0 gets the
    simulator's threshold; the fake gNB's wall-clock numbers keep it at gamma_max)."""

    gamma_min: float = 1.75
    gamma_max: float = 1.8
    sigma: float = 2.5e-5  # threshold rise per interaction: gamma_max reached after 2,000

    def __post_init__(self) -> None:
        for name in ("gamma_min", "gamma_max", "sigma"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        if self.gamma_max < self.gamma_min:
            raise ValueError("gamma_max must be >= gamma_min")
        if self.sigma < 0:
            raise ValueError("sigma must be >= 0")

    def threshold(self, t: int | np.ndarray) -> np.ndarray:
        return np.minimum(self.gamma_min + self.sigma * np.asarray(t, dtype=np.float64),
                          self.gamma_max)

    def reward(self, utility: np.ndarray, t: int | np.ndarray) -> np.ndarray:
        return shaped_reward(utility, t, self.gamma_min, self.gamma_max, self.sigma)

    def scalar(self) -> Callable[[float, int], float]:
        """Pure-Python ``reward(utility, t)`` for one window, the constants bound; equal to
        ``reward`` to the last bit."""
        gmin, gmax, sigma = self.gamma_min, self.gamma_max, self.sigma

        def reward(utility: float, t: int) -> float:
            g = gmin + sigma * t
            if g > gmax:
                g = gmax
            if utility < g:
                return 0.0
            if utility < gmax:
                return 1.0
            return 1.0 + (utility - gmax) / 2.0

        return reward

    def as_dict(self) -> dict:
        return {"gamma_min": self.gamma_min, "gamma_max": self.gamma_max, "sigma": self.sigma}
