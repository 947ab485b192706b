"""Algorithm 1: exact blending, a real-interaction counter that counts only real steps, and both
modes running end to end with a tiny tabular twin (the real twin is tested in its own files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slicetwin.twin.rollout import TwinStep
from trainer.agents import make_agent
from trainer.agents.envs import RealEnv
from trainer.agents.loop import EnvStep
from trainer.algorithm1 import Algorithm1Config, algorithm1

STATES = np.array([[1.0, 0.0, 0.2], [0.0, 1.0, 0.7]], np.float32)
BEST = np.array([3, 11])
N_ACTIONS = 16
torch.set_num_threads(1)  # tiny nets: thread hand-offs cost more than the maths on a busy box


class CountedBandit:
    """Two alternating states, reward 1 for the best action; counts its own step() calls."""

    def __init__(self, n: int = 4):
        self.n, self.calls = n, 0
        self.idx = np.arange(n) % 2

    def reset(self) -> np.ndarray:
        self.idx = np.arange(self.n) % 2
        return STATES[self.idx]

    def step(self, actions: np.ndarray) -> EnvStep:
        self.calls += 1
        r = (actions == BEST[self.idx]).astype(np.float32)
        self.idx = 1 - self.idx
        return EnvStep(STATES[self.idx], r, r)


class TabularTwin:
    """A tiny twin: remembers the mean reward of every seen (state, action) and the successor
    of every state; unseen pairs predict reward 0 with uncertainty 1."""

    history_len = 1

    def __init__(self):
        self.fits = 0
        self.steps = 0

    def fit(self, data) -> dict:
        self.fits += 1
        sid = data.state[:, 1].round().astype(int)
        self.table = np.zeros((2, N_ACTIONS))
        self.seen = np.zeros((2, N_ACTIONS), bool)
        np.add.at(self.table, (sid, data.action), data.reward)
        cnt = np.zeros((2, N_ACTIONS))
        np.add.at(cnt, (sid, data.action), 1)
        self.seen = cnt > 0
        self.table = np.where(self.seen, self.table / np.maximum(cnt, 1), 0.0)
        return {"n": len(data)}

    def reset(self, states, history=None, history_actions=None, t=0, seed=None, sample=None):
        self.cur = np.asarray(states, np.float32)
        return self.cur.copy()

    def step(self, actions, t=None) -> TwinStep:
        self.steps += len(actions)
        sid = self.cur[:, 1].round().astype(int)
        r = self.table[sid, actions].astype(np.float32)
        u = (~self.seen[sid, actions]).astype(np.float32)
        self.cur = STATES[1 - sid]
        return TwinStep(self.cur.copy(), r, r, u)

    def branch(self, actions, t=None) -> TwinStep:
        """K actions per rollout from the current states, without advancing."""
        actions = np.asarray(actions)
        self.steps += actions.size
        sid = np.repeat(self.cur[:, 1].round().astype(int), actions.shape[1])
        a = actions.reshape(-1)
        r = self.table[sid, a].astype(np.float32)
        return TwinStep(STATES[1 - sid], r, r, (~self.seen[sid, a]).astype(np.float32))


SMALL = dict(hidden=(32, 32), batch_size=32, learning_starts=32, train_every=1.0,
             eps_decay_steps=200, target_update_every=50)


def _setup(seed=0, **agent_kw):
    torch.manual_seed(seed)
    agent = make_agent("ddqn", 3, N_ACTIONS, seed=seed, **{**SMALL, **agent_kw})
    env = CountedBandit()
    return agent, env, RealEnv(env), TabularTwin(), np.random.default_rng(seed)


def test_blend_inside_algorithm1_is_exact():
    # agent 1 never learns from real data (one update per 1e9 transitions), so after one
    # iteration its weights are exactly the blend of its snapshot and agent 2's (agent 2 trains
    # on its own schedule, twin_train_every).
    agent, _, real, twin, rng = _setup(train_every=1e9)
    cfg = Algorithm1Config(iterations=1, real_steps=8, twin_steps=30, zeta=0.3,
                           initial_collect=40, rollout_length=2, rollout_batch=16)
    snap = {}

    def grab(a1, a2):
        snap["a1"] = {k: [p.detach().clone() for p in n.parameters()] for k, n in a1.networks().items()}
        snap["a2"] = {k: [p.detach().clone() for p in n.parameters()] for k, n in a2.networks().items()}
        assert a1 is not a2

    res = algorithm1(agent, real, twin, cfg, rng, on_blend=grab)
    assert res.twin_grad_steps == 30 and res.real_grad_steps == 0
    moved = False
    for k, net in agent.networks().items():
        for p, p1, p2 in zip(net.parameters(), snap["a1"][k], snap["a2"][k], strict=True):
            torch.testing.assert_close(p.detach(), 0.3 * p1 + 0.7 * p2, rtol=0, atol=1e-7)
            moved |= not torch.equal(p1, p2)
    assert moved, "agent 2 did not train in the twin; the check would be vacuous"


@pytest.mark.parametrize("mode", ["paper", "branched"])
def test_real_counter_counts_only_real_steps(mode):
    agent, env, real, twin, rng = _setup()
    cfg = Algorithm1Config(mode=mode, iterations=3, real_steps=40, twin_steps=50,
                           initial_collect=40, collect_steps=8, rollout_length=3,
                           rollout_batch=16, rollout_every=20, updates_per_real=1.0)
    res = algorithm1(agent, real, twin, cfg, rng)
    extra = 2 * cfg.collect_steps if mode == "paper" else 0
    expected = cfg.initial_collect + cfg.iterations * cfg.real_steps + extra
    assert real.interactions == expected == env.calls * env.n
    assert res.real_interactions == expected
    assert len(real.transitions()) == expected
    assert twin.steps > 0 and res.twin_transitions == twin.steps  # free, never counted
    assert twin.fits == cfg.iterations


@pytest.mark.parametrize("mode", ["paper", "branched"])
def test_algorithm1_learns_the_toy_problem(mode):
    agent, _, real, twin, rng = _setup()
    cfg = Algorithm1Config(mode=mode, iterations=6, real_steps=40, twin_steps=200,
                           initial_collect=80, rollout_length=2, rollout_batch=32,
                           twin_eps=0.5, rollout_every=20, updates_per_real=4.0, real_ratio=0.25)
    algorithm1(agent, real, twin, cfg, rng)
    assert (agent.greedy(STATES) == BEST).all()


def test_config_validation_and_matched_budget():
    with pytest.raises(ValueError, match="mode"):
        Algorithm1Config(mode="dyna")
    with pytest.raises(ValueError, match="zeta"):
        Algorithm1Config(zeta=1.5)
    cfg = Algorithm1Config(real_steps=200, twin_steps=400)
    assert cfg.grad_steps_per_real(agent_train_every=4.0) == pytest.approx((50 + 400) / 200)
    assert Algorithm1Config(mode="branched", updates_per_real=3.0).grad_steps_per_real(4.0) == 3.0


def test_twin_env_penalises_and_truncates_uncertain_model_steps():
    from trainer.agents.envs import TwinEnv
    from trainer.algorithm1 import _branch
    from trainer.replay import ReplayBuffer

    agent, env, real, twin, rng = _setup()
    real.reset()
    for _ in range(10):  # real data where only action 3 was ever tried
        real.step(np.full(env.n, 3))
    twin.fit(real.transitions())
    tenv = TwinEnv(twin, real, batch=64, rng=rng, penalty=0.5, max_uncertainty=0.5)
    tenv.reset()
    acts = np.where(np.arange(64) % 2 == 0, 3, 5)  # seen vs never-seen action
    out = tenv.step(acts)
    seen = acts == 3
    assert np.all(out.uncertainty[~seen] == 1.0) and np.all(out.uncertainty[seen] == 0.0)
    np.testing.assert_allclose(out.reward[~seen], -0.5)  # twin reward 0 minus 0.5 * 1
    assert np.all(out.done[~seen] == 1.0) and np.all(out.done[seen] == 0.0)
    # branched rollouts stop storing a rollout after its first over-uncertain transition
    buf = ReplayBuffer(10_000, 3)
    cfg = Algorithm1Config(mode="branched", rollout_length=4, rollout_batch=64, twin_eps=1.0,
                           max_uncertainty=0.5, uncertainty_penalty=0.5)
    _branch(agent, tenv, buf, cfg)
    n_done = int(buf.done[: len(buf)].sum())
    assert n_done > 0
    assert len(buf) < 64 * 4  # truncated rollouts stored fewer than length x batch rows


def test_real_ratio_ramp_phases_the_model_out():
    cfg = Algorithm1Config(mode="branched", real_ratio=0.2, real_ratio_end=1.0, real_ratio_ramp=80)
    assert cfg.real_ratio_at(0) == pytest.approx(0.2)
    assert cfg.real_ratio_at(40) == pytest.approx(0.6)
    assert cfg.real_ratio_at(10_000) == pytest.approx(1.0)
    assert Algorithm1Config(real_ratio=0.3).real_ratio_at(10_000) == 0.3  # no ramp: constant
    with pytest.raises(ValueError, match="real_ratio_end"):
        Algorithm1Config(real_ratio_end=1.5)
    # once the ramp reaches 1.0 the twin is neither refitted nor rolled out any more
    agent, _, real, twin, rng = _setup()
    cfg = Algorithm1Config(mode="branched", iterations=5, real_steps=40, initial_collect=40,
                           rollout_length=2, rollout_batch=16, rollout_every=20,
                           updates_per_real=1.0, real_ratio=0.2, real_ratio_end=1.0,
                           real_ratio_ramp=80)
    res = algorithm1(agent, real, twin, cfg, rng)
    assert twin.fits == 1  # iteration 0 at 40 interactions (ratio 0.6); at 80 the ratio is 1
    assert res.twin_transitions == 2 * 16 * 2  # two branches in iteration 0 only
    assert res.real_interactions == 40 + 5 * 40


def test_counterfactual_actions_label_k_more_transitions_per_twin_state():
    from trainer.agents.envs import TwinEnv
    from trainer.algorithm1 import _branch
    from trainer.replay import ReplayBuffer

    agent, env, real, twin, rng = _setup()
    real.reset()
    for _ in range(20):
        real.step(rng.integers(0, N_ACTIONS, env.n))
    twin.fit(real.transitions())
    tenv = TwinEnv(twin, real, batch=8, rng=rng)
    buf = ReplayBuffer(10_000, 3)
    cfg = Algorithm1Config(rollout_length=3, rollout_batch=8, twin_eps=0.0,
                           counterfactual_actions=5)
    _branch(agent, tenv, buf, cfg)
    n = len(buf)
    assert n == 3 * 8 * (5 + 1)  # per step: 8 policy transitions + 8 x 5 counterfactual ones
    # every counterfactual row is labelled by the twin for its own (state, action)
    sid = buf.state[:n, 1].round().astype(int)
    np.testing.assert_allclose(buf.reward[:n], twin.table[sid, buf.action[:n]])
    # the counterfactual rows share their state: each block of 5 repeats one twin state
    first = buf.state[:40].reshape(8, 5, 3)
    assert (first == first[:, :1]).all()
    assert len(np.unique(buf.action[:n])) > 8  # many actions, not just the greedy one
    with pytest.raises(ValueError, match="counterfactual"):
        Algorithm1Config(counterfactual_actions=-1)


def test_counterfactual_backups_learn_from_a_small_twin_budget():
    # 150 twin gradient steps and no real learning: with one action per twin state (ε 0.3)
    # agent 2 sees too few (state, action) pairs to find both best actions; with all 16 tried
    # per state it does (6 of 6 seeds vs 0 of 6 when probed). Several seeds each way.
    def solved(k: int, seed: int) -> bool:
        agent, _, real, twin, rng = _setup(seed, train_every=1e9)
        cfg = Algorithm1Config(iterations=1, real_steps=8, twin_steps=150, zeta=0.0,
                               initial_collect=400, rollout_length=1, rollout_batch=8,
                               twin_eps=0.3, counterfactual_actions=k, collect_eps=1.0)
        algorithm1(agent, real, twin, cfg, rng)
        return bool((agent.greedy(STATES) == BEST).all())

    with_cf = [solved(15, s) for s in range(3)]
    without = [solved(0, s) for s in range(3)]
    assert all(with_cf), with_cf
    assert not any(without), without


def test_collect_eps_and_interaction_budget():
    agent, env, real, twin, rng = _setup(eps_decay_steps=0)  # agent's own ε: 0.05 at once
    cfg = Algorithm1Config(iterations=10, real_steps=40, twin_steps=10, initial_collect=80,
                           rollout_length=1, rollout_batch=8, collect_eps=1.0,
                           real_eps_decay_steps=1, max_interactions=180)
    res = algorithm1(agent, real, twin, cfg, rng)
    assert real.interactions == res.real_interactions == 180  # cut inside iteration 3
    first = real.transitions().action[:80]
    assert len(np.unique(first)) > 10  # the initial collection is uniformly random
    with pytest.raises(ValueError, match="collect_eps"):
        Algorithm1Config(collect_eps=2.0)
    with pytest.raises(ValueError, match="max_interactions"):
        Algorithm1Config(max_interactions=0)
