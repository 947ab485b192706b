"""The safe heuristics: what the controller serves before a trained policy has passed the gate
(a cold start), and whenever no model can answer. Demand-proportional by default, or a static
split the operator configures.

Bandwidth is split in proportion to each slice's offered load in the last window, estimated as
arrived packets x mean packet size (bits), with a floor so that a slice with no traffic in one
window is not starved in the next. ``ActionCodec.from_weights`` rounds the weights to a valid
allocation (sums to the total, each slice >= its minimum), so the fallback can never emit an
invalid answer. Pure numpy, vectorised over cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slicetwin.core.actions import ActionCodec


@dataclass(frozen=True)
class FallbackConfig:
    # mean packet size per slice in bits (sim_spec.md traffic table: VoLTE 40 B, video 100 B,
    # URLLC 2 MB); turns packet counts into offered bits so a few large URLLC packets weigh more
    # than many small VoLTE ones.
    bits_per_packet: tuple[float, ...] = (320.0, 800.0, 16e6)
    # every slice keeps at least this share of the weight (before rounding): no slice is
    # starved because it was idle in the last window
    floor_share: float = 0.05


class DemandProportional:
    """Allocation proportional to offered load; ``act`` returns action indices."""

    def __init__(self, codec: ActionCodec, config: FallbackConfig | None = None):
        self.codec = codec
        self.config = config or FallbackConfig()
        self._bits = np.asarray(self.config.bits_per_packet, dtype=np.float64)
        if self._bits.shape != (codec.n_slices,) or (self._bits <= 0).any():
            raise ValueError(f"bits_per_packet needs {codec.n_slices} positive values")
        if not 0 <= self.config.floor_share * codec.n_slices <= 1:
            raise ValueError("floor_share x n_slices must be within [0, 1]")

    def weights(self, arrived: np.ndarray) -> np.ndarray:
        a = np.asarray(arrived, dtype=np.float64)
        a = np.where(np.isfinite(a) & (a > 0), a, 0.0)
        load = a * self._bits
        total = load.sum(-1, keepdims=True)
        share = np.where(total > 0, load / np.where(total > 0, total, 1.0),
                         1.0 / self.codec.n_slices)
        f = self.config.floor_share
        return f + (1.0 - f * self.codec.n_slices) * share

    def units(self, arrived: np.ndarray) -> np.ndarray:
        """(..., n_slices) arrived packets -> (..., n_slices) units per slice."""
        return self.codec.from_weights(self.weights(arrived))

    def act(self, arrived: np.ndarray) -> int | np.ndarray:
        """Action index (scalar for one cell, array for (n, n_slices))."""
        return self.codec.encode(self.units(arrived))


class StaticSplit:
    """One fixed split for every cell (an operator's static configuration); ``act`` returns
    action indices like :class:`DemandProportional`'s."""

    def __init__(self, codec: ActionCodec, weights):
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (codec.n_slices,) or not np.isfinite(w).all() or (w < 0).any() \
                or w.sum() <= 0:
            raise ValueError(f"a static split needs {codec.n_slices} non-negative weights with a "
                             f"positive sum (slice order volte, video, urllc), got {weights!r}")
        self.codec = codec
        self.action = int(codec.encode(codec.from_weights(w / w.sum())))

    def act(self, arrived: np.ndarray) -> int | np.ndarray:
        a = np.asarray(arrived)
        return self.action if a.ndim == 1 else np.full(a.shape[0], self.action, np.int64)


COLD_START = ("proportional", "static", "init")


def parse_split(text: str) -> list[float]:
    """``"0.3,0.6,0.1"`` (or ``"[0.3, 0.6, 0.1]"``) -> weights per slice."""
    try:
        return [float(x) for x in text.strip().strip("[]").split(",")]
    except ValueError:
        raise ValueError(f"static split {text!r}: comma-separated numbers per slice (volte, "
                         "video, urllc), e.g. 0.3,0.6,0.1") from None


def cold_start_policy(codec: ActionCodec, kind: str, split: str | None = None):
    """The safe heuristic served until a trained policy has passed the gate: demand-proportional
    (the default) or the operator's static split."""
    if kind == "static":
        if not split:
            raise ValueError("cold_start=static needs static_split (e.g. 0.3,0.6,0.1)")
        return StaticSplit(codec, parse_split(split))
    return DemandProportional(codec)
