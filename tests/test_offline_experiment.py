"""The offline experiment end to end on the known toy problem, and theta_2 through a real twin."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from slicetwin.nets import QNetwork
from trainer.experiments.distill import ToyAllocationEnv, evaluate_policy, greedy
from trainer.experiments.offline import (
    OfflineExperimentConfig,
    collect_random,
    run,
    twin_trained_agent,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(seed):
    return ToyAllocationEnv(n=8, seed=seed)


def good_reference(hidden):
    """A theta_2 that knows the problem: Q regressed on the true utility of random states."""

    def fn(data, n_actions, seed):
        env = make(0)
        torch.manual_seed(seed)
        q = QNetwork(3, n_actions, hidden)
        opt = torch.optim.Adam(q.parameters(), lr=3e-3)
        rng = np.random.default_rng(seed)
        for _ in range(400):
            s = (0.05 + rng.random((128, 3))).astype(np.float32)
            y = np.stack([env.utility(s, np.full(128, a)) for a in range(n_actions)], 1)
            loss = ((q(torch.from_numpy(s)) - torch.from_numpy(y.astype(np.float32))) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return q.eval(), {"kind": "regression on the true utility"}

    return fn


def test_offline_experiment_twin_helps_on_small_dataset(tmp_path):
    cfg = OfflineExperimentConfig(seeds=2, dataset_rounds=2, epochs=20, hidden=(32, 32),
                                  prox_weight=0.05, n_units=20, eval_steps=30, eval_seeds=(7,),
                                  curve_points=2)
    summary = run(tmp_path, cfg, env_factory=make, reference_fn=good_reference((32, 32)),
                  progress=False)
    rows = list(csv.DictReader(open(tmp_path / "offline.csv")))
    assert {r["variant"] for r in rows} == {"offline", "offline+twin", "cql",
                                            "twin-agent (theta_2)", "behaviour (random)"}
    assert (tmp_path / "offline.png").stat().st_size > 5000
    u = summary["utility"]
    assert u["offline+twin"]["mean"] > u["offline"]["mean"]
    assert u["offline+twin"]["mean"] > u["behaviour (random)"]["mean"] + 1.0
    assert summary["twin_minus_no_twin"]["wins"] == 2


def test_twin_trained_reference_runs_through_a_real_twin():
    data = collect_random(make, 0, 800)
    assert len(data) == 800 and data.action.max() < 171
    cfg = OfflineExperimentConfig(hidden=(16, 16), n_units=20, twin_interactions=640,
                                  twin_config={"epochs": 2, "patience": 1, "max_fit_seconds": 10,
                                               "ensemble": 2, "lstm_hidden": 8, "head_hidden": 8,
                                               "reward_hidden": (16, 16)})
    q, info = twin_trained_agent(data, 171, cfg, seed=0)
    assert info["twin_transitions"] >= 640 and info["grad_steps"] > 0
    assert np.isfinite(evaluate_policy(greedy(q), make, 5))
