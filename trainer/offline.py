"""Offline DRL (paper Algorithm 2) and discrete CQL, on a fixed dataset of transitions.

Algorithm 2: an agent theta_1 learns from a fixed dataset D collected by a behaviour policy (e.g.
random allocations) and never interacts with the network. Its loss is a DQN-family TD loss plus a
proximal term that keeps it near theta_2, an agent trained in the digital twin:

    L(theta_1) = L_TD(theta_1; D) + (v / 2) * ||theta_1 - theta_2||^2

With v = 0 (or no theta_2) it is the "offline without the twin" baseline. Discrete CQL (Kumar et
al. 2020, CQL(H)) is Double DQN plus alpha * E_s[logsumexp_a Q(s, a) - Q(s, a_data)], which pushes
down the Q-values of actions the dataset never tried — the stronger offline baseline.

Epoch = one pass over D in shuffled minibatches (paper: 200 epochs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import trange

from trainer.nets import QNetwork


@dataclass
class OfflineConfig:
    algo: str = "ddqn"  # "dqn" | "ddqn" | "cql" (CQL = DDQN + conservative term)
    hidden: tuple[int, ...] = (256, 256, 128, 128)  # the paper's network; must match theta_2
    epochs: int = 200  # paper: 200 epochs over the dataset
    batch_size: int = 256
    lr: float = 1e-3  # paper: Adam 1e-3
    gamma: float = 0.8  # as the online agents (trainer/agents/dqn.py: reference code's 0.8)
    target_update_every: int = 250  # gradient steps between hard target copies (online agents)
    huber: bool = True
    max_grad_norm: float = 10.0
    prox_weight: float = 0.0  # v in Algorithm 2; 0 = offline without the twin
    init_from_reference: bool = False  # start theta_1 at theta_2 (off: the paper's random init)
    cql_alpha: float = 1.0  # conservative weight (d3rlpy DiscreteCQL default 1.0)
    seed: int = 0
    progress: bool = False


def proximal_term(net: nn.Module, reference: Iterable[torch.Tensor], v: float) -> torch.Tensor:
    """(v / 2) * ||theta_1 - theta_2||^2 over all parameters; its gradient is v (theta_1 - theta_2)."""
    total = torch.zeros(())
    for p, r in zip(net.parameters(), reference, strict=True):
        total = total + (p - r.detach()).pow(2).sum()
    return 0.5 * v * total


@dataclass
class OfflineBatch:
    state: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_state: torch.Tensor


def td_loss(q: nn.Module, q_target: nn.Module, b: OfflineBatch, cfg: OfflineConfig
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """TD loss of the DQN family; returns (loss, Q(s, .)) so CQL can reuse the full output."""
    q_all = q(b.state)
    q_sa = q_all.gather(1, b.action[:, None])[:, 0]
    with torch.no_grad():
        q_next_t = q_target(b.next_state)
        if cfg.algo in ("ddqn", "cql"):
            a_next = q(b.next_state).argmax(1, keepdim=True)
            v_next = q_next_t.gather(1, a_next)[:, 0]
        else:
            v_next = q_next_t.max(1).values
        y = b.reward + cfg.gamma * v_next  # continuing task: no terminal states
    loss = F.smooth_l1_loss(q_sa, y) if cfg.huber else F.mse_loss(q_sa, y)
    return loss, q_all


def cql_term(q_all: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """E_s[logsumexp_a Q(s, a) - Q(s, a_data)] (CQL(H) for discrete actions)."""
    return (torch.logsumexp(q_all, 1) - q_all.gather(1, action[:, None])[:, 0]).mean()


@dataclass
class OfflineResult:
    q: QNetwork
    history: list[dict]
    config: dict


def train_offline(data, n_actions: int, cfg: OfflineConfig | None = None,
                  reference: nn.Module | None = None,
                  on_epoch: Callable[[int, QNetwork], dict | None] | None = None) -> OfflineResult:
    """Algorithm 2 on ``data`` (``slicetwin.core.transitions.Transitions`` or anything with state/action/reward/
    next_state arrays). ``reference`` is theta_2, the twin-trained Q-network (same architecture);
    with ``cfg.prox_weight > 0`` it is required. ``on_epoch(epoch, q)`` may return extra figures
    (e.g. simulator utility) to record in the history.
    """
    cfg = cfg or OfflineConfig()
    if cfg.algo not in ("dqn", "ddqn", "cql"):
        raise ValueError(f"algo must be dqn, ddqn or cql, got {cfg.algo!r}")
    if cfg.prox_weight < 0:
        raise ValueError("prox_weight (v) must be >= 0")
    if (cfg.prox_weight > 0 or cfg.init_from_reference) and reference is None:
        raise ValueError("prox_weight > 0 or init_from_reference needs the twin-trained reference")
    s = torch.as_tensor(np.asarray(data.state, np.float32))
    a = torch.as_tensor(np.asarray(data.action, np.int64))
    r = torch.as_tensor(np.asarray(data.reward, np.float32))
    s2 = torch.as_tensor(np.asarray(data.next_state, np.float32))
    if len(s) == 0:
        raise ValueError("empty dataset")
    if int(a.max()) >= n_actions or int(a.min()) < 0:
        raise ValueError(f"dataset actions outside [0, {n_actions})")
    torch.manual_seed(cfg.seed)
    q = QNetwork(s.shape[1], n_actions, cfg.hidden)
    ref_params: list[torch.Tensor] = []
    if reference is not None:
        ref_params = [p.detach().clone() for p in reference.parameters()]
        if [p.shape for p in q.parameters()] != [p.shape for p in ref_params]:
            raise ValueError("reference network must have the offline agent's architecture "
                             f"(hidden={cfg.hidden}, n_actions={n_actions})")
        if cfg.init_from_reference:
            q.load_state_dict(reference.state_dict())
    q_target = copy.deepcopy(q).requires_grad_(False)
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    steps = 0
    n = len(s)
    for epoch in trange(1, cfg.epochs + 1, disable=not cfg.progress, desc=f"offline-{cfg.algo}"):
        perm = torch.randperm(n, generator=gen)
        sums = {"td": 0.0, "prox": 0.0, "cql": 0.0}
        nb = 0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            b = OfflineBatch(s[idx], a[idx], r[idx], s2[idx])
            loss_td, q_all = td_loss(q, q_target, b, cfg)
            loss = loss_td
            if cfg.algo == "cql":
                c = cql_term(q_all, b.action)
                loss = loss + cfg.cql_alpha * c
                sums["cql"] += float(c.detach())
            if cfg.prox_weight > 0:
                p = proximal_term(q, ref_params, cfg.prox_weight)
                loss = loss + p
                sums["prox"] += float(p.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(q.parameters(), cfg.max_grad_norm)
            opt.step()
            steps += 1
            if steps % cfg.target_update_every == 0:
                q_target.load_state_dict(q.state_dict())
            sums["td"] += float(loss_td.detach())
            nb += 1
        rec = {"epoch": epoch, **{k: v / nb for k, v in sums.items()}}
        if on_epoch is not None:
            rec.update(on_epoch(epoch, q) or {})
        history.append(rec)
    q.eval()
    return OfflineResult(q, history, asdict(cfg))

