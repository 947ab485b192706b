"""DRL agents over the allocation space, sharing one replay buffer and one training loop.

``make_agent(name, state_dim, n_actions, seed, **overrides)`` builds any of them by name.
"""

from __future__ import annotations

from dataclasses import fields, replace

from trainer.agents.ddqn import DDQNAgent, DDQNConfig
from trainer.agents.dqn import DQNAgent, DQNConfig
from trainer.agents.dueling import DuelingDDQNAgent, DuelingDDQNConfig
from trainer.agents.factored import FactoredDDQNAgent, FactoredDDQNConfig
from trainer.agents.gan_ddqn import GANDDQNAgent, GANDDQNConfig

AGENTS: dict[str, type[DQNAgent]] = {
    "dqn": DQNAgent,
    "ddqn": DDQNAgent,
    "dueling-ddqn": DuelingDDQNAgent,
    "gan-ddqn": GANDDQNAgent,
    "factored-ddqn": FactoredDDQNAgent,
}


def make_agent(name: str, state_dim: int, n_actions: int, seed: int = 0, **overrides) -> DQNAgent:
    """Agent by name with its default config, fields overridden by keyword (unknown ones fail)."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose from {sorted(AGENTS)}")
    cls = AGENTS[name]
    cfg = cls.config_cls()
    known = {f.name for f in fields(cfg)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown {name} hyperparameters: {sorted(bad)}")
    return cls(state_dim, n_actions, replace(cfg, **overrides), seed=seed)


__all__ = ["AGENTS", "DDQNAgent", "DDQNConfig", "DQNAgent", "DQNConfig", "DuelingDDQNAgent",
           "DuelingDDQNConfig", "FactoredDDQNAgent", "FactoredDDQNConfig", "GANDDQNAgent", "GANDDQNConfig", "make_agent"]
