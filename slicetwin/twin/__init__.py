"""The digital twin: LSTM transition model + reward/KPI DNN ensemble (see docs/twin.md).

The model the trainer fits and the twin service serves; simulator data collection for it lives in
``trainer.collect``.

    twin = Twin(TwinConfig()); twin.fit(transitions)
    s = twin.reset(states, history, history_actions); out = twin.step(actions)
"""

from slicetwin.twin.config import TwinConfig
from slicetwin.twin.history import histories, history_index
from slicetwin.twin.model import Twin
from slicetwin.twin.rollout import TwinRollouts, TwinStep

__all__ = ["Twin", "TwinConfig", "TwinStep", "TwinRollouts", "histories", "history_index"]
