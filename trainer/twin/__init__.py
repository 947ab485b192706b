"""The digital twin: LSTM transition model + reward/KPI DNN ensemble (see docs/twin.md).

    twin = Twin(TwinConfig()); twin.fit(transitions)
    s = twin.reset(states, history, history_actions); out = twin.step(actions)
"""

from trainer.twin.collect import collect_transitions, fixed_policy, random_policy
from trainer.twin.config import TwinConfig
from trainer.twin.history import histories, history_index
from trainer.twin.rollout import TwinRollouts, TwinStep
from trainer.twin.twin import Twin

__all__ = ["Twin", "TwinConfig", "TwinStep", "TwinRollouts", "collect_transitions", "fixed_policy",
           "random_policy", "histories", "history_index"]
