"""Loss landscape (eq. 11), filter-normalised directions and the Hessian power iteration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainer.landscape import (
    filter_normalised_direction,
    gradient_direction,
    hessian_top_eigenvalue,
    loss_curve,
    loss_surface,
    plot_curves,
    sharpness,
    td_loss_fn,
)
from trainer.nets import QNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _setup(seed=0):
    torch.manual_seed(seed)
    q, qt = QNetwork(3, 12, hidden=(16, 16)), QNetwork(3, 12, hidden=(16, 16))
    rng = np.random.default_rng(seed)
    n = 256
    data = (rng.random((n, 3), dtype=np.float32), rng.integers(0, 12, n),
            rng.random(n, dtype=np.float32), rng.random((n, 3), dtype=np.float32))
    return q, td_loss_fn(q, qt, *data, gamma=0.8)


def test_lambda_zero_equals_model_loss_and_params_restored():
    q, loss_fn = _setup()
    before = [p.detach().clone() for p in q.parameters()]
    base = float(loss_fn(q).detach())
    lambdas = np.linspace(-1, 1, 11)
    for d in (gradient_direction(q, loss_fn), filter_normalised_direction(q, seed=1)):
        curve = loss_curve(q, loss_fn, d, lambdas)
        assert curve[5] == pytest.approx(base, rel=1e-6)
        assert not np.allclose(curve, base)  # the perturbation does change the loss
    for p, b in zip(q.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)


def test_gradient_direction_is_unit_and_descends():
    q, loss_fn = _setup()
    d = gradient_direction(q, loss_fn)
    assert float(torch.sqrt(sum((x ** 2).sum() for x in d))) == pytest.approx(1.0, rel=1e-5)
    small = loss_curve(q, loss_fn, d, [-1e-3, 0.0, 1e-3])
    assert small[0] < small[1] < small[2]  # loss rises along +grad, falls along -grad


def test_filter_normalisation_matches_row_norms():
    q, _ = _setup()
    d = filter_normalised_direction(q, seed=3)
    for p, x in zip(q.parameters(), d, strict=True):
        if p.dim() == 1:
            assert float(x.abs().max()) == 0.0
        else:
            torch.testing.assert_close(x.norm(dim=1), p.detach().norm(dim=1), rtol=1e-4, atol=1e-6)


def test_hessian_top_eigenvalue_on_known_quadratic():
    # L(w) = 0.5 w^T A w with A = diag(5, 2, -1, 0.5): top (largest magnitude) eigenvalue is 5.
    class Quad(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5, 3.0]))

    a = torch.tensor([5.0, 2.0, -1.0, 0.5])
    m = Quad()
    eig = hessian_top_eigenvalue(m, lambda mod: 0.5 * (a * mod.w ** 2).sum(), iters=200)
    assert eig == pytest.approx(5.0, rel=1e-3)


def test_hessian_on_network_is_consistent_with_curvature():
    q, loss_fn = _setup()
    eig = hessian_top_eigenvalue(q, loss_fn, iters=50)
    assert eig > 0
    # The second difference along any unit direction cannot exceed the top eigenvalue by much.
    d = filter_normalised_direction(q, seed=0)
    norm = torch.sqrt(sum((x ** 2).sum() for x in d))
    d = [x / norm for x in d]
    h = 1e-2
    lm, l0, lp = loss_curve(q, loss_fn, d, [-h, 0.0, h])
    assert (lp - 2 * l0 + lm) / h ** 2 <= eig * 1.05


def test_sharpness_and_surface_and_plot(tmp_path):
    lam = np.linspace(-1, 1, 21)
    s = sharpness(lam, 1 + 3 * lam ** 2)
    assert s["loss_at_0"] == pytest.approx(1.0)
    assert s["curvature"] == pytest.approx(6.0, rel=1e-6)
    assert s["max_rise"] == pytest.approx(3.0)
    q, loss_fn = _setup()
    d1, d2 = filter_normalised_direction(q, 1), filter_normalised_direction(q, 2)
    grid = loss_surface(q, loss_fn, d1, d2, np.array([-0.5, 0, 0.5]), np.array([-0.5, 0, 0.5]))
    assert grid[1, 1] == pytest.approx(float(loss_fn(q).detach()), rel=1e-6)
    plot_curves({"a": (lam, 1 + lam ** 2), "b": (lam, np.stack([1 + lam ** 2, 2 + lam ** 2]))},
                tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
