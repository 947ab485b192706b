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
    """A plain LSTM (one layer) per member; short sequences, so an explicit loop is cheap."""

    def __init__(self, k: int, d_in: int, hidden: int):
        super().__init__()
        self.hidden_size = hidden
        self.inp = EnsembleLinear(k, d_in, 4 * hidden)
        bound = 1.0 / math.sqrt(hidden)
        self.rec = nn.Parameter(torch.empty(k, hidden, 4 * hidden).uniform_(-bound, bound))
        with torch.no_grad():  # forget-gate bias 1: remember by default (Jozefowicz et al. 2015)
            self.inp.bias[..., hidden:2 * hidden] += 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (K, B, T, d_in) -> last hidden state (K, B, hidden)."""
        k, b, t, d = x.shape
        gx = self.inp(x.reshape(k, b * t, d)).reshape(k, b, t, -1)
        h = x.new_zeros(k, b, self.hidden_size)
        c = torch.zeros_like(h)
        for i in range(t):
            gates = gx[:, :, i] + torch.bmm(h, self.rec)
            ig, fg, gg, og = gates.chunk(4, dim=-1)
            c = torch.sigmoid(fg) * c + torch.sigmoid(ig) * torch.tanh(gg)
            h = torch.sigmoid(og) * torch.tanh(c)
        return h


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
        out = self.head(torch.cat([h, seq[:, :, -1]], dim=-1))  # skip: the newest pair
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
