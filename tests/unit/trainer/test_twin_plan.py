"""Planning with the learned twin (``trainer.twin_plan``) and the warm-started table fit."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from slicetwin.core.actions import ActionCodec
from slicetwin.sim.search import best_split, unit_values
from slicetwin.twin import Twin, TwinConfig
from slicetwin.twin.history import history_index
from slicetwin.twin.nets import EnsembleLinear
from slicetwin.twin.rating import rate_actions
from trainer.collect import collect_transitions
from trainer.plan_distill import PlanDistillConfig, fit_student
from trainer.twin_plan import (
    TwinPlanConfig,
    plan_rows,
    separable_tables,
    table_projection,
    twin_utilities,
)

CODEC = ActionCodec(n_units=100, min_units=1)
SMALL = ActionCodec(n_units=12, min_units=1)


def _expand(tables: np.ndarray, codec: ActionCodec) -> np.ndarray:
    u = codec.table - unit_values(codec)[0]
    return sum(tables[:, u[:, n], n] for n in range(3))


def test_projection_keeps_separable_utilities_and_their_best_split():
    rng = np.random.default_rng(0)
    tables = rng.normal(size=(5, len(unit_values(CODEC)), 3))
    u = _expand(tables, CODEC)
    proj = separable_tables(u, CODEC)
    np.testing.assert_allclose(_expand(proj.astype(np.float64), CODEC), u, atol=1e-4)
    np.testing.assert_array_equal(best_split(proj, CODEC)[0], u.argmax(1))


def test_projection_is_the_least_squares_separable_fit():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(3, SMALL.n_actions))  # not separable
    proj = separable_tables(u, SMALL).astype(np.float64)
    resid = u - _expand(proj, SMALL)
    # least squares: the residual is orthogonal to every separable direction
    e = np.linalg.pinv(table_projection(SMALL))
    np.testing.assert_allclose(resid @ e, 0, atol=1e-4)
    assert np.abs(resid).max() > 1e-2  # and a non-separable input is not reproduced


def test_plan_rows_takes_the_newest_share_and_a_random_rest():
    rng = np.random.default_rng(0)
    cfg = TwinPlanConfig(plan_rows=10, newest=0.5)
    np.testing.assert_array_equal(plan_rows(7, cfg, rng), np.arange(7))
    rows = plan_rows(100, cfg, rng)
    assert len(set(rows)) == 10 and set(range(95, 100)) <= set(rows)
    with pytest.raises(ValueError):
        TwinPlanConfig(newest=1.5)


@pytest.mark.parametrize("reward_source", ["kpi", "direct"])
def test_twin_utilities_equal_single_predictions_with_the_rows_history(reward_source):
    data = collect_transitions(12, n_cells=2, seed=3)
    twin = Twin(TwinConfig(seed=0, epochs=2, ensemble=2, lstm_hidden=8, head_hidden=8,
                           reward_hidden=(16, 16), reward_source=reward_source))
    twin.fit(data)
    rows = np.array([0, 5, 17])
    u = twin_utilities(twin, data, rows, chunk=2)
    assert u.shape == (3, twin.n_actions)
    # row 17's own history: the rows of its cell in the windows before it
    r = 17
    same = np.flatnonzero((data.cell == data.cell[r]) & (data.window <= data.window[r]))
    hist = same[np.argsort(data.window[same])][-twin.history_len:]
    for a in (0, 7, twin.n_actions - 1):
        acts = np.append(data.action[hist[:-1]], a)[None]
        one = twin.predict(data.state[hist][None], acts, sample=False)["utility"][0]
        assert u[2, a] == pytest.approx(one, abs=1e-5)
    assert np.ptp(u[2]) > 0  # the twin tells splits apart


def test_fit_student_continues_from_init_without_touching_it():
    rng = np.random.default_rng(0)
    x = rng.random((200, 3)).astype(np.float32) * 3
    tables = rng.normal(size=(200, len(unit_values(CODEC)), 3)).astype(np.float32)
    cfg = PlanDistillConfig(steps=30, holdout=0.0)
    first, _, _ = fit_student(x, tables, CODEC, cfg)
    before = {k: v.clone() for k, v in first.state_dict().items()}
    second, _, _ = fit_student(x * 10, tables, CODEC, cfg, init=first)
    for k, v in first.state_dict().items():
        assert torch.equal(v, before[k]), k  # init untouched
    # the normaliser of the first fit is kept (inputs 10x larger would change a fresh one)
    assert torch.equal(second.norm.mean, first.norm.mean)
    assert not torch.equal(second.head.weight, first.head.weight)


def test_sampled_futures_are_seeded_and_average_the_twin_s_draws():
    data = collect_transitions(10, n_cells=2, seed=4)
    twin = Twin(TwinConfig(seed=0, epochs=2, ensemble=2, lstm_hidden=8, head_hidden=8,
                           reward_hidden=(16, 16)))
    twin.fit(data)
    rows = np.array([3, 11])
    a = twin_utilities(twin, data, rows, futures=3, seed=5)
    np.testing.assert_array_equal(a, twin_utilities(twin, data, rows, futures=3, seed=5))
    # the draws do not depend on how the mean path batches its states
    np.testing.assert_array_equal(a, twin_utilities(twin, data, rows, futures=3, seed=5, chunk=1))
    assert not np.array_equal(a, twin_utilities(twin, data, rows, futures=3, seed=6))
    one = [twin_utilities(twin, data, rows, futures=1, seed=5)]
    assert not np.allclose(a, one[0])  # three draws, not one
    assert not np.allclose(a, twin_utilities(twin, data, rows))  # not the mean prediction


def _small_twin(seed: int = 0, ensemble: int = 3):
    data = collect_transitions(12, n_cells=2, seed=seed)
    twin = Twin(TwinConfig(seed=0, epochs=2, ensemble=ensemble, lstm_hidden=8, head_hidden=8,
                           reward_hidden=(16, 16)))
    twin.fit(data)
    return data, twin


def _one_member(twin: Twin, k: int) -> Twin:
    """A copy of ``twin`` keeping only ensemble member k."""
    one = copy.deepcopy(twin)
    one.config.ensemble = 1
    for net in (one.transition, one.reward_net):
        for mod in net.modules():
            if isinstance(mod, EnsembleLinear):
                mod.weight = nn.Parameter(mod.weight[k:k + 1].clone())
                mod.bias = nn.Parameter(mod.bias[k:k + 1].clone())
    one.transition.lstm.members = nn.ModuleList([one.transition.lstm.members[k]])
    return one


def test_member_ratings_are_each_member_s_own_prediction():
    data, twin = _small_twin(seed=5)
    rows = np.array([2, 9, 20])
    idx = history_index(data, twin.history_len, rows)
    st, past = data.state[idx], data.action[idx[:, :-1]]
    acts = np.arange(twin.n_actions)
    members = rate_actions(twin, st, past, acts, members=True)
    assert members.shape == (3, 3, twin.n_actions)
    for k in range(3):
        alone = _one_member(twin, k)
        np.testing.assert_allclose(members[k], rate_actions(alone, st, past, acts), atol=1e-5)
        # and that single-member twin's rating is its plain prediction
        a = np.array([0, 40, twin.n_actions - 1])
        plain = alone.predict(st[:1].repeat(3, 0), np.concatenate(
            [past[:1].repeat(3, 0), a[:, None]], 1), sample=False)["utility"]
        np.testing.assert_allclose(members[k][0, a], plain, atol=1e-5)
    assert members.std(0).mean() > 1e-3  # the members disagree


def test_pessimism_rates_members_mean_less_kappa_spread():
    data, twin = _small_twin(seed=6)
    rows = np.array([4, 15])
    idx = history_index(data, twin.history_len, rows)
    m = rate_actions(twin, data.state[idx], data.action[idx[:, :-1]],
                     np.arange(twin.n_actions), members=True)
    for kappa in (0.0, 1.5):
        np.testing.assert_allclose(twin_utilities(twin, data, rows, pessimism=kappa),
                                   m.mean(0) - kappa * m.std(0), atol=1e-5)
    assert not np.allclose(twin_utilities(twin, data, rows, pessimism=0.0),
                           twin_utilities(twin, data, rows))  # not the ensemble-mean rating
    with pytest.raises(ValueError, match="pessimism"):
        twin_utilities(twin, data, rows, pessimism=-1.0)
    with pytest.raises(ValueError, match="pessimism"):
        twin_utilities(twin, data, rows, pessimism=1.0, futures=2)
    with pytest.raises(ValueError, match="past"):
        rate_actions(twin, data.state[idx][:, 1:], data.action[idx[:, :-1]], np.arange(5))


def test_bench_twin_plan_prints_one_json_line_with_equal_ratings():
    r = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "bench", "twin-plan",
                        "--states", "3", "--repeats", "1"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["bench"] == "twin_plan" and line["states"] == 3
    assert line["max_abs_diff"] < 1e-5
    assert line["plain_ms_per_state"] > 0 and line["shared_ms_per_state"] > 0
