"""DQN (Mnih et al. 2015) over the discrete allocation space; the base of every other agent.

Speed (docs/performance.md): the 4851-wide output layer dominates an update, so the gradient
pass computes Q only for the taken actions (``q_taken``: features · W[a] + b[a]); only the
bootstrap needs a full, gradient-free forward over all actions.

Defaults, with the libraries' for comparison (docs/performance.md):
- network 256-256-128-128, Adam lr 1e-3: the paper (Zhang et al.; Hua et al. 2019);
- gamma 0.8: Hua et al.'s reference code (the RAN task is nearly a contextual bandit: the next
  state barely depends on the action, so a short horizon learns faster and loses little);
- replay 10,000 (CleanRL 10k; SB3 1M); batch 64 (CleanRL 128, SB3 32);
- learning starts after 200 transitions (reference code 200; SB3 100; CleanRL 10k);
- one gradient step every 4 transitions (SB3 4; CleanRL 10);
- hard target copy every 250 gradient steps (CleanRL 500 env steps ≈ 50 updates at train
  frequency 10; SB3 10k env steps); Huber loss and grad-norm clip 10 (SB3);
- epsilon 1 -> 0.05 (both libraries) over 2,000 real interactions (= 10 rounds: CleanRL decays
  over half a run, SB3 over 10 %; our runs are short, so a fixed count keeps seeds comparable).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainer.nets import PAPER_HIDDEN, QNetwork
from trainer.replay import Batch


@dataclass
class DQNConfig:
    hidden: tuple[int, ...] = PAPER_HIDDEN  # paper: 4 hidden layers
    lr: float = 1e-3  # paper: Adam 1e-3
    gamma: float = 0.8  # Hua et al. reference code
    batch_size: int = 64  # CleanRL 128, SB3 32
    buffer_size: int = 10_000  # CleanRL 10k, SB3 1M
    learning_starts: int = 200  # transitions before the first update (reference code 200)
    train_every: float = 4.0  # transitions per gradient step (SB3 4, CleanRL 10); may be < 1
    target_update_every: int = 250  # gradient steps between target syncs
    tau: float = 1.0  # 1 = hard copy (CleanRL/SB3 default); < 1 = Polyak soft update
    max_grad_norm: float = 10.0  # SB3
    huber: bool = True  # SB3 smooth-L1; False = MSE (CleanRL)
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_steps: int = 2_000  # real interactions for the linear epsilon decay
    double: bool = False  # DDQN bootstrap (online argmax, target evaluation)
    dueling: bool = False  # V + A - mean(A) head
    # "fixed": the state as the controller computes it (arrivals / fixed scales); "data":
    # standardised with the mean and std of the states in replay at the first gradient step
    # (``trainer.nets.StateNorm``), for traffic unlike our simulator's (docs/training.md)
    state_norm: str = "fixed"

    def __post_init__(self) -> None:
        if self.state_norm not in ("fixed", "data"):
            raise ValueError(f"state_norm must be 'fixed' or 'data', got {self.state_norm!r}")

    def epsilon(self, step: int) -> float:
        """Linear schedule eps_start -> eps_end over eps_decay_steps interactions."""
        if self.eps_decay_steps <= 0:
            return self.eps_end
        frac = min(max(step, 0) / self.eps_decay_steps, 1.0)
        return self.eps_start + frac * (self.eps_end - self.eps_start)


def q_taken(net: QNetwork, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Q(s, a) for one action per row without materialising the full (B, n_actions) output.

    Plain head: h · W[a] + b[a]. Dueling head: V + A(a) - mean(A), and mean(A) = h · mean(W) +
    mean(b), so the mean advantage costs one extra row instead of the whole output layer.
    A network with its own ``taken`` (``FactoredQNetwork``) scores the rows itself.
    """
    if hasattr(net, "taken"):
        return net.taken(state, action)
    h = net.body(net.norm(state) if hasattr(net, "norm") else state)
    if not net.dueling:
        w, b = net.head.weight, net.head.bias
        return (h * w[action]).sum(-1) + b[action]
    hv = net.value(h).squeeze(-1)
    adv_hidden = net.advantage[:-1](h)
    last: nn.Linear = net.advantage[-1]
    w, b = last.weight, last.bias
    a_taken = (adv_hidden * w[action]).sum(-1) + b[action]
    a_mean = adv_hidden @ w.mean(0) + b.mean()
    return hv + a_taken - a_mean


