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
                                  eval_steps=30, curve_points=3)
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
    # the protocol: pair i trains on seed i and is measured on report seed 10000 + i; mean, CI
    # and per-seed values; the paired DT-minus-no-DT difference per width
    assert {(int(r["seed"]), int(r["report_seed"])) for r in rows} == {(0, 10_000), (1, 10_001)}
    assert g16["student_utility"]["ci95"] is not None
    assert len(g16["student_utility"]["per_seed"]) == 2
    assert summary["protocol"]["report_seeds"] == [10_000, 10_001]
    d = summary["dt_minus_no_dt"]["w16"]["teacher_utility"]
    assert d["n"] == 2 and d["mean"] > 0  # the noiseless teacher is the better one


def test_distill_experiment_refuses_report_seeds_for_training():
    from slicetwin.core.protocol import SeedRangeError

    with pytest.raises(SeedRangeError, match="train seeds"):
        DistillExperimentConfig(first_seed=10_000)
    with pytest.raises(SeedRangeError, match="report seeds"):
        DistillExperimentConfig(first_report_seed=0)
    assert DistillExperimentConfig(first_seed=1000, seeds=2).train_seeds == [1000, 1001]


def test_yardstick_references_match_the_traffic_or_are_none(tmp_path):
    from slicetwin.experiments.distill import against_references, yardstick_references

    pol = {"best_fixed_hindsight": [2.0, 2.2, 2.1], "planner": [2.1, 2.3, 2.2],
           "oracle": [2.2, 2.4, 2.3]}
    (tmp_path / "summary.json").write_text(json.dumps({"profiles": {"paper": {
        "config": {"first_report_seed": 10_000, "report_seeds": 3, "windows": 150, "cells": 4},
        "policies": {k: {"per_seed": v} for k, v in pol.items()}}}}))
    refs = yardstick_references(tmp_path, "paper", [10_001, 10_002], 150, 4)
    assert refs == {k: v[1:] for k, v in pol.items()}
    assert yardstick_references(tmp_path, "paper", [10_003], 150, 4) is None  # not measured
    assert yardstick_references(tmp_path, "paper", [10_000], 100, 4) is None  # other windows
    assert yardstick_references(tmp_path, "diurnal", [10_000], 150, 4) is None
    out = against_references([2.3, 2.0], refs)
    assert out["ratio_to_best_fixed_hindsight"] == 1.0 and out["ratio_to_oracle"] == 0.9149
    assert out["paired_diff_vs_best_fixed_hindsight"]["wins"] == 1
    assert against_references([2.2], None) == {}


@pytest.mark.slow
def test_distill_experiment_on_simulator_with_real_teachers(tmp_path):
    """Both teacher kinds trained by Algorithm 1 / plain DDQN on the simulator (minutes)."""
    cfg = DistillExperimentConfig(seeds=1, widths=(16,), rounds=600, teacher_interactions=800,
                                  teacher_hidden=(32, 32), eval_steps=10,
                                  curve_points=2)
    summary = run(tmp_path, cfg, progress=False)
    for kind in ("dt", "no-dt"):
        g = summary["groups"][f"{kind}/w16"]
        assert 0.0 <= g["agreement"]["mean"] <= 1.0
        assert np.isfinite(g["student_utility"]["mean"])
    assert len(list((tmp_path / "models").glob("*.onnx"))) == 2
