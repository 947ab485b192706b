"""Dueling Double DQN (Wang et al. 2016): Q = V + A - mean(A) on top of the DDQN bootstrap.

The value stream learns how good a traffic state is from every sample, whatever the action, so
with 4851 actions most of the signal is no longer spread over thousands of output rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.agents.ddqn import DDQNAgent, DDQNConfig


@dataclass
class DuelingDDQNConfig(DDQNConfig):
    dueling: bool = True


class DuelingDDQNAgent(DDQNAgent):
    name = "dueling-ddqn"
    config_cls = DuelingDDQNConfig
