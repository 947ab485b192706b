"""The planner distilled into the served student (``trainer.plan_distill``)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from slicetwin.core.actions import ActionCodec
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.search import best_split, unit_values
from trainer.export_onnx import export_policy
from trainer.nets import StudentMLP
from trainer.plan_distill import (
    FactoredStudent,
    PlanDistillConfig,
    collect_planner_tables,
    fit_student,
)

CODEC = ActionCodec(n_units=100, min_units=1)


def random_student(seed: int = 0) -> FactoredStudent:
    torch.manual_seed(seed)
    m = FactoredStudent(CODEC, hidden=16)
    with torch.no_grad():
        m.head.weight.normal_(0, 1.0)
        m.head.bias.normal_(0, 1.0)
    return m


def test_the_folded_student_is_the_sum_of_the_tables_and_picks_their_best_split():
    m = random_student()
    x = torch.rand(64, 3) * 3
    with torch.no_grad():
        tables = m.tables(x).numpy()  # (B, n_values, 3)
        logits = m.to_student()(x).numpy()
    u = CODEC.table - unit_values(CODEC)[0]
    expect = sum(tables[:, u[:, n], n] for n in range(3))
    np.testing.assert_allclose(logits, expect, rtol=1e-4, atol=1e-4)
    best, _ = best_split(tables, CODEC)
    assert (logits.argmax(1) == best).mean() > 0.98  # float ties aside


def test_the_served_onnx_student_decides_as_the_tables(tmp_path):
    m = random_student(1)
    path = tmp_path / "s.onnx"
    export_policy(m.to_student(), path, n_units=100, version="t")
    x = (np.random.default_rng(0).random((32, 3)) * 3).astype(np.float32)
    with torch.no_grad():
        best, _ = best_split(m.tables(torch.as_tensor(x)).numpy(), CODEC)
    served = OnnxPolicy(path.read_bytes()).act_batch(x)
    assert (np.asarray(served) == best).mean() > 0.95
    # the graph of every other 16-unit student: same operators and weight shapes, same latency
    plain = tmp_path / "plain.onnx"
    export_policy(StudentMLP(3, CODEC.n_actions, 16), plain, n_units=100, version="p")

    def shape(f):
        g = onnx.load(str(f)).graph
        return [n.op_type for n in g.node], sorted(tuple(i.dims) for i in g.initializer)

    assert shape(path) == shape(plain)


def test_regression_recovers_the_best_split_of_the_expected_tables_from_noisy_labels():
    """Labels = a state-dependent separable table + unit noise (as large as the tables'
    spread); the student must pick nearly the best split of the noise-free table, E[f | state],
    losing < 10 % of what the best state-blind split loses."""
    rng = np.random.default_rng(0)
    v = unit_values(CODEC).astype(np.float64)
    states = rng.random((6000, 3)).astype(np.float32) * 2

    def truth(s):  # concave in the units, slice n weighted by its state
        return (0.2 + s[:, None, :] ** 2) * np.log1p(v[None, :, None] / 5.0)

    clean = truth(states)
    noisy = clean + rng.normal(0, 1.0, clean.shape)
    cfg = PlanDistillConfig(steps=3000, seed=0)
    model, train_mse, hold_mse = fit_student(states, noisy.astype(np.float32), CODEC, cfg)
    assert hold_mse == pytest.approx(1.0, abs=0.1)  # only the label noise is left
    test = rng.random((200, 3)).astype(np.float32) * 2
    with torch.no_grad():
        pred = model.tables(torch.as_tensor(test)).numpy()
    best_true, val_true = best_split(truth(test), CODEC)
    chosen = CODEC.table[best_split(pred, CODEC)[0]] - int(v[0])
    t = truth(test)
    val_chosen = sum(t[np.arange(len(test)), chosen[:, n], n] for n in range(3))
    regret = (val_true - val_chosen).mean()
    fixed = best_split(t.mean(0), CODEC)[0]  # the best split that ignores the state
    fu = CODEC.table[fixed] - int(v[0])
    fixed_regret = (val_true - sum(t[:, fu[n], n] for n in range(3))).mean()
    assert regret < 0.1 * fixed_regret


def test_labels_are_the_planners_tables_on_its_own_trajectory():
    cfg = PlanDistillConfig(cells=2, windows=5, futures=1)
    states, tables = collect_planner_tables(SimConfig.from_profile("diurnal"), cfg, seed=3)
    assert states.shape == (10, 3) and tables.shape == (10, len(unit_values(CODEC)), 3)
    assert np.all(np.isfinite(tables)) and np.all(np.diff(tables.mean(0), axis=0) >= -1e-6)
    again, _ = collect_planner_tables(SimConfig.from_profile("diurnal"), cfg, seed=3)
    np.testing.assert_array_equal(states, again)  # seeded: the same traffic and labels


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="windows"):
        PlanDistillConfig(windows=0)
    with pytest.raises(ValueError, match="holdout"):
        PlanDistillConfig(holdout=1.0)
