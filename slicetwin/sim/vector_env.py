"""Numpy-native vector env: N cells advanced by one batched kernel call per step.

Autoreset mode: ``SAME_STEP``. All sub-envs share the episode length, so they truncate on the
same step; that step returns the *reset* observations in ``obs`` and the last observations of
the finished episodes in ``infos["final_obs"]`` (with ``infos["final_info"]``), so a replay
buffer stores (obs, action, reward, final_obs) without the gap step of gymnasium's default
NEXT_STEP mode.
"""

from __future__ import annotations

import numpy as np

from slicetwin.core.extras import SIM_FEATURE, missing

try:
    from gymnasium import spaces
    from gymnasium.vector import AutoresetMode, VectorEnv
except ModuleNotFoundError as e:  # the `sim` extra
    raise missing(e, ("gymnasium",), "sim", SIM_FEATURE) from None

from slicetwin.core.utility import RewardShaper
from slicetwin.sim.config import SimConfig
from slicetwin.sim.env import default_shaper
from slicetwin.sim.simulator import RanSimulator


class RanSlicingVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 64, config: SimConfig | None = None,
                 max_episode_steps: int = 200, shaper: RewardShaper | None = None,
                 parallel: bool | None = None):
        if num_envs <= 0:
            raise ValueError("num_envs must be positive")
        self.config = config or SimConfig()
        self.num_envs = int(num_envs)
        self.shaper = shaper or default_shaper(self.config)
        self.max_episode_steps = int(max_episode_steps)
        self.sim = RanSimulator(self.config, n_cells=self.num_envs, parallel=parallel)
        self.codec = self.sim.codec
        self.single_action_space = spaces.Discrete(self.codec.n_actions)
        self.single_observation_space = spaces.Box(0.0, 1e6, shape=(3,), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete(np.full(self.num_envs, self.codec.n_actions))
        self.observation_space = spaces.Box(0.0, 1e6, shape=(self.num_envs, 3),
                                            dtype=np.float32)
        self.total_steps = 0
        self._ep_steps = 0
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs = self.sim.reset(seed=int(self._rng.integers(0, 2**63 - 1)))
        self._ep_steps = 0
        return obs, {}

    def step(self, actions):
        a = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        obs, k = self.sim.step_actions(a)
        reward = self.shaper.reward(k.utility, self.total_steps).astype(np.float64)
        self.total_steps += 1
        self._ep_steps += 1
        infos = {"utility": k.utility, "ssr": k.ssr, "se": k.spectral_efficiency,
                 "arrived": k.arrived, "delivered": k.delivered, "sla_met": k.sla_met,
                 "units": self.sim.last_units.copy()}
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.full(self.num_envs, self._ep_steps >= self.max_episode_steps)
        if truncated[0]:
            infos["final_obs"] = obs.copy()
            infos["final_info"] = {k_: v.copy() for k_, v in infos.items()
                                   if isinstance(v, np.ndarray)}
            obs, _ = self.reset()
        return obs, reward, terminated, truncated, infos
