"""Agents: each learns a tiny deterministic problem with a known optimum, and fails to when its
learning step is disabled; the DDQN bootstrap and the dueling aggregation are checked exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.agents import AGENTS, make_agent
from trainer.agents.dqn import q_taken
from trainer.agents.loop import EnvStep, Learner, run
from trainer.nets import QNetwork
from trainer.replay import ReplayBuffer

STATES = np.array([[1.0, 0.0, 0.2], [0.0, 1.0, 0.7]], np.float32)
BEST = np.array([3, 11])
N_ACTIONS = 16
# the factored agent assumes a separable reward over a codec's splits: tests/unit/trainer/test_agents_factored.py
GENERIC = sorted(set(AGENTS) - {"factored-ddqn"})
torch.set_num_threads(1)  # tiny nets: thread hand-offs cost more than the maths on a busy box


class AlternatingBandit:
    """Two states visited alternately; reward 1 only for the state's best action."""

    def __init__(self, n: int = 8):
        self.n = n
        self.idx = np.arange(n) % 2

    def reset(self) -> np.ndarray:
        self.idx = np.arange(self.n) % 2
        return STATES[self.idx]

    def step(self, actions: np.ndarray) -> EnvStep:
        r = (actions == BEST[self.idx]).astype(np.float32)
        self.idx = 1 - self.idx
        return EnvStep(STATES[self.idx], r, r)


SMALL = dict(hidden=(32, 32), batch_size=32, learning_starts=64, train_every=1.0,
             eps_decay_steps=300, target_update_every=50, buffer_size=2000)


def train_on_toy(name: str, lr: float, seed: int = 0, interactions: int = 960) -> float:
    extra = {"disc_hidden": (32, 32)} if name == "gan-ddqn" else {}
    agent = make_agent(name, 3, N_ACTIONS, seed=seed, lr=lr, **SMALL, **extra)
    learner = Learner(agent, np.random.default_rng(seed))
    env = AlternatingBandit()
    counter = {"n": 0}

    def eps() -> float:
        return agent.cfg.epsilon(counter["n"])

    def count(_: EnvStep) -> None:
        counter["n"] += env.n

    run(learner, env, env.reset(), interactions // env.n, eps, on_step=count)
    return float((agent.greedy(STATES) == BEST).mean())


@pytest.mark.parametrize("name", GENERIC)
def test_agent_learns_known_optimum(name):
    assert train_on_toy(name, lr=1e-3) == 1.0


@pytest.mark.parametrize("name", GENERIC)
def test_agent_with_broken_learning_step_fails(name):
    assert train_on_toy(name, lr=0.0) < 1.0


def test_ddqn_target_uses_online_argmax():
    torch.manual_seed(0)
    agent = make_agent("ddqn", 3, N_ACTIONS, hidden=(16, 16))
    with torch.no_grad():  # make online and target disagree
        for p in agent.q_target.parameters():
            p.add_(torch.randn_like(p))
    s2 = torch.randn(64, 3)
    with torch.no_grad():
        a_online = agent.q(s2).argmax(-1)
        expected = agent.q_target(s2).gather(1, a_online[:, None]).squeeze(1)
        dqn_style = agent.q_target(s2).max(-1).values
    got = agent.next_value(s2)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, dqn_style)  # it is not the target's own max
    dqn = make_agent("dqn", 3, N_ACTIONS, hidden=(16, 16))
    dqn.q_target.load_state_dict(agent.q_target.state_dict())
    torch.testing.assert_close(dqn.next_value(s2), dqn_style)


def test_dueling_aggregation_subtracts_mean_advantage():
    torch.manual_seed(1)
    net = QNetwork(3, N_ACTIONS, (32, 32, 16), dueling=True)
    s = torch.randn(10, 3)
    with torch.no_grad():
        h = net.body(s)
        v, a = net.value(h), net.advantage(h)
        q = net(s)
    torch.testing.assert_close(q, v + a - a.mean(-1, keepdim=True))
    torch.testing.assert_close(q.mean(-1, keepdim=True), v)  # advantages average to zero
    act = torch.randint(0, N_ACTIONS, (10,))
    torch.testing.assert_close(q_taken(net, s, act), q.gather(1, act[:, None]).squeeze(1))


def test_q_taken_matches_full_forward_plain():
    torch.manual_seed(2)
    net = QNetwork(3, 4851, (32, 32))
    s, act = torch.randn(7, 3), torch.randint(0, 4851, (7,))
    with torch.no_grad():
        torch.testing.assert_close(q_taken(net, s, act), net(s).gather(1, act[:, None]).squeeze(1))


def test_gan_particles_average_to_q():
    torch.manual_seed(3)
    agent = make_agent("gan-ddqn", 3, N_ACTIONS, hidden=(32, 32))
    s = torch.randn(5, 3)
    with torch.no_grad():
        adv = agent.q_values(s)
        torch.testing.assert_close(adv.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)
        a = torch.arange(5) % N_ACTIONS
        torch.manual_seed(9)
        parts = agent.q.particles(s, a)
        assert parts.shape == (5, agent.cfg.n_particles)
        spread = parts - parts.mean(-1, keepdim=True)
        torch.manual_seed(9)  # same noise: particles = V_i + advantage of the taken action
        v = agent.q.value(torch.cat([agent.q.body(s), agent.q.noise(5)], -1))
        torch.testing.assert_close(spread, v - v.mean(-1, keepdim=True))
        torch.testing.assert_close(parts.mean(-1) - v.mean(-1), adv.gather(1, a[:, None]).squeeze(1))


@pytest.mark.parametrize("name", GENERIC)
def test_blend_is_exact_convex_combination(name):
    a1 = make_agent(name, 3, N_ACTIONS, seed=1, hidden=(16, 16))
    a2 = make_agent(name, 3, N_ACTIONS, seed=2, hidden=(16, 16))
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in a1.networks().items()}
    other = {k: [p.detach().clone() for p in n.parameters()] for k, n in a2.networks().items()}
    a1.blend_from(a2, 0.3)
    for k, net in a1.networks().items():
        for p, b, o in zip(net.parameters(), before[k], other[k], strict=True):
            torch.testing.assert_close(p.detach(), 0.3 * b + 0.7 * o)
    with pytest.raises(ValueError):
        a1.blend_from(a2, 1.5)


def test_replay_ring_overwrites_oldest_and_samples_reproducibly():
    buf = ReplayBuffer(5, 3)
    for i in range(3):
        buf.add(np.full((3, 3), i), np.arange(3) + 10 * i, np.ones(3), np.zeros((3, 3)))
    assert len(buf) == 5
    assert sorted(buf.action.tolist()) == [11, 12, 20, 21, 22]
    b1 = buf.sample(8, np.random.default_rng(0))
    b2 = buf.sample(8, np.random.default_rng(0))
    assert torch.equal(b1.action, b2.action)
    with pytest.raises(ValueError):
        ReplayBuffer(0, 3)


def test_make_agent_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown agent"):
        make_agent("ppo", 3, 4)
    with pytest.raises(ValueError, match="hyperparameters"):
        make_agent("dqn", 3, 4, learning_rate=1.0)
