"""Distillation reaches a known teacher policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from slicetwin.core.actions import ActionCodec
from trainer.distill import DistillConfig, distill, pool_states
from trainer.export_onnx import compare_with_torch, export_policy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RegionTeacher(nn.Module):
    """Known policy: 6 allocations, chosen by the most loaded slice and the total load."""

    ALLOCS = [[14, 3, 3], [3, 14, 3], [3, 3, 14], [8, 6, 6], [6, 8, 6], [6, 6, 8]]

    def __init__(self, codec: ActionCodec):
        super().__init__()
        self.n_actions = codec.n_actions
        self.register_buffer("acts", torch.as_tensor(codec.encode(np.array(self.ALLOCS))))

    def policy(self, x: torch.Tensor) -> torch.Tensor:
        return self.acts[x.argmax(1) + 3 * (x.sum(1) > 1.5).long()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.zeros(len(x), self.n_actions)
        q[torch.arange(len(x)), self.policy(x)] = 1.0
        return q + 0.01 * x.sum(1, keepdim=True)  # a state-dependent offset the argmax ignores


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_distillation_reaches_known_policy(mode, tmp_path):
    codec = ActionCodec(n_units=20)
    teacher = RegionTeacher(codec)
    states = np.random.default_rng(0).random((20_000, 3), dtype=np.float32)
    res = distill(teacher, states, DistillConfig(hidden=16, rounds=6000, mode=mode, seed=1))
    assert res.agreement >= 0.99, res.history
    # Agreement on fresh states, through the exported ONNX file, not just the holdout.
    fresh = torch.from_numpy(np.random.default_rng(5).random((5000, 3), dtype=np.float32))
    path = export_policy(res.student, tmp_path / "s.onnx", n_units=20)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_actions = sess.run(None, {"state": fresh.numpy()})[0].argmax(1)
    assert np.mean(onnx_actions == teacher.policy(fresh).numpy()) >= 0.985
    assert compare_with_torch(res.student, path)["argmax_agreement"] == 1.0


def test_untrained_student_does_not_agree():
    """The agreement measure can fail: a zero-round student is far from the teacher."""
    codec = ActionCodec(n_units=20)
    states = np.random.default_rng(0).random((2000, 3), dtype=np.float32)
    res = distill(RegionTeacher(codec), states, DistillConfig(rounds=1, lr=1e-6, lr_final=1e-6))
    assert res.agreement < 0.5
    assert res.q_regret > 0.3


def test_a_warm_started_student_continues_from_its_init_and_leaves_it_alone():
    """A refresh (``init``) starts from the served student: with a negligible step it keeps
    that student's agreement, and a few rounds from a good student beat as many from scratch."""
    codec = ActionCodec(n_units=20)
    teacher = RegionTeacher(codec)
    states = np.random.default_rng(0).random((5000, 3), dtype=np.float32)
    good = distill(teacher, states, DistillConfig(rounds=800, seed=1))
    before = [p.detach().clone() for p in good.student.parameters()]
    still = distill(teacher, states, DistillConfig(rounds=1, lr=1e-9, lr_final=1e-9, seed=1),
                    init=good.student)
    assert still.agreement == pytest.approx(good.agreement, abs=0.005)  # same holdout (seed)
    assert all(torch.equal(a, b) for a, b in zip(before, good.student.parameters(), strict=True))
    cold = distill(teacher, states, DistillConfig(rounds=50, seed=2))
    warm = distill(teacher, states, DistillConfig(rounds=50, seed=2), init=good.student)
    assert warm.agreement > cold.agreement + 0.2


def test_bad_inputs():
    codec = ActionCodec(n_units=20)
    with pytest.raises(ValueError, match="mode"):
        distill(RegionTeacher(codec), np.zeros((10, 3), np.float32), DistillConfig(mode="x"))
    with pytest.raises(ValueError, match="states"):
        distill(RegionTeacher(codec), np.zeros(3, np.float32))


def test_pool_states_deduplicates():
    from slicetwin.core.transitions import Transitions

    t = Transitions.empty()
    s = np.array([[1, 2, 3], [1, 2, 3]], np.float32)
    t = Transitions(s, np.zeros(2, np.int64), np.zeros(2, np.float32), np.zeros(2, np.float32),
                    s + 1, np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32),
                    np.zeros(2, np.float32), np.zeros(2, np.int64), np.arange(2))
    assert pool_states(t).shape == (2, 3)
    assert pool_states(t, include_next=False).shape == (1, 3)
