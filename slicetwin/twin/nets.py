"""Ensemble networks: K members evaluated as one batched model (bmm), so an ensemble of 5 costs
little more than one network on a CPU.

Every tensor carries the member dimension first: (K, B, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """K independent affine maps, y_k = x_k W_k + b_k, initialised like nn.Linear."""

    def __init__(self, k: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(k, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (K, B, d_in) -> (K, B, d_out)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    def __init__(self, k: int, d_in: int, hidden: Sequence[int], d_out: int):
        super().__init__()
        dims = [d_in, *hidden]
        self.hidden = nn.ModuleList(EnsembleLinear(k, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.out = EnsembleLinear(k, dims[-1], d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.out(x)


class EnsembleLSTM(nn.Module):
    """K one-layer LSTMs. Each member runs torch's fused LSTM kernel (about 5x faster on a CPU
    than a hand-written batched cell); the members differ by initialisation and data."""

    def __init__(self, k: int, d_in: int, hidden: int):
        super().__init__()
        self.hidden_size = hidden
        self.members = nn.ModuleList(nn.LSTM(d_in, hidden, batch_first=True) for _ in range(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (K, B, T, d_in), or (B, T, d_in) shared by all members -> last hidden (K, B, h)."""
        shared = x.dim() == 3
        return torch.stack([m(x if shared else x[i])[1][0][-1]
                            for i, m in enumerate(self.members)])


def soft_bound(logvar: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Keep log-variance in [lo, hi] smoothly (PETS-style), so NLL cannot blow up."""
    logvar = hi - nn.functional.softplus(hi - logvar)
    return lo + nn.functional.softplus(logvar - lo)


class TransitionNet(nn.Module):
    """LSTM over H (state, action-fraction) pairs -> Gaussian over the normalised state change."""

    def __init__(self, k: int, state_dim: int, action_dim: int, lstm_hidden: int,
                 head_hidden: int, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi, self.state_dim = lo, hi, state_dim
        self.lstm = EnsembleLSTM(k, state_dim + action_dim, lstm_hidden)
        self.head = EnsembleMLP(k, lstm_hidden + state_dim + action_dim, (head_hidden,),
                                2 * state_dim)

    def forward(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.lstm(seq)
        last = seq[..., -1, :]  # skip connection: the newest (state, action) pair
        if last.dim() == 2:
            last = last.expand(h.shape[0], -1, -1)
        out = self.head(torch.cat([h, last], dim=-1))
        mean, logvar = out.split(self.state_dim, dim=-1)
        return mean, soft_bound(logvar, self.lo, self.hi)


class RewardNet(nn.Module):
    """DNN (recent (s, a) pairs, next state) -> Gaussian over KPIs (SSR per slice, SE) plus the
    paper's direct (utility, reward) regression."""

    N_KPI = 4  # ssr x3, se

    def __init__(self, k: int, d_in: int, hidden: Sequence[int], lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = lo, hi
        self.net = EnsembleMLP(k, d_in, hidden, 2 * self.N_KPI + 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(x)
        mean, logvar, direct = out.split([self.N_KPI, self.N_KPI, 2], dim=-1)
        return mean, soft_bound(logvar, self.lo, self.hi), direct
