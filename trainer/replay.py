"""One uniform replay buffer for every agent: a numpy ring, vectorised adds, torch batches out.

Continuing task (no terminal states in the RAN problem), but a ``done`` column is kept so the same
buffer serves episodic test problems. Sampling draws indices with the caller's generator, so runs
are reproducible per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    state: torch.Tensor  # (B, S) float32
    action: torch.Tensor  # (B,) int64
    reward: torch.Tensor  # (B,) float32
    next_state: torch.Tensor  # (B, S) float32
    done: torch.Tensor  # (B,) float32, 1 where the next state is terminal

    def __len__(self) -> int:
        return int(self.action.shape[0])


class ReplayBuffer:
    """Fixed-capacity FIFO of (s, a, r, s', done); oldest rows are overwritten first."""

    def __init__(self, capacity: int, state_dim: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.capacity, self.state_dim = int(capacity), int(state_dim)
        self.state = np.zeros((self.capacity, state_dim), np.float32)
        self.next_state = np.zeros((self.capacity, state_dim), np.float32)
        self.action = np.zeros(self.capacity, np.int64)
        self.reward = np.zeros(self.capacity, np.float32)
        self.done = np.zeros(self.capacity, np.float32)
        self._pos = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, state: np.ndarray, action: np.ndarray, reward: np.ndarray,
            next_state: np.ndarray, done: np.ndarray | None = None) -> None:
        """Append a batch of transitions (leading dimension n; a single one is also accepted)."""
        s = np.asarray(state, np.float32).reshape(-1, self.state_dim)
        n = s.shape[0]
        a = np.asarray(action, np.int64).reshape(n)
        r = np.asarray(reward, np.float32).reshape(n)
        s2 = np.asarray(next_state, np.float32).reshape(n, self.state_dim)
        d = np.zeros(n, np.float32) if done is None else np.asarray(done, np.float32).reshape(n)
        if n > self.capacity:  # keep only the newest rows
            s, a, r, s2, d = s[-self.capacity:], a[-self.capacity:], r[-self.capacity:], \
                s2[-self.capacity:], d[-self.capacity:]
            n = self.capacity
        idx = (self._pos + np.arange(n)) % self.capacity
        self.state[idx], self.action[idx], self.reward[idx] = s, a, r
        self.next_state[idx], self.done[idx] = s2, d
        self._pos = int((self._pos + n) % self.capacity)
        self._size = min(self._size + n, self.capacity)

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return rng.integers(0, self._size, size=batch_size)

    def batch(self, idx: np.ndarray) -> Batch:
        return Batch(torch.from_numpy(self.state[idx]), torch.from_numpy(self.action[idx]),
                     torch.from_numpy(self.reward[idx]), torch.from_numpy(self.next_state[idx]),
                     torch.from_numpy(self.done[idx]))

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        return self.batch(self.sample_indices(batch_size, rng))

    def states(self) -> np.ndarray:
        """All stored states (the start points for branched model rollouts)."""
        return self.state[: self._size]


def sample_mixed(real: ReplayBuffer, model: ReplayBuffer | None, batch_size: int,
                 real_ratio: float, rng: np.random.Generator) -> Batch:
    """A batch with ``real_ratio`` of its rows from ``real`` and the rest from ``model`` (MBPO)."""
    if model is None or len(model) == 0 or real_ratio >= 1.0:
        return real.sample(batch_size, rng)
    n_real = int(round(batch_size * real_ratio))
    if n_real == 0:
        return model.sample(batch_size, rng)
    a, b = real.sample(n_real, rng), model.sample(batch_size - n_real, rng)
    return Batch(*(torch.cat([getattr(a, f), getattr(b, f)])
                   for f in ("state", "action", "reward", "next_state", "done")))
