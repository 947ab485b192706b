"""The distillation experiment end to end on a known problem (fast); the simulator run is slow."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from slicetwin.experiments.distill import (
    DistillExperimentConfig,
    ToyAllocationEnv,
    TrainedAgent,
    evaluate_policy,
    greedy,
    random_act,
    run,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class OracleQ(nn.Module):
    """Teacher that knows the toy problem: Q(s, a) = utility(s, a)."""

    def __init__(self, env: ToyAllocationEnv, noise: float = 0.0):
        super().__init__()
        self.register_buffer("frac", torch.tensor(env.frac, dtype=torch.float32))
        self.noise = noise

    def forward(self, x):
        w = x / x.sum(1, keepdim=True)
        q = 3.0 - 4.0 * (self.frac[None] - w[:, None]).abs().sum(-1)
        if self.noise:
            g = torch.Generator().manual_seed(0)
            q = q + self.noise * torch.randn(q.shape[1], generator=g)  # a fixed bias per action
        return q


def test_toy_env_oracle_beats_random():
    make = lambda seed: ToyAllocationEnv(n=8, seed=seed)  # noqa: E731
    env = make(0)
    best = evaluate_policy(lambda s: env.best_actions(s), make, 50)
    rnd = evaluate_policy(random_act(env.n_actions), make, 50)
    assert best > rnd + 1.0
    assert evaluate_policy(greedy(OracleQ(env)), make, 50) == pytest.approx(best)


def test_distill_experiment_writes_outputs_and_students_track_teachers(tmp_path):
    make = lambda seed: ToyAllocationEnv(n=8, seed=seed)  # noqa: E731
    env = make(0)
    rng = np.random.default_rng(0)

    def teacher_fn(kind, seed):
        q = OracleQ(env, noise=0.0 if kind == "dt" else 0.3)
        states = (0.05 + rng.random((6000, 3))).astype(np.float32)
        return TrainedAgent(q, states)

    cfg = DistillExperimentConfig(seeds=2, widths=(4, 16), rounds=1500, n_units=20,
                                  eval_steps=30, eval_seeds=(5,), curve_points=3)
    summary = run(tmp_path, cfg, teacher_fn=teacher_fn, env_factory=make, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "distill.csv")))
    assert len(rows) == 2 * 2 * 2
    assert (tmp_path / "distill.png").stat().st_size > 5000
    assert len(list((tmp_path / "models").glob("*.onnx"))) == 8
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    g16 = summary["groups"]["dt/w16"]
    assert g16["utility_ratio"]["mean"] >= 0.97
    assert g16["student_utility"]["mean"] > g16["random_utility"]["mean"] + 1.0
    curves = list(csv.DictReader(open(tmp_path / "distill_curves.csv")))
    assert {int(c["round"]) for c in curves} == {500, 1000, 1500}


@pytest.mark.slow
def test_distill_experiment_on_simulator_with_real_teachers(tmp_path):
    """Both teacher kinds trained by Algorithm 1 / plain DDQN on the simulator (minutes)."""
    cfg = DistillExperimentConfig(seeds=1, widths=(16,), rounds=600, teacher_interactions=800,
                                  teacher_hidden=(32, 32), eval_steps=10, eval_seeds=(3,),
                                  curve_points=2)
    summary = run(tmp_path, cfg, progress=False)
    for kind in ("dt", "no-dt"):
        g = summary["groups"][f"{kind}/w16"]
        assert 0.0 <= g["agreement"]["mean"] <= 1.0
        assert np.isfinite(g["student_utility"]["mean"])
    assert len(list((tmp_path / "models").glob("*.onnx"))) == 2
