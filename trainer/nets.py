"""Neural network definitions shared by the trainer (and exported to ONNX for the controller).

Imports torch: never import this module from the controller's request path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

PAPER_HIDDEN: tuple[int, ...] = (256, 256, 128, 128)


class StateNorm(nn.Module):
    """x -> (x - mean) / std, fitted once from the states a network first trains on.

    Why: the controller's state is arrivals over fixed per-slice scales (``slicetwin.core.state``)
    that suit our simulator's traffic; a gNB with ten times the users feeds inputs near 10. A
    network that standardises with statistics of the data it saw learns the same way on either.
    Identity until ``fit``; exported policies carry it folded into their first layer
    (``trainer.export_onnx``), so the controller's input and latency do not change.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, states: np.ndarray | torch.Tensor) -> None:
        s = torch.as_tensor(np.asarray(states, np.float32)).reshape(-1, self.mean.shape[0])
        if len(s) < 2:
            raise ValueError("need at least 2 states to fit a state normalisation")
        self.mean.copy_(s.mean(0))
        # a floor keeps a feature that hardly moved (a slice with no traffic yet) from exploding
        self.inv_std.copy_(1.0 / s.std(0).clamp_min(1e-2))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.inv_std

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the normalisation existed load as the identity
        for k, v in (("mean", self.mean), ("inv_std", self.inv_std), ("fitted", self.fitted)):
            state_dict.setdefault(prefix + k, v.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    if out_dim is not None:
        layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """Q(s, .) over all actions; optional dueling head Q = V + A - mean(A)."""

    def __init__(self, state_dim: int, n_actions: int, hidden: Sequence[int] = PAPER_HIDDEN,
                 dueling: bool = False):
        super().__init__()
        self.state_dim, self.n_actions, self.dueling = state_dim, n_actions, dueling
        self.hidden = tuple(hidden)
        self.norm = StateNorm(state_dim)
        self.body = mlp(state_dim, hidden[:-1]) if dueling else mlp(state_dim, hidden)
        last_in = hidden[-2] if dueling and len(hidden) > 1 else (state_dim if dueling else hidden[-1])
        if dueling:
            self.value = nn.Sequential(nn.Linear(last_in, hidden[-1]), nn.ReLU(), nn.Linear(hidden[-1], 1))
            self.advantage = nn.Sequential(nn.Linear(last_in, hidden[-1]), nn.ReLU(),
                                           nn.Linear(hidden[-1], n_actions))
        else:
            self.head = nn.Linear(hidden[-1], n_actions)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        z = self.body(self.norm(state))
        if not self.dueling:
            return self.head(z)
        a = self.advantage(z)
        return self.value(z) + a - a.mean(dim=-1, keepdim=True)


class StudentMLP(nn.Module):
    """Distilled policy: 2 hidden layers of 4 or 16 units -> logits over all actions."""

    def __init__(self, state_dim: int, n_actions: int, hidden: int = 16):
        super().__init__()
        self.state_dim, self.n_actions, self.hidden = state_dim, n_actions, hidden
        self.norm = StateNorm(state_dim)
        self.net = mlp(state_dim, (hidden, hidden), n_actions)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(state))


class FactoredQNetwork(nn.Module):
    """Q(s, a) = sum_n T_n(s, u_n(a)): one value table per slice over its unit count.

    Why: a window's utility is separable by slice (``slicetwin.sim.search``), and with the next
    state (arrivals) independent of the action, so is Q up to a per-state constant. A sample of
    one split then teaches three table entries that every split sharing a slice's units reuses,
    instead of one of 4,851 independent outputs. Each table is non-decreasing in the units (more
    resource blocks never hurt a slice): a base level plus cumulated softplus increments.
    ``forward`` returns Q over all actions, so distillation and ONNX export are unchanged.
    """

    def __init__(self, state_dim: int, action_units: np.ndarray,
                 hidden: Sequence[int] = PAPER_HIDDEN):
        super().__init__()
        units = np.asarray(action_units, np.int64)
        self.state_dim, self.n_actions = state_dim, int(units.shape[0])
        self.n_slices = int(units.shape[1])
        self.dueling, self.hidden = False, tuple(hidden)
        self.v_min = int(units.min())
        self.n_values = int(units.max()) - self.v_min + 1
        self.register_buffer("unit_index", torch.as_tensor(units - self.v_min))
        self.norm = StateNorm(state_dim)
        self.body = mlp(state_dim, hidden)
        self.head = nn.Linear(hidden[-1], self.n_slices * self.n_values)

    def tables(self, state: torch.Tensor) -> torch.Tensor:
        """(B, n_slices, n_values) T_n(s, v), non-decreasing in v."""
        z = self.head(self.body(self.norm(state))).view(-1, self.n_slices, self.n_values)
        inc = F.softplus(z[..., 1:]) / self.n_values  # keeps the initial tables near flat
        return torch.cat([z[..., :1], z[..., :1] + inc.cumsum(-1)], -1)

    def taken(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for one action per row: three table entries, not the whole action space."""
        idx = self.unit_index[action].unsqueeze(-1)  # (B, n_slices, 1)
        return self.tables(state).gather(2, idx).squeeze(-1).sum(-1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        t = self.tables(state)
        return sum(t[:, n, self.unit_index[:, n]] for n in range(self.n_slices))
