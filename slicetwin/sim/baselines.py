"""Reference policies and their evaluation on common traffic.

Every policy has ``act(sim, state) -> (n_cells,) action indices``. ``state`` is what an agent
sees; only the clairvoyant oracle looks inside ``sim`` (it scores candidate actions on copies of
the true state with common random numbers, so the copy's outcome is exactly what the real cell
will do). ``evaluate`` runs each policy on a fresh simulator with the same seed (same users and
traffic) and reports mean utility, per-slice SSR and mean shaped reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slicetwin.actions import ActionCodec
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator
from slicetwin.state import STATE_SCALES
from slicetwin.utility import RewardShaper


class RandomPolicy:
    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, sim: RanSimulator, state: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, sim.codec.n_actions, size=sim.n_cells)


class FixedPolicy:
    """The same allocation in every window (``units`` per slice)."""

    name = "fixed"

    def __init__(self, units, codec: ActionCodec, name: str | None = None):
        self.action = int(codec.encode(np.asarray(units)))
        self.units = codec.decode(self.action)
        if name:
            self.name = name

    def act(self, sim: RanSimulator, state: np.ndarray) -> np.ndarray:
        return np.full(sim.n_cells, self.action, dtype=np.int64)


def equal_split(codec: ActionCodec) -> FixedPolicy:
    return FixedPolicy(codec.from_weights(np.ones(3)), codec, name="equal")


class DemandProportionalPolicy:
    """Bandwidth proportional to last window's offered bits (arrivals x mean packet size).

    Observation-only, the same rule as the controller's fallback: no search, no model.
    """

    name = "proportional"

    def __init__(self, config: SimConfig):
        self.mean_bits = np.array([t.size.mean() for t in config.traffic])

    def act(self, sim: RanSimulator, state: np.ndarray) -> np.ndarray:
        arrived = np.asarray(state, np.float64) * STATE_SCALES
        units = sim.codec.from_weights(arrived * self.mean_bits)
        return np.asarray(sim.codec.encode(units), dtype=np.int64).reshape(sim.n_cells)


def coarse_candidates(codec: ActionCodec, step: int | None = None) -> np.ndarray:
    """Actions on a grid of ``step`` units (default 1 MHz) plus the 1-unit edges."""
    step = step or max(1, round(1e6 / codec.unit_hz))
    u = codec.table
    on_grid = np.all((u % step == 0) | (u == codec.min_units), axis=1)
    return np.flatnonzero(on_grid)


def neighbourhood(codec: ActionCodec, actions: np.ndarray, radius: int) -> np.ndarray:
    """All actions whose units differ by at most ``radius`` per slice from one of ``actions``."""
    u = codec.table
    out = np.zeros(codec.n_actions, bool)
    for a in np.atleast_1d(actions):
        out |= np.abs(u - u[a]).max(1) <= radius
    return np.flatnonzero(out)


class OraclePolicy:
    """Clairvoyant one-step oracle: per cell, step copies of the true state with every candidate
    action and keep the one with the best utility. ``search="full"`` tries all actions;
    ``"coarse"`` tries a 1 MHz grid then refines +-``radius`` units around the best few (and
    ``extra`` actions, e.g. the best fixed one), about 10x cheaper."""

    name = "oracle"

    def __init__(self, search: str = "full", chunk: int = 1024, radius: int = 4, top: int = 3,
                 extra: tuple[int, ...] = ()):
        if search not in ("full", "coarse"):
            raise ValueError("search must be 'full' or 'coarse'")
        self.search, self.chunk, self.radius, self.top = search, chunk, radius, top
        self.extra = tuple(int(x) for x in extra)

    def _score(self, sim: RanSimulator, cell: int, actions: np.ndarray) -> np.ndarray:
        util = np.empty(len(actions))
        for i in range(0, len(actions), self.chunk):
            a = actions[i:i + self.chunk]
            clone = sim.replicate(cell, len(a))
            clone.parallel = True
            _, k = clone.step(sim.codec.decode(a))
            util[i:i + len(a)] = k.utility
        return util

    def best(self, sim: RanSimulator, cell: int) -> tuple[int, float]:
        codec = sim.codec
        if self.search == "full":
            cand = np.arange(codec.n_actions)
            util = self._score(sim, cell, cand)
        else:
            cand = np.union1d(coarse_candidates(codec), np.asarray(self.extra, np.int64))
            util = self._score(sim, cell, cand)
            top = cand[np.argsort(-util)[: self.top]]
            fine = np.setdiff1d(neighbourhood(codec, top, self.radius), cand)
            if len(fine):
                cand = np.concatenate([cand, fine])
                util = np.concatenate([util, self._score(sim, cell, fine)])
        j = int(np.argmax(util))
        return int(cand[j]), float(util[j])

    def act(self, sim: RanSimulator, state: np.ndarray) -> np.ndarray:
        return np.array([self.best(sim, c)[0] for c in range(sim.n_cells)], dtype=np.int64)


def search_best_fixed(config: SimConfig, windows: int, cells: int, seed: int,
                      radius: int = 3, top: int = 3, progress: bool = False) -> tuple[int, float]:
    """Best fixed allocation: mean utility of candidate fixed actions on the given traffic
    (coarse 1 MHz grid, then +-radius units around the best few). Returns (action, utility)."""
    sim = RanSimulator(config, n_cells=cells, seed=seed)
    sim.reset()
    codec = sim.codec

    def score(actions: np.ndarray) -> np.ndarray:
        n = len(actions)
        big = sim.replicate_many(np.tile(np.arange(cells), n))
        big.parallel = True
        units = np.repeat(codec.decode(actions), cells, axis=0)
        tot = np.zeros(n * cells)
        for _ in range(windows):
            _, k = big.step(units)
            tot += k.utility
        return tot.reshape(n, cells).mean(1) / windows

    cand = coarse_candidates(codec)
    util = score(cand)
    top_a = cand[np.argsort(-util)[:top]]
    fine = np.setdiff1d(neighbourhood(codec, top_a, radius), cand)
    if len(fine):
        cand = np.concatenate([cand, fine])
        util = np.concatenate([util, score(fine)])
    j = int(np.argmax(util))
    return int(cand[j]), float(util[j])


@dataclass
class PolicyResult:
    name: str
    mean_utility: float
    ssr: list[float]
    mean_reward: float
    mean_se: float
    utilities: np.ndarray = field(repr=False)  # (windows, cells)

    def as_dict(self) -> dict:
        return {"mean_utility": round(self.mean_utility, 4),
                "ssr": [round(x, 4) for x in self.ssr],
                "mean_reward": round(self.mean_reward, 4), "mean_se": round(self.mean_se, 4)}


def run_policy(policy, config: SimConfig, windows: int, cells: int, seed: int,
               shaper: RewardShaper | None = None, progress: bool = False) -> PolicyResult:
    """Run ``policy`` for ``windows`` on ``cells`` cells seeded with ``seed``. Reward uses the
    saturated threshold (gamma_t = gamma_max), i.e. the reward a trained policy is judged by."""
    shaper = shaper or RewardShaper()
    sim = RanSimulator(config, n_cells=cells, seed=seed)
    state = sim.reset()
    utils, ssrs, rews, ses = [], [], [], []
    it = range(windows)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=getattr(policy, "name", "policy"), leave=False)
    t_sat = 10**12
    for _ in it:
        state, k = sim.step_actions(policy.act(sim, state))
        utils.append(k.utility)
        ssrs.append(k.ssr)
        ses.append(k.spectral_efficiency)
        rews.append(shaper.reward(k.utility, t_sat))
    u = np.asarray(utils)
    return PolicyResult(getattr(policy, "name", "policy"), float(u.mean()),
                        np.asarray(ssrs).mean((0, 1)).tolist(), float(np.mean(rews)),
                        float(np.mean(ses)), u)


def evaluate(config: SimConfig | None = None, windows: int = 50, cells: int = 2, seed: int = 0,
             oracle_search: str = "full", search_windows: int | None = None,
             shaper: RewardShaper | None = None, progress: bool = False) -> dict:
    """Every baseline on the same traffic; returns a JSON-ready dict with the oracle margin."""
    config = config or SimConfig()
    codec = config.codec
    fixed_a, _ = search_best_fixed(config, search_windows or windows, cells, seed)
    policies = [RandomPolicy(seed), equal_split(codec), DemandProportionalPolicy(config),
                FixedPolicy(codec.decode(fixed_a), codec, name="best_fixed"),
                OraclePolicy(search=oracle_search, extra=(fixed_a,))]
    res = {p.name: run_policy(p, config, windows, cells, seed, shaper, progress)
           for p in policies}
    out = {name: r.as_dict() for name, r in res.items()}
    out["best_fixed"]["units"] = codec.decode(fixed_a).tolist()
    o, f = res["oracle"].mean_utility, res["best_fixed"].mean_utility
    out["oracle_margin_over_best_fixed"] = round((o - f) / abs(f), 4)
    out["setup"] = {"profile": config.profile, "windows": windows, "cells": cells, "seed": seed,
                    "oracle_search": oracle_search, "n_actions": codec.n_actions}
    return out
