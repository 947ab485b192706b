"""Rollout bookkeeping shared by the in-process twin and the HTTP client.

Both keep, per rollout, the last H-1 (state, action) pairs and the current state, and delegate
the one-step prediction to ``predict(states (B, H, 3), actions (B, H), t, seed, sample)``. The
per-step seed comes from the rollout RNG, so the same seed gives the same rollouts whether the
model runs here or behind the twin service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slicetwin.core.state import STATE_DIM


@dataclass
class TwinStep:
    next_state: np.ndarray  # (B, 3) float32
    reward: np.ndarray  # (B,) shaped reward from the predicted KPIs (or the direct head)
    utility: np.ndarray  # (B,)
    uncertainty: np.ndarray  # (B,) ensemble disagreement (RMS member std, normalised units)
    kpis: dict[str, np.ndarray] = field(default_factory=dict)  # arrived, sla_met, se, ssr, ...


class TwinRollouts:
    """``reset(states)`` then ``step(actions)`` over B rollouts; subclasses give ``predict``."""

    history_len: int

    def _init_rollouts(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._past_s: np.ndarray | None = None
        self._past_a: np.ndarray | None = None
        self._cur: np.ndarray | None = None
        self._t = 0
        self._sample: bool | None = None

    def predict(self, states: np.ndarray, actions: np.ndarray, t: int | np.ndarray = 0,
                seed: int | None = None, sample: bool | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def reset(self, states: np.ndarray, history: np.ndarray | None = None,
              history_actions: np.ndarray | None = None, t: int = 0,
              seed: int | None = None, sample: bool | None = None) -> np.ndarray:
        """Start B rollouts from real states (B, 3).

        history: (B, L, 3) states of the L windows before ``states`` (oldest first);
        history_actions: (B, L) actions applied after each of them (-1 or None: unknown).
        ``t`` is the step index fed to the reward shaper; it advances by one per step.
        ``sample``: override ``config.sample`` for these rollouts (False: ensemble mean).
        """
        states = np.asarray(states, dtype=np.float32)
        if states.ndim != 2 or states.shape[1] != STATE_DIM:
            raise ValueError(f"states must have shape (B, {STATE_DIM}), got {states.shape}")
        b = len(states)
        if history is None:
            history = np.zeros((b, 0, STATE_DIM), np.float32)
        history = np.asarray(history, dtype=np.float32)
        if history.ndim != 3 or history.shape[0] != b or history.shape[2] != STATE_DIM:
            raise ValueError(f"history must have shape ({b}, L, {STATE_DIM}), got {history.shape}")
        if history_actions is None:
            history_actions = np.full(history.shape[:2], -1, np.int64)
        keep = self.history_len - 1
        self._past_s = history[:, history.shape[1] - keep:] if keep else history[:, :0]
        self._past_a = np.asarray(history_actions, np.int64)[:, history.shape[1] - keep:] if keep \
            else np.zeros((b, 0), np.int64)
        self._cur = states.copy()
        self._t = int(t)
        self._sample = sample
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        return self._cur.copy()

    def next_seed(self) -> int:
        return int(self._rng.integers(0, 2**62))

    def step(self, actions: np.ndarray, t: int | None = None) -> TwinStep:
        """Advance every rollout by one window under ``actions`` (B,) action indices."""
        if self._cur is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if len(actions) != len(self._cur):
            raise ValueError(f"expected {len(self._cur)} actions, got {len(actions)}")
        tt = self._t if t is None else t
        states = np.concatenate([self._past_s, self._cur[:, None]], axis=1)
        acts = np.concatenate([self._past_a, actions[:, None]], axis=1)
        out = self.predict(states, acts, t=tt, seed=self.next_seed(), sample=self._sample)
        return self._advance(states, acts, out)

    def branch(self, actions: np.ndarray, t: int | None = None) -> TwinStep:
        """Try K actions from every rollout's current state *without advancing* (B, K) -> TwinStep
        of (B*K,) rows, row-major (rollout i, action k at row i*K + k).

        This is what only a model allows: the same window replayed under many allocations (a
        counterfactual), so an agent learns Q for K actions per state instead of the one it took.
        """
        if self._cur is None:
            raise RuntimeError("call reset() before branch()")
        actions = np.asarray(actions, dtype=np.int64)
        if actions.ndim != 2 or len(actions) != len(self._cur):
            raise ValueError(f"expected actions of shape ({len(self._cur)}, K), got {actions.shape}")
        k = actions.shape[1]
        tt = self._t if t is None else t
        states = np.repeat(np.concatenate([self._past_s, self._cur[:, None]], axis=1), k, axis=0)
        acts = np.concatenate([np.repeat(self._past_a, k, axis=0), actions.reshape(-1, 1)], axis=1)
        out = self.predict(states, acts, t=tt, seed=self.next_seed(), sample=self._sample)
        return _twin_step(out)

    def _advance(self, states: np.ndarray, acts: np.ndarray, out: dict) -> TwinStep:
        keep = self.history_len - 1
        self._past_s = states[:, states.shape[1] - keep:] if keep else states[:, :0]
        self._past_a = acts[:, acts.shape[1] - keep:] if keep else acts[:, :0]
        self._cur = out["next_state"]
        self._t += 1
        return _twin_step(out)


def _twin_step(out: dict) -> TwinStep:
    """``predict``'s dict as a TwinStep (everything beyond the four main fields is a KPI)."""
    kpis = {k: v for k, v in out.items()
            if k not in ("next_state", "reward", "utility", "uncertainty")}
    return TwinStep(out["next_state"], out["reward"], out["utility"], out["uncertainty"], kpis)
