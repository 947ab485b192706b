"""Vectorised RAN slicing simulator; importing it registers ``slicetwin/RanSlicing-v0``."""

from __future__ import annotations

import gymnasium as gym

from slicetwin.sim.config import SimConfig, SliceTraffic
from slicetwin.sim.simulator import RanSimulator, SimState, WindowKPIs
from slicetwin.sim.traffic import Dist

ENV_ID = "slicetwin/RanSlicing-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="slicetwin.sim.env:RanSlicingEnv")

__all__ = ["ENV_ID", "Dist", "RanSimulator", "SimConfig", "SimState", "SliceTraffic",
           "WindowKPIs"]