class DQNAgent:
    """Online net + target net + Adam; ``update`` is one gradient step on a replay batch."""

    name = "dqn"
    config_cls = DQNConfig

    def __init__(self, state_dim: int, n_actions: int, config: DQNConfig | None = None,
                 seed: int = 0):
        self.cfg = config if config is not None else self.config_cls()
        self.state_dim, self.n_actions = state_dim, n_actions
        torch.manual_seed(seed)
        self.q = self._build()
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self._make_optimizers()
        self.grad_steps = 0

    def _make_optimizers(self) -> None:
        self.opt = adam(self.q.parameters(), lr=self.cfg.lr)

    def _build(self) -> nn.Module:
        return QNetwork(self.state_dim, self.n_actions, self.cfg.hidden, dueling=self.cfg.dueling)

    # ---- acting -------------------------------------------------------------------------------
    @torch.no_grad()
    def q_values(self, state: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, n_actions) expected return of every action."""
        return self.q(torch.as_tensor(state, dtype=torch.float32))

    def greedy(self, state: np.ndarray) -> np.ndarray:
        return self.q_values(state).argmax(-1).numpy()

    def act(self, state: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
        """Epsilon-greedy over the batch of states (one decision per row)."""
        state = np.asarray(state, np.float32).reshape(-1, self.state_dim)
        a = self.greedy(state)
        explore = rng.random(len(a)) < eps
        if explore.any():
            a[explore] = rng.integers(0, self.n_actions, size=int(explore.sum()))
        return a

    # ---- learning -----------------------------------------------------------------------------
    @torch.no_grad()
    def next_value(self, next_state: torch.Tensor) -> torch.Tensor:
        """Bootstrap value of s'. DQN: max_a Q_target(s', a)."""
        return self.q_target(next_state).max(-1).values

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        return batch.reward + self.cfg.gamma * (1.0 - batch.done) * self.next_value(batch.next_state)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        y = self.td_target(batch)
        q = q_taken(self.q, batch.state, batch.action)
        loss = F.smooth_l1_loss(q, y) if self.cfg.huber else F.mse_loss(q, y)
        return loss, {"loss": float(loss.detach()), "q_mean": float(q.detach().mean())}

    def update(self, batch: Batch) -> dict[str, float]:
        loss, info = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.q.parameters(), self.cfg.max_grad_norm)
        self.opt.step()
        self.grad_steps += 1
        self._maybe_sync_target()
        return info

    def _maybe_sync_target(self) -> None:
        if self.cfg.tau < 1.0:
            _polyak(self.q_target, self.q, self.cfg.tau)
        elif self.grad_steps % self.cfg.target_update_every == 0:
            self.q_target.load_state_dict(self.q.state_dict())

    # ---- state normalisation -----------------------------------------------------------------
    def norms(self) -> list[nn.Module]:
        return [n.norm for n in self.networks().values() if hasattr(n, "norm")]

    @property
    def norm_fitted(self) -> bool:
        return any(bool(n.fitted) for n in self.norms())

    def fit_state_norm(self, states: np.ndarray) -> bool:
        """Fix the normalisation from ``states`` once (``state_norm="data"``); True if it did."""
        if self.cfg.state_norm != "data" or self.norm_fitted or not self.norms():
            return False
        for n in self.norms():
            n.fit(states)
        return True

    # ---- parameters (Algorithm 1) ---------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """Every network whose parameters make up theta (blended and copied by Algorithm 1)."""
        return {"q": self.q, "q_target": self.q_target}

    @torch.no_grad()
    def blend_from(self, other: DQNAgent, zeta: float) -> None:
        """theta_self <- zeta * theta_self + (1 - zeta) * theta_other, network by network."""
        if not 0.0 <= zeta <= 1.0:
            raise ValueError(f"zeta must be in [0, 1], got {zeta}")
        self._adopt_norm(other)
        mine, theirs = self.networks(), other.networks()
        for k, net in mine.items():
            for p, q in zip(net.parameters(), theirs[k].parameters(), strict=True):
                p.mul_(zeta).add_(q, alpha=1.0 - zeta)

    @torch.no_grad()
    def _adopt_norm(self, other: DQNAgent) -> None:
        """Blending weights only makes sense on the same inputs: an agent that has not trained
        yet takes the other's normalisation; two different fitted ones are refused."""
        if not other.norm_fitted:
            return
        mine, theirs = self.norms(), other.norms()
        if self.norm_fitted:
            if not all(torch.equal(a.mean, b.mean) and torch.equal(a.inv_std, b.inv_std)
                       for a, b in zip(mine, theirs, strict=True)):
                raise ValueError("cannot blend agents with different state normalisations")
            return
        for a, b in zip(mine, theirs, strict=True):
            a.load_state_dict(b.state_dict())

    def copy_from(self, other: DQNAgent) -> None:
        """theta_self <- theta_other (networks only; each agent keeps its own optimiser)."""
        for k, net in self.networks().items():
            net.load_state_dict(other.networks()[k].state_dict())

    def clone(self) -> DQNAgent:
        """An independent agent with the same weights and fresh optimiser state (agent 2)."""
        twin = copy.deepcopy(self)
        twin._make_optimizers()
        return twin

    def state_dict(self) -> dict:
        return {"name": self.name, "config": asdict(self.cfg),
                **{k: n.state_dict() for k, n in self.networks().items()}}


def adam(params, **kw) -> torch.optim.Adam:
    """Adam with the fused CPU kernel where available: the update of the 4851-row output layer
    is a large share of a step, and fusing it measured ~1.7x faster per gradient step here."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, **kw)


@torch.no_grad()
def _polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(s, alpha=tau)
