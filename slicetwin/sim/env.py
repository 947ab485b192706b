"""Single-cell gymnasium environment ``slicetwin/RanSlicing-v0`` over the batched simulator
(importing this module registers it with gymnasium).

Observation: the paper's state, arrived packets per slice of the last window divided by
``slicetwin.core.state.STATE_SCALES`` (float32, shape (3,)). Action: index into ``ActionCodec``
(Discrete(4851) at 200 kHz, Discrete(171) with ``n_units=20``). Reward: the paper's shaped
reward of the window's utility, with the threshold driven by the env's lifetime step counter
(it keeps rising across episodes, as in a training run). Episodes are truncated after
``max_episode_steps`` windows; the task itself never terminates.
"""

from __future__ import annotations

import numpy as np

from slicetwin.core.extras import SIM_FEATURE, missing

try:
    import gymnasium as gym
    from gymnasium import spaces
except ModuleNotFoundError as e:  # the `sim` extra
    raise missing(e, ("gymnasium",), "sim", SIM_FEATURE) from None

from slicetwin.core.utility import RewardShaper
from slicetwin.sim import ENV_ID
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator


def default_shaper(config: SimConfig) -> RewardShaper:
    """RewardShaper defaults for the profile: the calibrated one for ``paper``; for ``reference``
    (utility weights 1, 4, 6 -> 0..11) the reference code's threshold 6 rising to 10.5 over
    10k steps."""
    if config.profile == "reference":
        return RewardShaper(gamma_min=6.0, gamma_max=10.5, sigma=4.5e-4)
    return RewardShaper()


class RanSlicingEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, config: SimConfig | None = None, max_episode_steps: int = 200,
                 shaper: RewardShaper | None = None, profile: str | None = None,
                 n_units: int | None = None):
        if config is None:
            kw = {} if n_units is None else {"n_units": int(n_units)}
            config = SimConfig.from_profile(profile or "paper", **kw)
        if max_episode_steps <= 0:
            raise ValueError("max_episode_steps must be positive")
        self.config = config
        self.shaper = shaper or default_shaper(config)
        self.max_episode_steps = int(max_episode_steps)
        self.sim = RanSimulator(config, n_cells=1, parallel=False)
        self.codec = self.sim.codec
        self.action_space = spaces.Discrete(self.codec.n_actions)
        self.observation_space = spaces.Box(0.0, 1e6, shape=(3,), dtype=np.float32)
        self.total_steps = 0  # drives the reward threshold gamma_t
        self._ep_steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        sim_seed = int(self.np_random.integers(0, 2**63 - 1))
        obs = self.sim.reset(seed=sim_seed)[0]
        self._ep_steps = 0
        return obs, {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} not in Discrete({self.action_space.n})")
        obs, k = self.sim.step_actions(np.array([int(action)]))
        reward = float(self.shaper.reward(k.utility[0], self.total_steps))
        self.total_steps += 1
        self._ep_steps += 1
        info = k.cell(0)
        info["units"] = self.sim.last_units[0].copy()
        truncated = self._ep_steps >= self.max_episode_steps
        return obs[0], reward, False, truncated, info


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="slicetwin.sim.env:RanSlicingEnv")
