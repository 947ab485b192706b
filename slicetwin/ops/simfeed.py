"""Simulated live traffic for tests and benchmarks: controller-format transitions.

Runs simulator cells under an ε-random policy (ε = 1: uniform random allocations, the
exploration Algorithm 1's agent 1 does on live traffic) and yields the stream entries the
controller would write, so the worker can be exercised without a controller process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import redis

from slicetwin.core.transition_wire import Transition, encode
from slicetwin.core.utility import RewardShaper
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator


def sim_transitions(cells: int = 4, windows: int = 100, seed: int = 0, eps: float = 1.0,
                    cell_prefix: str = "sim", policy=None, utility=None,
                    shaper=None, profile: str = "paper") -> Iterator:
    """Yield ``slicetwin.core.transition_wire.Transition`` tuples, window by window (cells x windows).

    ``utility`` / ``shaper``: the weights (``UtilityConfig``) and ``RewardShaper`` a controller
    with the same settings would record with (default: the defaults); the reward's ``t`` is
    the transition's report window, as in the controller; ``profile``: the simulator profile
    (``SimConfig.from_profile``) of the cells' traffic."""

    cfg = (SimConfig.from_profile(profile) if utility is None
           else SimConfig.from_profile(profile, utility=utility))
    sim = RanSimulator(cfg, n_cells=cells, seed=seed)
    s = sim.reset()
    rng = np.random.default_rng(seed)
    shaper = shaper or RewardShaper()
    n = sim.codec.n_actions
    w0 = 1_000_000
    for k in range(windows):
        a = rng.integers(0, n, cells) if policy is None else np.asarray(policy(s), np.int64)
        if policy is not None and eps > 0:
            ex = rng.random(cells) < eps
            a[ex] = rng.integers(0, n, int(ex.sum()))
        s2, kp = sim.step_actions(a)
        r = shaper.reward(kp.utility, w0 + k + 1)  # t = the report window, as the controller
        for c in range(cells):
            yield Transition(f"{cell_prefix}-{c}", w0 + k + 1, s[c].tolist(), int(a[c]),
                             float(r[c]), float(kp.utility[c]), s2[c].tolist(),
                             kp.arrived[c].astype(float).tolist(),
                             kp.sla_met[c].astype(float).tolist(),
                             float(kp.spectral_efficiency[c]), "sim", False, True, time.time())
        s = s2


def xadd_all(url: str, stream: str, transitions, maxlen: int | None = None) -> int:
    """Append transitions to a Redis stream as the controller's sink does; returns the count."""
    r = redis.Redis.from_url(url)
    p = r.pipeline(transaction=False)
    n = 0
    for t in transitions:
        p.xadd(stream, encode(t), maxlen=maxlen, approximate=maxlen is not None)
        n += 1
        if n % 1000 == 0:
            p.execute()
    p.execute()
    r.close()
    return n
