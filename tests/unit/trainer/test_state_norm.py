"""State normalisation from the data seen (``state_norm="data"``): fitted once, carried by
clone/blend/copy, and folded into the served ONNX graph."""

import copy

import numpy as np
import onnx
import pytest
import torch

from slicetwin.core.actions import ActionCodec
from trainer.agents import make_agent
from trainer.agents.loop import Learner
from trainer.distill import DistillConfig, distill
from trainer.export_onnx import compare_with_torch, export_policy, fold_state_norm
from trainer.nets import FactoredQNetwork, QNetwork, StateNorm, StudentMLP
from trainer.worker.learn import new_agent
from trainer.worker.settings import WorkerSettings


def _states(n=500, scale=(1.0, 1.0, 1.0), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.gamma(2.0, 0.5, (n, 3)) * np.asarray(scale)).astype(np.float32)


def test_state_norm_is_the_identity_until_fitted_then_standardises():
    n = StateNorm(3)
    x = torch.as_tensor(_states(scale=(10, 100, 0.1)))
    assert torch.equal(n(x), x)
    n.fit(x)
    z = n(x)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(0), torch.ones(3), atol=1e-4)
    with pytest.raises(ValueError, match="2 states"):
        StateNorm(3).fit(np.zeros((1, 3)))


def test_a_feature_that_never_moved_does_not_explode():
    x = _states()
    x[:, 2] = 0.0  # a slice with no traffic yet
    n = StateNorm(3)
    n.fit(x)
    assert float(n.inv_std[2]) == pytest.approx(100.0)


@pytest.mark.parametrize("make", [lambda: QNetwork(3, 4851, (32, 32)),
                                  lambda: FactoredQNetwork(3, ActionCodec().table, (32, 32)),
                                  lambda: StudentMLP(3, 4851, 16)])
def test_fitted_network_sees_traffic_at_any_scale_the_same(make):
    """The point of it: fitted on 10x the arrivals, the same weights give the same Q."""
    torch.manual_seed(0)
    a = make()
    b = copy.deepcopy(a)
    x = _states()
    a.norm.fit(x)
    b.norm.fit(10 * x)
    with torch.no_grad():
        qa, qb = a(torch.as_tensor(x)), b(torch.as_tensor(10 * x))
    assert torch.allclose(qa, qb, atol=1e-4)


def test_old_checkpoints_without_the_norm_load_as_identity():
    net = QNetwork(3, 10, (8, 8))
    old = {k: v for k, v in net.state_dict().items() if not k.startswith("norm.")}
    fresh = QNetwork(3, 10, (8, 8))
    fresh.load_state_dict(old)
    assert not bool(fresh.norm.fitted) and torch.equal(fresh.norm.inv_std, torch.ones(3))


def _trained(norm: str, states: np.ndarray, seed: int = 0):
    agent = make_agent("ddqn", 3, 171, seed=seed, hidden=(32, 32), state_norm=norm,
                       learning_starts=64, batch_size=32)
    learner = Learner(agent, np.random.default_rng(seed))
    rng = np.random.default_rng(1)
    learner.observe(states[:-1], rng.integers(0, 171, len(states) - 1),
                    rng.random(len(states) - 1).astype(np.float32), states[1:])
    return agent, learner


def test_learner_fits_the_data_norm_once_at_the_first_gradient_step():
    x = _states(scale=(30, 300, 3))
    agent, learner = _trained("data", x)
    assert learner.updates > 0 and agent.norm_fitted
    assert np.allclose(agent.q.norm.mean.numpy(), x[:-1].mean(0), rtol=1e-4)
    assert torch.equal(agent.q.norm.mean, agent.q_target.norm.mean)
    before = agent.q.norm.mean.clone()
    learner.observe(100 * x[:50], np.zeros(50, int), np.zeros(50, np.float32), 100 * x[1:51])
    assert torch.equal(agent.q.norm.mean, before)  # fixed once: the inputs never shift under it
    fixed, _ = _trained("fixed", x)
    assert not fixed.norm_fitted


def test_blend_adopts_the_trained_agents_norm_and_refuses_two_different_ones():
    x = _states()
    trained, _ = _trained("data", x)
    fresh = make_agent("ddqn", 3, 171, seed=0, hidden=(32, 32), state_norm="data")
    fresh.blend_from(trained, 0.5)
    assert torch.equal(fresh.q.norm.mean, trained.q.norm.mean)
    other, _ = _trained("data", 5 * x)
    with pytest.raises(ValueError, match="different state normalisations"):
        trained.blend_from(other, 0.5)
    with pytest.raises(ValueError, match="state_norm"):
        make_agent("ddqn", 3, 171, state_norm="minmax")
    with pytest.raises(ValueError, match="fixed"):
        make_agent("gan-ddqn", 3, 171, state_norm="data")


def test_export_folds_the_norm_into_the_first_layer(tmp_path):
    torch.manual_seed(0)
    student = StudentMLP(3, 171, 16)
    student.norm.fit(_states(scale=(3, 0.5, 2)))
    path = export_policy(student, tmp_path / "s.onnx", n_units=20)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ops == {"Gemm", "Relu"}  # the served graph is unchanged in shape and cost
    cmp = compare_with_torch(student, path)
    assert cmp["argmax_agreement"] == 1.0 and cmp["max_abs_diff"] < 1e-4
    assert bool(student.norm.fitted)  # folding works on a copy
    assert fold_state_norm(StudentMLP(3, 171, 16)).norm.fitted.item() is False


def test_distilling_a_data_normalised_teacher_gives_a_normalised_student():
    x = _states(scale=(30, 300, 3))
    teacher = QNetwork(3, 171, (32, 32))
    teacher.norm.fit(x)
    res = distill(teacher, x, DistillConfig(rounds=20, hidden=16, progress=False))
    assert bool(res.student.norm.fitted)
    plain = distill(QNetwork(3, 171, (32, 32)), x, DistillConfig(rounds=20, progress=False))
    assert not bool(plain.student.norm.fitted)


def test_worker_setting_reaches_the_agent():
    agent = new_agent(WorkerSettings(agent="factored-ddqn", state_norm="data"), seed=0)
    assert agent.cfg.state_norm == "data"
    with pytest.raises(ValueError, match="gan-ddqn"):
        WorkerSettings(agent="gan-ddqn", state_norm="data")
