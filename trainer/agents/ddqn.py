"""Double DQN (van Hasselt et al. 2016): the online net picks a', the target net scores it.

Only the bootstrap changes from DQN; it removes the max-operator's overestimation, which matters
with 4851 actions (the max of many noisy estimates is biased upward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.agents.dqn import DQNAgent, DQNConfig, q_taken


@dataclass
class DDQNConfig(DQNConfig):
    double: bool = True


class DDQNAgent(DQNAgent):
    name = "ddqn"
    config_cls = DDQNConfig

    @torch.no_grad()
    def next_value(self, next_state: torch.Tensor) -> torch.Tensor:
        a_star = self.q(next_state).argmax(-1)  # online argmax
        return q_taken(self.q_target, next_state, a_star)  # target evaluation
