"""Dueling GAN-DDQN (Hua et al., IEEE JSAC 2019): a distributional agent trained adversarially.

Generator G(s, z): a shared body, a *value* stream that turns the body features and a noise
vector z ~ U(0, 1)^noise_dim into N particles of the state-value distribution, and an *advantage*
stream with one advantage per action. Particles of Z(s, a) = V_i(s, z) + A(s, a) - mean_a A(s, .);
Q(s, a) = mean_i of the particles. The discriminator D(s, x) scores a particle vector x; it is
trained WGAN-GP-style (Gulrajani et al. 2017) to tell G's particles for (s, a) from Bellman-target
particles r + gamma * Z_target(s', a*), a* = online argmax (the "DD" part). The generator is trained
to fool D, plus (our addition, ``mean_loss_coef``) a Huber term between the particle means, i.e.
the expectation of the distributional Bellman equation: WGAN training alone is slow to move the
mean that acting uses. Set it to 0 for the pure adversarial objective.

Because the advantage is deterministic, acting needs no noise and costs what DQN's does; the
taken action's particles are gathered row-wise (no full n_actions x N output anywhere).

Defaults: N = 30 particles, noise 10, gradient-penalty weight 10 (the reference code); critic
hidden 256-256 (the paper); one critic step per generator step (the reference code uses 5; one
keeps a GAN update at ~2x a DDQN update here); critic Adam lr 1e-4, betas (0, 0.9) (WGAN-GP).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from trainer.agents.dqn import DQNAgent, DQNConfig, adam
from trainer.nets import mlp
from trainer.replay import Batch


@dataclass
class GANDDQNConfig(DQNConfig):
    double: bool = True
    dueling: bool = True
    n_particles: int = 30  # reference code
    noise_dim: int = 10  # reference code
    disc_hidden: tuple[int, ...] = (256, 256)  # paper
    disc_lr: float = 1e-4  # WGAN-GP
    gp_lambda: float = 10.0  # WGAN-GP / reference code
    n_critic: int = 1  # reference code: 5
    mean_loss_coef: float = 1.0  # Huber(mean particles, mean target); 0 = pure WGAN


class DuelingGenerator(nn.Module):
    """Value-distribution particles from (state, noise) plus a per-action advantage."""

    def __init__(self, state_dim: int, n_actions: int, hidden: tuple[int, ...],
                 n_particles: int, noise_dim: int):
        super().__init__()
        if len(hidden) < 2:
            raise ValueError("the generator needs at least 2 hidden layers (body + heads)")
        self.n_actions, self.n_particles, self.noise_dim = n_actions, n_particles, noise_dim
        self.body = mlp(state_dim, hidden[:-1])
        d = hidden[-2]
        self.value = mlp(d + noise_dim, (hidden[-1],), n_particles)
        self.adv_hidden = mlp(d, (hidden[-1],))
        self.adv_out = nn.Linear(hidden[-1], n_actions)

    def noise(self, n: int) -> torch.Tensor:
        return torch.rand(n, self.noise_dim)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Mean-particle Q(s, .) for every action: mean_i V_i + A - mean(A)."""
        h = self.body(state)
        v = self.value(torch.cat([h, self.noise(len(state))], -1)).mean(-1, keepdim=True)
        a = self.adv_out(self.adv_hidden(h))
        return v + a - a.mean(-1, keepdim=True)

    def advantage(self, state: torch.Tensor) -> torch.Tensor:
        a = self.adv_out(self.adv_hidden(self.body(state)))
        return a - a.mean(-1, keepdim=True)

    def particles(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B, N) particles of Z(s, a) for the given actions, one fresh noise draw per row."""
        h = self.body(state)
        v = self.value(torch.cat([h, self.noise(len(state))], -1))
        g = self.adv_hidden(h)
        w, b = self.adv_out.weight, self.adv_out.bias
        adv = (g * w[action]).sum(-1) + b[action] - (g @ w.mean(0) + b.mean())
        return v + adv.unsqueeze(-1)


class GANDDQNAgent(DQNAgent):
    name = "gan-ddqn"
    config_cls = GANDDQNConfig

    def _build(self) -> nn.Module:
        c = self.cfg
        if c.state_norm != "fixed":
            raise ValueError("gan-ddqn supports state_norm='fixed' only (its generator and "
                             "discriminator see the state in several places)")
        self.disc = mlp(self.state_dim + c.n_particles, c.disc_hidden, 1)
        return DuelingGenerator(self.state_dim, self.n_actions, c.hidden, c.n_particles,
                                c.noise_dim)

    def _make_optimizers(self) -> None:
        self.opt = adam(self.q.parameters(), lr=self.cfg.lr)
        self.disc_opt = adam(self.disc.parameters(), lr=self.cfg.disc_lr, betas=(0.0, 0.9))

    @torch.no_grad()
    def q_values(self, state) -> torch.Tensor:
        # the particle mean of V is action-independent: the advantage alone ranks actions
        return self.q.advantage(torch.as_tensor(state, dtype=torch.float32))

    @torch.no_grad()
    def target_particles(self, batch: Batch) -> torch.Tensor:
        a_star = self.q.advantage(batch.next_state).argmax(-1)
        z_next = self.q_target.particles(batch.next_state, a_star)
        return batch.reward[:, None] + self.cfg.gamma * (1.0 - batch.done[:, None]) * z_next

    def _critic(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.disc(torch.cat([state, x], -1)).squeeze(-1)

    def _gradient_penalty(self, state, real, fake) -> torch.Tensor:
        eps = torch.rand(len(real), 1)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self._critic(state, mix).sum(), mix, create_graph=True)
        return ((grad.norm(dim=-1) - 1.0) ** 2).mean()

    def update(self, batch: Batch) -> dict[str, float]:
        c = self.cfg
        real = self.target_particles(batch)
        for _ in range(c.n_critic):
            with torch.no_grad():
                fake = self.q.particles(batch.state, batch.action)
            d_loss = (self._critic(batch.state, fake).mean() - self._critic(batch.state, real).mean()
                      + c.gp_lambda * self._gradient_penalty(batch.state, real, fake))
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
        fake = self.q.particles(batch.state, batch.action)
        g_loss = -self._critic(batch.state, fake).mean()
        if c.mean_loss_coef > 0:
            g_loss = g_loss + c.mean_loss_coef * F.smooth_l1_loss(fake.mean(-1), real.mean(-1))
        self.opt.zero_grad(set_to_none=True)
        g_loss.backward()
        if c.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.q.parameters(), c.max_grad_norm)
        self.opt.step()
        self.grad_steps += 1
        self._maybe_sync_target()
        return {"loss": float(g_loss.detach()), "d_loss": float(d_loss.detach()),
                "q_mean": float(fake.detach().mean())}

    def networks(self) -> dict[str, nn.Module]:
        return {"q": self.q, "q_target": self.q_target, "disc": self.disc}

    def clone(self) -> GANDDQNAgent:
        twin = copy.deepcopy(self)
        twin._make_optimizers()
        return twin
