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
        self.body = mlp(state_dim, hidden[:-1]) if dueling else mlp(state_dim, hidden)
        last_in = hidden[-2] if dueling and len(hidden) > 1 else (state_dim if dueling else hidden[-1])
        if dueling:
            self.value = nn.Sequential(nn.Linear(last_in, hidden[-1]), nn.ReLU(), nn.Linear(hidden[-1], 1))
            self.advantage = nn.Sequential(nn.Linear(last_in, hidden[-1]), nn.ReLU(),
                                           nn.Linear(hidden[-1], n_actions))
        else:
            self.head = nn.Linear(hidden[-1], n_actions)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        z = self.body(state)
        if not self.dueling:
            return self.head(z)
        a = self.advantage(z)
        return self.value(z) + a - a.mean(dim=-1, keepdim=True)


class StudentMLP(nn.Module):
    """Distilled policy: 2 hidden layers of 4 or 16 units -> logits over all actions."""

    def __init__(self, state_dim: int, n_actions: int, hidden: int = 16):
        super().__init__()
        self.state_dim, self.n_actions, self.hidden = state_dim, n_actions, hidden
        self.net = mlp(state_dim, (hidden, hidden), n_actions)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


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
        self.body = mlp(state_dim, hidden)
        self.head = nn.Linear(hidden[-1], self.n_slices * self.n_values)

    def tables(self, state: torch.Tensor) -> torch.Tensor:
        """(B, n_slices, n_values) T_n(s, v), non-decreasing in v."""
        z = self.head(self.body(state)).view(-1, self.n_slices, self.n_values)
        inc = F.softplus(z[..., 1:]) / self.n_values  # keeps the initial tables near flat
        return torch.cat([z[..., :1], z[..., :1] + inc.cumsum(-1)], -1)

    def taken(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for one action per row: three table entries, not the whole action space."""
        idx = self.unit_index[action].unsqueeze(-1)  # (B, n_slices, 1)
        return self.tables(state).gather(2, idx).squeeze(-1).sum(-1)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        t = self.tables(state)
        return sum(t[:, n, self.unit_index[:, n]] for n in range(self.n_slices))
