"""Neural network definitions shared by the trainer (and exported to ONNX for the controller).

Imports torch: never import this module from the controller's request path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

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
