"""``experiment explore-cost``: exploration's cost measured on the same traffic, by radius."""

import json

import numpy as np
import pytest

from slicetwin.experiments.explore_cost import ExploreCostConfig, ExploringPolicy, run_explore_cost
from slicetwin.sim.baselines import DemandProportionalPolicy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator


def test_exploring_policy_departs_from_the_served_split_within_its_radius():
    cfg = SimConfig.from_profile("diurnal")
    sim = RanSimulator(cfg, n_cells=8, seed=1)
    state = sim.reset()
    base = DemandProportionalPolicy(cfg)
    pol = ExploringPolicy(base, epsilon=1.0, radius=4, seed=0)
    for _ in range(10):
        served = base.act(sim, state)
        got = pol.act(sim, state)
        moved = sim.codec.decode(got) - sim.codec.decode(served)
        assert (moved.sum(1) == 0).all() and (np.abs(moved).sum(1) // 2 <= 4).all()
        assert (got != served).any()
        state, _ = sim.step_actions(got)
    assert pol.explored == 80


def test_quick_run_bounded_exploration_costs_far_less_than_uniform(tmp_path):
    res = run_explore_cost(ExploreCostConfig.quick(), tmp_path, progress=False)
    assert {p.name for p in tmp_path.iterdir()} == {
        "summary.json", "explore_cost.md", "explore_cost.csv", "explore_cost.png"}
    assert json.loads((tmp_path / "summary.json").read_text()) == res
    uniform, local = res["by_radius"]["0"], res["by_radius"]["3"]
    # a uniform draw often starves a slice; three units between two slices barely matter
    assert uniform["given_up_per_explored"]["mean"] > 0.3
    assert abs(local["given_up_per_explored"]["mean"]) < 0.05
    c = res["config"]
    for v in (uniform, local):
        per_window = v["given_up_per_window"]["mean"]
        per_dec = v["given_up_per_explored"]["mean"]
        assert per_dec * v["explored_decisions"] / len(res["seeds"]) == pytest.approx(
            per_window * c["windows"] * c["cells"], rel=0.02, abs=1e-3)
    assert res["seeds"] == [10000, 10001]


@pytest.mark.parametrize("kw, msg", [({"seed_role": "train"}, "seed_role"),
                                     ({"radii": (-1,)}, "radii"), ({"epsilon": 0.0}, "epsilon")])
def test_config_refuses_bad_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ExploreCostConfig(**kw)
