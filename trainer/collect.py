"""Collect ``Transitions`` from the RAN simulator under a policy (random by default).

Policies are plain callables ``policy(states (n, 3), rng) -> action indices (n,)`` so fixed
allocations, heuristics and trained agents all fit. Every cell of the simulator runs the same
policy; consecutive windows of a cell are recorded with increasing ``window`` so the twin can
stitch histories.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from slicetwin.core.state import STATE_SCALES
from slicetwin.core.transitions import Transitions
from slicetwin.core.utility import RewardShaper
from slicetwin.sim import RanSimulator

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def random_policy(n_actions: int) -> Policy:
    def act(states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, n_actions, size=len(states))
    return act


def fixed_policy(action: int) -> Policy:
    def act(states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.full(len(states), action, dtype=np.int64)
    return act


def proportional_policy(codec) -> Policy:
    """Bandwidth proportional to each slice's arrivals in raw packets weighted by a rough
    per-packet cost (a simple demand-following heuristic, no learning)."""

    def act(states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return codec.encode(codec.from_weights(np.asarray(states) * STATE_SCALES * _COST))
    return act


_COST = np.array([40 * 8, 100 * 8, 2e6 * 8], dtype=np.float64)  # mean bits per packet per slice


def _initial_state(sim, obs) -> np.ndarray:
    if isinstance(obs, tuple):  # gymnasium-style (obs, info)
        obs = obs[0]
    return np.asarray(obs, dtype=np.float32).reshape(sim.n_cells, -1)


def collect_transitions(n_steps: int, policy: Policy | None = None, n_cells: int = 4,
                        seed: int = 0, sim=None, shaper: RewardShaper | None = None,
                        t0: int = 0, progress: bool = False) -> Transitions:
    """Run ``n_steps`` windows on ``n_cells`` cells; returns n_steps * n_cells transitions.

    ``sim``: an existing ``RanSimulator`` (continues from its current state after a reset with
    ``seed``); by default a fresh one. ``t0``: shaper step index of the first window.
    """
    if sim is None:

        sim = RanSimulator(n_cells=n_cells, seed=seed)
    n_cells = sim.n_cells
    codec = sim.codec
    shaper = shaper or RewardShaper()
    policy = policy or random_policy(codec.n_actions)
    rng = np.random.default_rng(seed + 7919)
    state = _initial_state(sim, sim.reset(seed))
    parts = []
    it = range(n_steps)
    if progress:
        it = tqdm(it, desc="collect", leave=False)
    cells = np.arange(n_cells, dtype=np.int64)
    for t in it:
        actions = np.asarray(policy(state, rng), dtype=np.int64)
        next_state, k = sim.step(codec.decode(actions))
        next_state = np.asarray(next_state, dtype=np.float32).reshape(n_cells, -1)
        arrived = np.asarray(k.arrived, dtype=np.float32)
        utility = np.asarray(k.utility, dtype=np.float32).reshape(n_cells)
        parts.append(Transitions(
            state=state, action=actions, reward=shaper.reward(utility, t0 + t).astype(np.float32),
            utility=utility, next_state=next_state, arrived=arrived,
            sla_met=np.asarray(k.sla_met, dtype=np.float32),
            se=np.asarray(k.spectral_efficiency, dtype=np.float32).reshape(n_cells),
            cell=cells.copy(), window=np.full(n_cells, t + 1, dtype=np.int64)))
        state = next_state
    return Transitions.concat(parts)
