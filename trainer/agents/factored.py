"""Factored Double DQN: Q(s, a) as a sum of per-slice value tables (``FactoredQNetwork``).

Only the network changes from DDQN. The loss and the bootstrap score actions through the
network's ``taken`` (three table entries per row), and the greedy action is the argmax of the
full Q, as for every agent, so the loop, Algorithm 1, distillation and export are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from slicetwin.core.actions import ActionCodec
from trainer.agents.ddqn import DDQNAgent, DDQNConfig
from trainer.nets import FactoredQNetwork


@dataclass
class FactoredDDQNConfig(DDQNConfig):
    # 2 gradient steps per transition (DQN: 1 per 4): chosen on tuning traffic (diurnal, train
    # seeds 0-2 -> seeds 1000-1002; docs/training.md "Factored Q"); 3 table entries per sample
    # keep the extra steps from overfitting the few splits tried
    train_every: float = 0.5
    n_units: int = 100  # the action codec the tables index (must give the agent's n_actions)
    min_units: int = 1


class FactoredDDQNAgent(DDQNAgent):
    name = "factored-ddqn"
    config_cls = FactoredDDQNConfig

    def _build(self) -> nn.Module:
        codec = ActionCodec(n_units=self.cfg.n_units, min_units=self.cfg.min_units)
        if codec.n_actions != self.n_actions:
            raise ValueError(f"n_units={self.cfg.n_units}, min_units={self.cfg.min_units} give "
                             f"{codec.n_actions} actions, the agent has {self.n_actions}")
        return FactoredQNetwork(self.state_dim, codec.table, self.cfg.hidden)
