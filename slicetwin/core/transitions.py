"""Transition data: the one format shared by replay, twin fitting, offline RL and the worker.

Every array has the same first dimension N. ``cell`` and ``window`` identify where and when a
transition happened, so consecutive windows of one cell can be stitched into histories (the
twin's LSTM input). Pure numpy; saved as ``.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


@dataclass
class Transitions:
    state: np.ndarray  # (N, S) float32, slicetwin.core.state.state_from_arrivals of window t
    action: np.ndarray  # (N,) int64 action index applied during window t+1
    reward: np.ndarray  # (N,) float32 shaped reward of window t+1
    utility: np.ndarray  # (N,) float32 utility of window t+1
    next_state: np.ndarray  # (N, S) float32
    arrived: np.ndarray  # (N, 3) float32 KPIs of window t+1: arrived packets per slice
    sla_met: np.ndarray  # (N, 3) float32 SLA-met packets per slice
    se: np.ndarray  # (N,) float32 spectral efficiency
    cell: np.ndarray  # (N,) int64 cell identifier
    window: np.ndarray  # (N,) int64 window index of next_state

    def __post_init__(self) -> None:
        n = len(self.action)
        for f in fields(self):
            v = getattr(self, f.name)
            if len(v) != n:
                raise ValueError(f"field {f.name} has {len(v)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.action)

    @classmethod
    def empty(cls, state_dim: int = 3) -> Transitions:
        z = np.zeros
        return cls(z((0, state_dim), np.float32), z(0, np.int64), z(0, np.float32),
                   z(0, np.float32), z((0, state_dim), np.float32), z((0, 3), np.float32),
                   z((0, 3), np.float32), z(0, np.float32), z(0, np.int64), z(0, np.int64))

    def __getitem__(self, idx) -> Transitions:
        return Transitions(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        if not parts:
            return cls.empty()
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> Transitions:
        with np.load(path) as z:
            return cls(**{f.name: z[f.name] for f in fields(cls)})

    def split(self, holdout: float, rng: np.random.Generator) -> tuple[Transitions, Transitions]:
        """Random split (train, held-out)."""
        idx = rng.permutation(len(self))
        k = int(round(len(self) * (1 - holdout)))
        return self[np.sort(idx[:k])], self[np.sort(idx[k:])]
