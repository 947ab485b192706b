"""The landscape experiment end to end on the toy problem."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from slicetwin.experiments.distill import ToyAllocationEnv, TrainedAgent
from slicetwin.experiments.landscape import LandscapeExperimentConfig, run
from trainer.nets import QNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_landscape_experiment_outputs(tmp_path):
    def agent_fn(kind, seed):
        torch.manual_seed(seed + (0 if kind == "dt" else 100))
        return TrainedAgent(QNetwork(3, 171, (16, 16)), states=None)

    cfg = LandscapeExperimentConfig(seeds=2, holdout=256, points=11, hessian_iters=10,
                                    n_units=20, hidden=(16, 16))
    summary = run(tmp_path, cfg, agent_fn=agent_fn,
                  env_factory=lambda s: ToyAllocationEnv(n=8, seed=s), progress=False)
    sharp = list(csv.DictReader(open(tmp_path / "sharpness.csv")))
    pts = list(csv.DictReader(open(tmp_path / "landscape.csv")))
    assert len(sharp) == 4 and len(pts) == 4 * 2 * 11
    for r in sharp:
        at0 = [float(p["loss"]) for p in pts if p["kind"] == r["kind"] and p["seed"] == r["seed"]
               and float(p["lambda"]) == 0.0]
        assert len(at0) == 2
        assert at0 == pytest.approx([float(r["loss"])] * 2, rel=1e-6)
        assert float(r["hessian_top_eig"]) > 0
        assert float(r["grad_max_rise"]) > 0
    for name in ("landscape_gradient.png", "landscape_random.png", "models/dt-s0.png"):
        assert (tmp_path / name).stat().st_size > 5000
    assert set(json.loads((tmp_path / "summary.json").read_text())["kinds"]) == {"dt", "no-dt"}
    assert summary["kinds"]["dt"]["loss"]["n"] == 2
