"""Algorithm 2 proximal term, TD training on a fixed dataset, and the CQL penalty."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from trainer.nets import QNetwork
from trainer.offline import OfflineConfig, cql_term, proximal_term, train_offline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


def test_proximal_term_zero_at_equal_parameters():
    torch.manual_seed(0)
    net = QNetwork(3, 10, hidden=(8, 8))
    p = proximal_term(net, _params(net), v=3.0)
    assert float(p.detach()) == 0.0
    p.backward()
    assert all(float(x.grad.abs().max()) == 0.0 for x in net.parameters())


@pytest.mark.parametrize("v", [0.5, 2.0])
def test_proximal_gradient_is_v_times_difference(v):
    torch.manual_seed(0)
    net, ref = QNetwork(3, 10, hidden=(8, 8)), QNetwork(3, 10, hidden=(8, 8))
    theta2 = _params(ref)
    p = proximal_term(net, theta2, v=v)
    expected = 0.5 * v * sum(float(((a.detach() - b) ** 2).sum())
                             for a, b in zip(net.parameters(), theta2, strict=True))
    assert float(p.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(p.detach()) > 0
    p.backward()
    for a, b in zip(net.parameters(), theta2, strict=True):
        torch.testing.assert_close(a.grad, v * (a.detach() - b), rtol=1e-5, atol=1e-6)


def _bandit_dataset(n=4000, n_actions=6, seed=0, actions=None):
    """Contextual bandit: reward 1 when the action equals argmax(state) (x2 per block), else 0."""
    rng = np.random.default_rng(seed)
    s = rng.random((n, 3), dtype=np.float32)
    pool = np.arange(n_actions) if actions is None else np.asarray(actions)
    a = rng.choice(pool, size=n)
    best = s.argmax(1)
    r = (a == best).astype(np.float32)
    s2 = rng.random((n, 3), dtype=np.float32)
    return SimpleNamespace(state=s, action=a, reward=r, next_state=s2), best


def test_offline_td_learns_bandit_from_random_data():
    data, best = _bandit_dataset()
    cfg = OfflineConfig(algo="ddqn", hidden=(32, 32), epochs=15, gamma=0.0, seed=0)
    res = train_offline(data, 6, cfg)
    with torch.no_grad():
        greedy = res.q(torch.from_numpy(data.state)).argmax(1).numpy()
    assert np.mean(greedy == best) > 0.9
    assert res.history[-1]["td"] < res.history[0]["td"]


def test_large_v_keeps_agent_at_reference():
    data, _ = _bandit_dataset(n=1000)
    torch.manual_seed(3)
    ref = QNetwork(3, 6, hidden=(16, 16))
    far = train_offline(data, 6, OfflineConfig(hidden=(16, 16), epochs=3, gamma=0.0),
                        reference=ref)
    near = train_offline(data, 6, OfflineConfig(hidden=(16, 16), epochs=3, gamma=0.0,
                                                prox_weight=50.0, init_from_reference=True),
                         reference=ref)

    def dist(net):
        return sum(float(((a - b) ** 2).sum()) for a, b in zip(net.parameters(), ref.parameters(), strict=True))

    assert dist(near.q) < 0.05 * dist(far.q)
    assert near.history[0]["prox"] >= 0.0


def test_cql_pushes_down_unseen_actions():
    # Dataset only ever tries actions 0-2; actions 3-5 are never seen.
    data, _ = _bandit_dataset(n=3000, actions=[0, 1, 2])
    kw = dict(hidden=(32, 32), epochs=10, gamma=0.0, seed=0)
    plain = train_offline(data, 6, OfflineConfig(algo="ddqn", **kw)).q
    cql = train_offline(data, 6, OfflineConfig(algo="cql", cql_alpha=1.0, **kw)).q
    x = torch.from_numpy(data.state)
    with torch.no_grad():
        gap_plain = (plain(x)[:, :3].max(1).values - plain(x)[:, 3:].max(1).values).mean()
        gap_cql = (cql(x)[:, :3].max(1).values - cql(x)[:, 3:].max(1).values).mean()
        # CQL never picks an action the data did not try
        assert (cql(x).argmax(1) < 3).all()
    assert gap_cql > gap_plain + 0.2


def test_cql_term_value():
    q = torch.tensor([[0.0, 0.0], [1.0, 3.0]])
    a = torch.tensor([0, 1])
    expected = ((np.log(2.0) - 0.0) + (np.log(np.exp(1) + np.exp(3)) - 3.0)) / 2
    assert float(cql_term(q, a)) == pytest.approx(expected, rel=1e-6)


def test_bad_config():
    data, _ = _bandit_dataset(n=50)
    with pytest.raises(ValueError, match="reference"):
        train_offline(data, 6, OfflineConfig(prox_weight=1.0, hidden=(4,), epochs=1))
    with pytest.raises(ValueError, match="algo"):
        train_offline(data, 6, OfflineConfig(algo="sac", hidden=(4,), epochs=1))
    with pytest.raises(ValueError, match="architecture"):
        train_offline(data, 6, OfflineConfig(prox_weight=1.0, hidden=(4,), epochs=1),
                      reference=QNetwork(3, 6, hidden=(5,)))
    with pytest.raises(ValueError, match="outside"):
        train_offline(data, 3, OfflineConfig(hidden=(4,), epochs=1))
