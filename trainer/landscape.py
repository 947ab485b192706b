"""Loss landscapes and sharpness of trained agents (paper eq. 11; Li et al. 2018).

Paper eq. 11: L(theta + lambda * d) with d = grad L(theta) / ||grad L(theta)||, lambda over a
symmetric range, L the agent's TD loss on B held-out transitions. A flat curve around lambda = 0
means small parameter errors change the loss little (the paper's argument for twin training).
The gradient direction is the steepest one, so it measures the worst case along one line; the
filter-normalised random direction of Li et al. (each output neuron's direction rescaled to that
neuron's weight norm, biases left fixed) makes curves of different networks comparable because it
removes the scale invariance of ReLU layers. The Hessian's top eigenvalue (power iteration on
Hessian-vector products) gives one sharpness number per model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

LossFn = Callable[[nn.Module], torch.Tensor]


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def td_loss_fn(q: nn.Module, q_target: nn.Module, state: np.ndarray, action: np.ndarray,
               reward: np.ndarray, next_state: np.ndarray, gamma: float = 0.8,
               double: bool = True) -> LossFn:
    """MSE TD loss of a Q-network on fixed transitions, with bootstrap targets computed now.

    The targets come from the *unperturbed* networks, so moving along a direction changes only
    the prediction side: the landscape of the regression problem the agent was solving.
    """
    s = torch.as_tensor(np.asarray(state, np.float32))
    a = torch.as_tensor(np.asarray(action, np.int64))
    r = torch.as_tensor(np.asarray(reward, np.float32))
    s2 = torch.as_tensor(np.asarray(next_state, np.float32))
    with torch.no_grad():
        qt = q_target(s2)
        v = qt.gather(1, q(s2).argmax(1, keepdim=True))[:, 0] if double else qt.max(1).values
        y = r + gamma * v

    def loss(model: nn.Module) -> torch.Tensor:
        pred = model(s).gather(1, a[:, None])[:, 0]
        return torch.mean((pred - y) ** 2)

    return loss


def gradient_direction(model: nn.Module, loss_fn: LossFn) -> list[torch.Tensor]:
    """d = grad / ||grad|| over all parameters (eq. 11)."""
    model.zero_grad(set_to_none=True)
    grads = torch.autograd.grad(loss_fn(model), _params(model))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    if float(norm) == 0.0:
        raise ValueError("zero gradient: the loss is flat at theta, no gradient direction")
    return [g.detach() / norm for g in grads]


def filter_normalised_direction(model: nn.Module, seed: int = 0) -> list[torch.Tensor]:
    """Li et al. 2018: Gaussian direction, each filter (row of a weight matrix) rescaled to the
    norm of the same row of theta; 1-D parameters (biases) get a zero direction."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for p in _params(model):
        d = torch.randn(p.shape, generator=gen)
        if p.dim() <= 1:
            d.zero_()
        else:
            rows_p = p.detach().reshape(p.shape[0], -1).norm(dim=1, keepdim=True)
            rows_d = d.reshape(p.shape[0], -1).norm(dim=1, keepdim=True)
            d = (d.reshape(p.shape[0], -1) * rows_p / (rows_d + 1e-10)).reshape(p.shape)
        out.append(d)
    return out


@torch.no_grad()
def loss_curve(model: nn.Module, loss_fn: LossFn, direction: Sequence[torch.Tensor],
               lambdas: Sequence[float] | np.ndarray) -> np.ndarray:
    """L(theta + lambda * d) for each lambda; the model's parameters are restored afterwards."""
    params = _params(model)
    if len(direction) != len(params):
        raise ValueError("direction does not match the model's parameters")
    theta = [p.detach().clone() for p in params]
    out = np.empty(len(lambdas))
    try:
        for i, lam in enumerate(lambdas):
            for p, t, d in zip(params, theta, direction, strict=True):
                p.copy_(t + float(lam) * d)
            out[i] = float(loss_fn(model))
    finally:
        for p, t in zip(params, theta, strict=True):
            p.copy_(t)
    return out


@torch.no_grad()
def loss_surface(model: nn.Module, loss_fn: LossFn, d1: Sequence[torch.Tensor],
                 d2: Sequence[torch.Tensor], alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """L(theta + a d1 + b d2) on a grid (Li et al.'s 2-D contour plots); parameters restored."""
    params = _params(model)
    theta = [p.detach().clone() for p in params]
    out = np.empty((len(alphas), len(betas)))
    try:
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                for p, t, x, y in zip(params, theta, d1, d2, strict=True):
                    p.copy_(t + float(a) * x + float(b) * y)
                out[i, j] = float(loss_fn(model))
    finally:
        for p, t in zip(params, theta, strict=True):
            p.copy_(t)
    return out


def hessian_top_eigenvalue(model: nn.Module, loss_fn: LossFn, iters: int = 30, tol: float = 1e-4,
                           seed: int = 0) -> float:
    """Largest-magnitude eigenvalue of the Hessian of the loss, by power iteration on
    Hessian-vector products (double backward); no Hessian is ever materialised."""
    params = _params(model)
    gen = torch.Generator().manual_seed(seed)
    grads = torch.autograd.grad(loss_fn(model), params, create_graph=True)
    v = [torch.randn(p.shape, generator=gen) for p in params]
    norm = torch.sqrt(sum((x ** 2).sum() for x in v))
    v = [x / norm for x in v]
    eig = 0.0
    for _ in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new = float(sum((h * x).sum() for h, x in zip(hv, v, strict=True)))  # Rayleigh quotient
        norm = torch.sqrt(sum((h ** 2).sum() for h in hv))
        if float(norm) == 0.0:
            return 0.0
        v = [h.detach() / norm for h in hv]
        if abs(new - eig) <= tol * max(abs(new), 1e-12):
            return new
        eig = new
    return eig


def sharpness(lambdas: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    """Scalar summaries of a 1-D curve: loss at 0, worst rise within the range, mean rise, and
    the curvature at 0 from a quadratic fit on the central half of the range."""
    lambdas, losses = np.asarray(lambdas, float), np.asarray(losses, float)
    i0 = int(np.argmin(np.abs(lambdas)))
    base = float(losses[i0])
    half = np.abs(lambdas) <= np.abs(lambdas).max() / 2
    curv = float(2 * np.polyfit(lambdas[half], losses[half], 2)[0]) if half.sum() >= 3 else np.nan
    return {"loss_at_0": base, "max_rise": float(losses.max() - base),
            "mean_rise": float(losses.mean() - base), "curvature": curv}


def plot_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path, title: str = "",
                xlabel: str = "lambda") -> None:
    """One line per model (mean over seeds when the value holds a 2-D array of losses)."""
    import matplotlib  # lazy: matplotlib, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when plotting

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (lam, loss) in curves.items():
        loss = np.atleast_2d(loss)
        m = loss.mean(0)
        ax.plot(lam, m, label=name)
        if loss.shape[0] > 1:
            ax.fill_between(lam, loss.min(0), loss.max(0), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("TD loss on held-out transitions")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
