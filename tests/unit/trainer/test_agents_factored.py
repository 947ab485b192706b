"""The factored agent: Q as a sum of per-slice tables, exact against its own full forward, and
quicker to learn a separable allocation problem than a flat Q over every split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slicetwin.core.actions import ActionCodec
from slicetwin.sim.search import best_split
from trainer.agents import make_agent
from trainer.agents.dqn import q_taken
from trainer.agents.loop import EnvStep, Learner, run
from trainer.nets import FactoredQNetwork

torch.set_num_threads(1)
CODEC = ActionCodec(n_units=20, min_units=1)  # 171 splits
STATES = np.array([[1.0, 0.0, 0.2], [0.0, 1.0, 0.7]], np.float32)
V = np.arange(1, 19)  # unit counts a slice can hold
# per state, per slice: a saturating gain w * (1 - exp(-v / tau)); the best split moves between
# the states, so a policy must read the state
W = np.array([[[0.2, 1.0, 0.3]], [[0.2, 0.3, 1.0]]])
TAU = np.array([2.0, 6.0, 4.0])
TABLES = W[:, 0, None, :] * (1 - np.exp(-V[None, :, None] / TAU))  # (2 states, 18 values, 3)
BEST, BEST_U = best_split(TABLES, CODEC)


class SeparableBandit:
    """Two states visited alternately; reward = sum over slices of the state's table."""

    def __init__(self, n: int = 8):
        self.n = n
        self.idx = np.arange(n) % 2

    def reset(self) -> np.ndarray:
        self.idx = np.arange(self.n) % 2
        return STATES[self.idx]

    def step(self, actions: np.ndarray) -> EnvStep:
        u = CODEC.decode(np.asarray(actions, np.int64)) - 1
        r = TABLES[self.idx[:, None], u, np.arange(3)].sum(-1).astype(np.float32)
        self.idx = 1 - self.idx
        return EnvStep(STATES[self.idx], r, r)


def regret_after(name: str, lr: float, interactions: int = 800, seed: int = 0) -> float:
    """Mean share of the best reward the greedy policy gives up in the two states."""
    agent = make_agent(name, 3, CODEC.n_actions, seed=seed, lr=lr, hidden=(32, 32),
                       batch_size=32, learning_starts=64, train_every=1.0, eps_decay_steps=400,
                       target_update_every=50, buffer_size=2000, gamma=0.0,
                       **({"n_units": 20} if name == "factored-ddqn" else {}))
    env = SeparableBandit()
    n = {"seen": 0}

    def count(_: EnvStep) -> None:
        n["seen"] += env.n

    run(Learner(agent, np.random.default_rng(seed)), env, env.reset(), interactions // env.n,
        lambda: agent.cfg.epsilon(n["seen"]), on_step=count)
    got = TABLES[np.array([[0], [1]]), CODEC.decode(agent.greedy(STATES)) - 1, np.arange(3)].sum(-1)
    return float(np.mean(1 - got / BEST_U))


def test_forward_is_the_sum_of_monotone_slice_tables():
    torch.manual_seed(0)
    codec = ActionCodec(n_units=100, min_units=1)
    net = FactoredQNetwork(3, codec.table, (16, 16))
    s = torch.randn(6, 3)
    with torch.no_grad():
        t = net.tables(s)
        assert t.shape == (6, 3, 98)
        assert bool((t.diff(dim=-1) >= 0).all())  # more units never lower a slice's value
        q = net(s)
        u = torch.as_tensor(codec.table - 1)
        expect = t[:, 0, u[:, 0]] + t[:, 1, u[:, 1]] + t[:, 2, u[:, 2]]
        torch.testing.assert_close(q, expect)
        act = torch.randint(0, codec.n_actions, (6,))
        torch.testing.assert_close(q_taken(net, s, act), q.gather(1, act[:, None]).squeeze(1))
        # the argmax over all splits is the separable search's answer on the same tables
        a, _ = best_split(t.permute(0, 2, 1).numpy(), codec)
        assert np.array_equal(q.argmax(-1).numpy(), a)


def test_codec_must_match_the_action_count():
    with pytest.raises(ValueError, match="actions"):
        make_agent("factored-ddqn", 3, 16)


def test_learns_a_separable_allocation_that_a_flat_q_does_not_yet():
    factored = regret_after("factored-ddqn", lr=1e-3)
    flat = regret_after("ddqn", lr=1e-3)
    frozen = regret_after("factored-ddqn", lr=0.0)
    assert factored < 0.005, factored
    assert flat > 2 * factored and frozen > 0.05, (flat, frozen)


def test_worker_builds_a_factored_agent_on_its_own_carrier():
    from trainer.worker.learn import new_agent
    from trainer.worker.settings import WorkerSettings

    s = WorkerSettings(agent="factored-ddqn", n_units=20)
    agent = new_agent(s, seed=0)
    assert agent.name == "factored-ddqn" and agent.n_actions == ActionCodec(n_units=20).n_actions
    assert agent.q(torch.zeros(1, 3)).shape == (1, agent.n_actions)
