"""Action space codec: discrete index <-> per-slice bandwidth split.

Total bandwidth is cut into ``n_units`` equal units; every slice gets at least ``min_units``.
With 100 units of 200 kHz and 3 slices that is C(99, 2) = 4851 actions; with 20 units of 1 MHz,
171. Indices enumerate allocations in lexicographic order of (u_0, u_1, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from itertools import combinations

import numpy as np

from slicetwin.core.slices import N_SLICES


@dataclass(frozen=True)
class ActionCodec:
    total_bandwidth_hz: float = 20e6
    n_units: int = 100
    n_slices: int = N_SLICES
    min_units: int = 1
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not np.isfinite(self.total_bandwidth_hz) or self.total_bandwidth_hz <= 0:
            raise ValueError(f"total_bandwidth_hz must be > 0, got {self.total_bandwidth_hz}")
        if self.n_units <= 0:
            raise ValueError(f"n_units must be a positive integer, got {self.n_units}")
        if self.n_slices <= 0:
            raise ValueError(f"n_slices must be positive, got {self.n_slices}")
        if self.min_units < 0:
            raise ValueError(f"min_units must be >= 0, got {self.min_units}")
        if self.min_units * self.n_slices > self.n_units:
            raise ValueError(
                f"{self.n_slices} slices x {self.min_units} minimum units exceed {self.n_units} units"
            )

    @classmethod
    def at_resolution(cls, unit_hz: float, total_bandwidth_hz: float = 20e6, **kw) -> ActionCodec:
        n = total_bandwidth_hz / unit_hz
        if unit_hz <= 0 or abs(n - round(n)) > 1e-9:
            raise ValueError(f"unit {unit_hz} Hz does not divide {total_bandwidth_hz} Hz")
        return cls(total_bandwidth_hz=total_bandwidth_hz, n_units=int(round(n)), **kw)

    @property
    def unit_hz(self) -> float:
        return self.total_bandwidth_hz / self.n_units

    @cached_property
    def table(self) -> np.ndarray:
        """(n_actions, n_slices) int64 units per slice, lexicographic order."""
        free = self.n_units - self.min_units * self.n_slices
        # stars and bars: choose n_slices-1 bar positions among free + n_slices - 1 slots
        rows = []
        for bars in combinations(range(free + self.n_slices - 1), self.n_slices - 1):
            edges = (-1, *bars, free + self.n_slices - 1)
            rows.append([edges[i + 1] - edges[i] - 1 for i in range(self.n_slices)])
        t = np.asarray(rows, dtype=np.int64) + self.min_units
        order = np.lexsort(t.T[::-1])
        t = np.ascontiguousarray(t[order])
        t.setflags(write=False)
        return t

    @property
    def n_actions(self) -> int:
        return int(self.table.shape[0])

    @cached_property
    def _index_of(self) -> dict[tuple[int, ...], int]:
        return {tuple(int(x) for x in row): i for i, row in enumerate(self.table)}

    @cached_property
    def _radix(self) -> np.ndarray:
        return (self.n_units + 1) ** np.arange(self.n_slices - 1, -1, -1, dtype=np.int64)

    @cached_property
    def _keys(self) -> np.ndarray:
        return self.table @ self._radix

    def decode(self, index: int | np.ndarray) -> np.ndarray:
        """Action index (scalar or array) -> units per slice, shape (..., n_slices)."""
        idx = np.asarray(index)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"action index must be an integer, got dtype {idx.dtype}")
        if np.any(idx < 0) or np.any(idx >= self.n_actions):
            raise ValueError(f"action index out of range [0, {self.n_actions})")
        return self.table[idx]

    def encode(self, units: np.ndarray | list) -> int | np.ndarray:
        """Units per slice, shape (..., n_slices) -> action index (vectorised)."""
        u = np.asarray(units, dtype=np.int64)
        if u.shape[-1] != self.n_slices:
            raise ValueError(f"expected {self.n_slices} slices, got shape {u.shape}")
        if np.any(u.sum(-1) != self.n_units) or np.any(u < self.min_units):
            raise ValueError(
                f"allocation must sum to {self.n_units} units with each >= {self.min_units}"
            )
        keys = u @ self._radix
        pos = np.searchsorted(self._keys, keys)
        return int(pos) if pos.ndim == 0 else pos

    def bandwidth_hz(self, index: int | np.ndarray) -> np.ndarray:
        """Action index -> bandwidth per slice in Hz (sums exactly to the total)."""
        return self.decode(index) * self.unit_hz

    def prb_ratio(self, index: int | np.ndarray) -> np.ndarray:
        return self.decode(index) / self.n_units

    def from_weights(self, weights: np.ndarray) -> np.ndarray:
        """Round non-negative weights (..., n_slices) to a valid unit split (largest remainder).

        Used by heuristics and the controller's fallback: the result always sums to ``n_units``
        with every slice at least ``min_units``.
        """
        w = np.asarray(weights, dtype=np.float64)
        w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
        s = w.sum(-1, keepdims=True)
        w = np.where(s > 0, w / np.where(s > 0, s, 1.0), 1.0 / self.n_slices)
        free = self.n_units - self.min_units * self.n_slices
        raw = w * free
        base = np.floor(raw).astype(np.int64)
        short = free - base.sum(-1)
        frac = raw - base
        rank = np.argsort(np.argsort(-frac, axis=-1, kind="stable"), axis=-1, kind="stable")
        base += rank < short[..., None]
        return base + self.min_units

    def nearest(self, bandwidth_hz: np.ndarray | list) -> tuple[int, float]:
        """What a gNB actually ran, on any resource-block grid -> (nearest action, off-grid Hz).

        A gNB applies an allocation on its own grid (106 blocks of 180 kHz in a 20 MHz NR
        carrier, say), so what it reports back rarely lies on our unit grid, and its total may
        be below the carrier. The split is read as shares of what was used, rounded to units by
        largest remainder with every slice at ``min_units`` or more; the second value is the L1
        distance in Hz between the reported allocation and the action scaled to the reported
        total (0 for an exact on-grid report). Raises ValueError for a split that does not fit
        the carrier: a wrong length, a negative or non-finite value, an empty or an over-full
        carrier.
        """
        bw = np.asarray(bandwidth_hz, dtype=np.float64)
        if bw.shape != (self.n_slices,):
            raise ValueError(f"expected {self.n_slices} slices, got shape {bw.shape}")
        if not np.all(np.isfinite(bw)) or np.any(bw < 0):
            raise ValueError("bandwidths must be finite and >= 0")
        total = float(bw.sum())
        if total <= 0:
            raise ValueError("allocation is empty (0 Hz in total)")
        if total > self.total_bandwidth_hz * (1 + 1e-9):
            raise ValueError(f"allocation uses {total:.6g} Hz, more than the "
                             f"{self.total_bandwidth_hz:.6g} Hz carrier")
        units = self._round_shares(bw / total * self.n_units)
        scaled = units * (total / self.n_units)
        off = float(np.abs(bw - scaled).sum())
        if off <= 1e-9 * self.total_bandwidth_hz:  # float noise of an on-grid report
            off = 0.0
        return int(self.encode(units)), off

    def explore(self, action: int, rng: np.random.Generator, radius: int) -> int:
        """The explored action for a served ``action``: a ``shift`` within ``radius`` units,
        or (``radius`` 0) any action uniformly. The controller and the simulator share it."""
        if radius > 0:
            return self.shift(action, rng, radius)
        return int(rng.integers(self.n_actions))

    def shift(self, action: int, rng: np.random.Generator, radius: int) -> int:
        """A random action near ``action``: 1..``radius`` units moved from one slice to another.

        Bounded exploration: a split a few units from the served one costs a few units' worth
        of utility at most, where a uniform draw over all actions can starve a slice. Returns
        ``action`` itself only when no move is possible (every slice at its minimum).
        """
        units = self.table[action].copy()
        donors = np.flatnonzero(units > self.min_units)
        if radius <= 0 or donors.size == 0:
            return int(action)
        d = int(rng.choice(donors))
        r = int(rng.choice([j for j in range(self.n_slices) if j != d]))
        k = int(rng.integers(1, radius + 1))
        k = min(k, int(units[d]) - self.min_units)
        units[d] -= k
        units[r] += k
        return int(self.encode(units))

    def _round_shares(self, target: np.ndarray) -> np.ndarray:
        """Real-valued units (summing to n_units) -> the closest integer split with the minimum."""
        lo = self.min_units
        units = np.maximum(np.floor(target + 1e-9).astype(np.int64), lo)
        while units.sum() > self.n_units:
            # give a unit back where it is least deserved, never below the minimum
            j = int(np.argmin(np.where(units > lo, target - units, np.inf)))
            units[j] -= 1
        deficit = target - units
        while units.sum() < self.n_units:
            j = int(np.argmax(deficit))
            units[j] += 1
            deficit[j] -= 1
        return units


DEFAULT_CODEC = ActionCodec()
