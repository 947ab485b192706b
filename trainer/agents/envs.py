"""Environments the training loop runs in: the simulator (real), the digital twin, and the
wrapper that makes an environment *the real one* (counts interactions, records Transitions).

Only ``RealEnv`` counts: every transition the agent experiences through it is one real-network
interaction; twin steps go through ``TwinEnv`` and are free.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from slicetwin.core.transitions import Transitions
from slicetwin.core.utility import RewardShaper
from slicetwin.sim import RanSimulator
from slicetwin.twin.history import histories
from trainer.agents.loop import BatchEnv, EnvStep


class SimEnv:
    """``slicetwin.sim.RanSimulator`` with n cells as a BatchEnv; reward shaped on a clock of
    interactions (the threshold rises with experience, as in the paper's training curves)."""

    def __init__(self, n_cells: int = 1, seed: int = 0, shaper: RewardShaper | None = None,
                 sim_config: Any = None):

        self.sim = RanSimulator(config=sim_config, n_cells=n_cells, seed=seed)
        self.codec = self.sim.codec
        self.n = n_cells
        self.seed = seed
        self.shaper = shaper or RewardShaper()
        self.clock = 0  # interactions so far: the reward shaper's t

    @property
    def n_actions(self) -> int:
        return self.codec.n_actions

    def reset(self) -> np.ndarray:
        out = self.sim.reset(self.seed)
        if isinstance(out, tuple):
            out = out[0]
        return np.asarray(out, np.float32).reshape(self.n, -1)

    def step(self, actions: np.ndarray) -> EnvStep:
        s2, k = self.sim.step(self.codec.decode(np.asarray(actions, np.int64)))
        u = np.asarray(k.utility, np.float64).reshape(self.n)
        r = self.shaper.reward(u, self.clock)
        self.clock += self.n
        kpis = {"arrived": np.asarray(k.arrived, np.float32),
                "sla_met": np.asarray(k.sla_met, np.float32),
                "se": np.asarray(k.spectral_efficiency, np.float32).reshape(self.n)}
        return EnvStep(np.asarray(s2, np.float32).reshape(self.n, -1), r.astype(np.float32),
                       u.astype(np.float32), kpis=kpis)


class RealEnv:
    """The real environment: counts every interaction and records it as ``Transitions``.

    ``interactions`` grows by n per step and by nothing else, so no code path can smuggle free
    real data into a run's budget.
    """

    def __init__(self, env: BatchEnv, record: bool = True):
        self.env, self.n, self.record = env, env.n, record
        self.interactions = 0
        self._parts: list[Transitions] = []
        self._window = 0
        self._state: np.ndarray | None = None
        self._cells = np.arange(self.n, dtype=np.int64)
        self.times: list[tuple[int, float]] = []  # (interactions, perf_counter) after each step
        self.observer: Any = None  # called with ``interactions`` after every step (evaluation)

    def reset(self) -> np.ndarray:
        self._state = self.env.reset()
        self._window += 1  # a gap, so histories never stitch across a reset
        return self._state

    def step(self, actions: np.ndarray) -> EnvStep:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, np.int64).reshape(self.n)
        out = self.env.step(actions)
        self.interactions += self.n
        self.times.append((self.interactions, time.perf_counter()))
        self._window += 1
        if self.record:
            k = out.kpis or {}
            z3 = np.zeros((self.n, 3), np.float32)
            self._parts.append(Transitions(
                state=self._state, action=actions, reward=np.asarray(out.reward, np.float32),
                utility=np.asarray(out.utility, np.float32), next_state=out.next_state,
                arrived=k.get("arrived", z3), sla_met=k.get("sla_met", z3),
                se=k.get("se", np.zeros(self.n, np.float32)), cell=self._cells.copy(),
                window=np.full(self.n, self._window, np.int64)))
        self._state = out.next_state
        if out.done is not None and np.any(out.done):
            self._state = None
        if self.observer is not None:
            self.observer(self.interactions)
        return out

    def transitions(self, last: int | None = None) -> Transitions:
        """Recorded real data (the newest ``last`` transitions if given)."""
        if len(self._parts) > 1:
            self._parts = [Transitions.concat(self._parts)]
        data = self._parts[0] if self._parts else Transitions.empty()
        return data if last is None or last >= len(data) else data[len(data) - last:]


class TwinEnv:
    """B rollouts in the twin, each started from a random recorded real state (with its history).

    ``penalty`` subtracts penalty * uncertainty from the reward (MOPO-style pessimism);
    transitions whose uncertainty exceeds ``max_uncertainty`` are flagged ``done`` so the loop
    stops bootstrapping through them and restarts those rollouts from real states.
    """

    def __init__(self, twin: Any, real: RealEnv, batch: int, rng: np.random.Generator,
                 penalty: float = 0.0, max_uncertainty: float = float("inf"),
                 sample: bool | None = None):
        self.twin, self.real, self.n, self.rng = twin, real, batch, rng
        self.sample = sample  # None: the twin's default; passed only when set
        self.penalty, self.max_uncertainty = penalty, max_uncertainty
        self.steps = 0

    def reset(self) -> np.ndarray:
        data = self.real.transitions()
        if len(data) == 0:
            raise RuntimeError("the twin needs recorded real states to start rollouts from")
        rows = self.rng.integers(0, len(data), size=self.n)
        h = int(getattr(self.twin, "history_len", 1))
        state, past_s, past_a = histories(data, rows, h)
        kw = {} if self.sample is None else {"sample": self.sample}
        return self.twin.reset(state, past_s, past_a, t=self.real.interactions,
                               seed=int(self.rng.integers(0, 2**62)), **kw)

    def step(self, actions: np.ndarray) -> EnvStep:
        out = self.twin.step(np.asarray(actions, np.int64), t=self.real.interactions)
        self.steps += self.n
        return self._env_step(out)

    def branch(self, actions: np.ndarray) -> EnvStep:
        """(B, K) actions tried from the current states without advancing; (B*K,) rows."""
        actions = np.asarray(actions, np.int64)
        out = self.twin.branch(actions, t=self.real.interactions)
        self.steps += actions.size
        return self._env_step(out)

    def _env_step(self, out: Any) -> EnvStep:
        u = np.asarray(out.uncertainty, np.float32)
        r = np.asarray(out.reward, np.float32) - self.penalty * u
        done = (u > self.max_uncertainty).astype(np.float32)
        return EnvStep(np.asarray(out.next_state, np.float32), r,
                       np.asarray(out.utility, np.float32), done=done if done.any() else None,
                       uncertainty=u)
