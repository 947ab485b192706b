"""The one training loop: an agent, its replay buffer and the update schedule, over any BatchEnv.

A ``BatchEnv`` is anything with ``n`` parallel copies, ``reset() -> (n, S)`` and
``step(actions (n,)) -> EnvStep``: the simulator (``trainer.agents.envs.SimEnv``), the digital twin
(``TwinEnv``) or a toy problem in the tests. The loop never calls Python per sample: one forward
per vector step, one batched replay insert, and ``train_every`` spreads gradient steps over
transitions (fractional values allowed: 0.25 = four updates per transition).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from trainer.agents.dqn import DQNAgent
from trainer.replay import Batch, ReplayBuffer


@dataclass
class EnvStep:
    next_state: np.ndarray  # (n, S) float32
    reward: np.ndarray  # (n,) shaped reward
    utility: np.ndarray  # (n,) utility of the window
    done: np.ndarray | None = None  # (n,) 1 where the episode ended (None: continuing task)
    uncertainty: np.ndarray | None = None  # (n,) twin disagreement, where a model produced it
    kpis: dict[str, np.ndarray] | None = None  # arrived, sla_met (n, 3), se (n,): real windows


class BatchEnv(Protocol):
    n: int

    def reset(self) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> EnvStep: ...


class Learner:
    """Agent + replay + the 'one gradient step every train_every transitions' schedule."""

    def __init__(self, agent: DQNAgent, rng: np.random.Generator,
                 replay: ReplayBuffer | None = None,
                 sampler: Callable[[int, np.random.Generator], Batch] | None = None,
                 train_every: float | None = None):
        self.agent, self.rng = agent, rng
        # transitions per gradient step; None -> the agent's own ``train_every``
        self.train_every = agent.cfg.train_every if train_every is None else float(train_every)
        if self.train_every <= 0:
            raise ValueError(f"train_every must be > 0, got {self.train_every}")
        self.replay = replay if replay is not None else ReplayBuffer(agent.cfg.buffer_size,
                                                                     agent.state_dim)
        self.sampler = sampler  # None: uniform from self.replay
        self._credit = 0.0
        self.updates = 0
        self.last_info: dict[str, float] = {}

    def sample(self) -> Batch:
        if self.sampler is not None:
            return self.sampler(self.agent.cfg.batch_size, self.rng)
        return self.replay.sample(self.agent.cfg.batch_size, self.rng)

    def train(self, n_updates: int) -> int:
        """Run n gradient steps now (no-op before learning_starts transitions)."""
        if len(self.replay) < max(self.agent.cfg.learning_starts, 1):
            return 0
        if self.updates == 0 and n_updates > 0:
            self.agent.fit_state_norm(self.replay.states())  # once, "data" normalisation only
        for _ in range(n_updates):
            self.last_info = self.agent.update(self.sample())
        self.updates += n_updates
        return n_updates

    def observe(self, state, action, reward, next_state, done=None, learn: bool = True) -> int:
        """Store a batch of transitions, then run the gradient steps they are owed."""
        self.replay.add(state, action, reward, next_state, done)
        if not learn or len(self.replay) < self.agent.cfg.learning_starts:
            return 0
        self._credit += len(np.atleast_1d(action)) / self.train_every
        k = int(self._credit)
        self._credit -= k
        return self.train(k)


@dataclass
class RolloutStats:
    reward: np.ndarray  # (steps, n)
    utility: np.ndarray  # (steps, n)


def run(learner: Learner, env: BatchEnv, state: np.ndarray, n_vec_steps: int,
        epsilon: Callable[[], float], learn: bool = True,
        on_step: Callable[[EnvStep], None] | None = None) -> tuple[np.ndarray, RolloutStats]:
    """Act epsilon-greedily for n vector steps from ``state``, storing and learning as it goes.

    ``epsilon`` is called before each step (so it can read a live interaction counter).
    Returns the last state and per-step rewards/utilities.
    """
    rewards, utils = [], []
    for _ in range(n_vec_steps):
        a = learner.agent.act(state, epsilon(), learner.rng)
        out = env.step(a)
        learner.observe(state, a, out.reward, out.next_state, out.done, learn=learn)
        rewards.append(out.reward)
        utils.append(out.utility)
        if on_step is not None:
            on_step(out)
        state = out.next_state
        if out.done is not None and np.any(out.done):
            state = env.reset()
    shape = (0, getattr(env, "n", 1))
    return state, RolloutStats(np.asarray(rewards).reshape(-1, shape[1]) if rewards else np.zeros(shape),
                               np.asarray(utils).reshape(-1, shape[1]) if utils else np.zeros(shape))
