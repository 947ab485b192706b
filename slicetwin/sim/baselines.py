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
from tqdm import tqdm

from slicetwin.core.actions import ActionCodec
from slicetwin.core.state import STATE_SCALES, state_from_arrivals
from slicetwin.core.utility import RewardShaper
from slicetwin.sim.config import SimConfig
from slicetwin.sim.search import best_split, fixed_tables, window_tables
from slicetwin.sim.simulator import RanSimulator


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
    """Clairvoyant one-step oracle: per cell, the allocation with the best utility in the coming
    window, scored on copies of the true state with common random numbers (it sees the window's
    arrivals and fading; it is myopic about the backlog it leaves).

    ``search="full"``: exact over all actions via the per-slice decomposition
    (``slicetwin.sim.search``, n_units - 2 copies per cell); ``"brute"``: the same maximum by
    stepping one copy per action (for checking); ``"coarse"``: a 1 MHz grid refined +-``radius``
    units around the best few (and ``extra`` actions), a labelled approximation below the full
    search that never enters a reported ratio."""

    name = "oracle"

    def __init__(self, search: str = "full", chunk: int = 1024, radius: int = 4, top: int = 3,
                 extra: tuple[int, ...] = ()):
        if search not in ("full", "brute", "coarse"):
            raise ValueError("search must be 'full', 'brute' or 'coarse'")
        self.search, self.chunk, self.radius, self.top = search, chunk, radius, top
        self.extra = tuple(int(x) for x in extra)
        if search == "coarse":
            self.name = "oracle_coarse"

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
            a, u = best_split(window_tables(sim.replicate(cell, 1)), codec)
            return int(a[0]), float(u[0])
        if self.search == "brute":
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
        if self.search == "full":
            return best_split(window_tables(sim), sim.codec)[0]
        return np.array([self.best(sim, c)[0] for c in range(sim.n_cells)], dtype=np.int64)


class PlannerPolicy:
    """Model-known causal planner (one-step MPC): it knows the simulator's model and the cells'
    true state (queues, regimes, ON users, running surges, time of day) but not the realised
    future. Per decision it samples ``futures`` next windows from the true state with fresh
    traffic and channel randomness, and takes the allocation with the best mean utility over them
    (exact over all actions, ``slicetwin.sim.search``). The ceiling for a twin-based method."""

    name = "planner"

    def __init__(self, futures: int = 8, seed: int = 0):
        if futures < 1:
            raise ValueError("futures must be >= 1")
        self.futures = int(futures)
        self.rng = np.random.default_rng([int(seed), 0x91A7])

    def act(self, sim: RanSimulator, state: np.ndarray) -> np.ndarray:
        return best_split(window_tables(sim, self.rng, self.futures), sim.codec)[0]


class TunedProportionalPolicy:
    """Demand-proportional with per-slice weights and offsets: bandwidth share of slice n
    proportional to ``weights[n] * d_n + offsets[n]``, d = last window's offered bits as shares
    of their total (equal shares when nothing arrived). ``tune_proportional`` grid-searches them
    on training traffic."""

    name = "tuned_proportional"

    def __init__(self, config: SimConfig, weights=(1.0, 1.0, 1.0), offsets=(0.0, 0.0, 0.0)):
        self.mean_bits = np.array([t.size.mean() for t in config.traffic])
        self.weights = np.asarray(weights, np.float64)
        self.offsets = np.asarray(offsets, np.float64)

    def units(self, codec: ActionCodec, state: np.ndarray) -> np.ndarray:
        bits = np.asarray(state, np.float64) * STATE_SCALES * self.mean_bits
        tot = bits.sum(-1, keepdims=True)
        d = np.where(tot > 0, bits / np.where(tot > 0, tot, 1.0), 1.0 / 3)
        return codec.from_weights(self.weights * d + self.offsets)

    def act(self, sim: RanSimulator, state: np.ndarray) -> np.ndarray:
        units = self.units(sim.codec, state)
        return np.asarray(sim.codec.encode(units), dtype=np.int64).reshape(sim.n_cells)

    def params(self) -> dict:
        return {"weights": self.weights.round(4).tolist(), "offsets": self.offsets.round(4).tolist()}


TUNE_WEIGHTS = ((1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 1.0, 0.5), (1.0, 1.0, 2.0),
                (1.0, 1.0, 4.0), (1.0, 2.0, 1.0), (1.0, 0.5, 1.0), (1.0, 2.0, 0.5))
TUNE_OFFSETS = tuple((a, b, c) for a in (0.0, 0.03) for b in (0.0, 0.1, 0.3, 0.6)
                     for c in (0.0, 0.1, 0.3))


def tune_proportional(config: SimConfig, windows: int, cells: int, seeds,
                      progress: bool = False) -> tuple[TunedProportionalPolicy, float]:
    """Grid search (``TUNE_WEIGHTS`` x ``TUNE_OFFSETS``, 192 settings) of the tuned heuristic's
    weights and offsets on the traffic of ``seeds`` (training seeds); all settings run as copies
    of the same cells, so they see identical traffic. Returns (policy, its mean utility)."""
    grid = [(w, o) for w in TUNE_WEIGHTS for o in TUNE_OFFSETS]
    M = len(grid)
    weights = np.repeat(np.array([g[0] for g in grid]), cells, axis=0)
    offsets = np.repeat(np.array([g[1] for g in grid]), cells, axis=0)
    pol = TunedProportionalPolicy(config, weights, offsets)
    tot = np.zeros(M)
    seeds = [int(x) for x in seeds]
    for seed in _progress(seeds, "tune heuristic", progress):
        sim = RanSimulator(config, n_cells=cells, seed=seed)
        sim.reset()
        big = sim.replicate_many(np.tile(np.arange(cells), M))
        big.parallel = True
        s = state_from_arrivals(big.state.last_arrived)
        for _ in range(windows):
            s, k = big.step(pol.units(big.codec, s))
            tot += k.utility.reshape(M, cells).mean(1)
    j = int(np.argmax(tot))
    w, o = grid[j]
    return TunedProportionalPolicy(config, w, o), float(tot[j] / (windows * len(seeds)))


def _progress(it, desc: str, on: bool):
    if not on:
        return it

    return tqdm(it, desc=desc, leave=False)


def fixed_tables_for(config: SimConfig, windows: int, cells: int, seeds,
                     progress: bool = False) -> np.ndarray:
    """Per seed and cell, the mean per-slice utility terms of every fixed unit count:
    (seeds, cells, n_values, 3) (``slicetwin.sim.search.fixed_tables``)."""
    out = []
    for seed in _progress(list(seeds), "fixed splits", progress):
        sim = RanSimulator(config, n_cells=cells, seed=int(seed))
        sim.reset()
        out.append(fixed_tables(sim, windows))
    return np.stack(out)


def best_fixed(config: SimConfig, windows: int, cells: int, seeds,
               progress: bool = False) -> tuple[int, float]:
    """The fixed allocation (exact, over all actions) with the best mean utility over every
    cell-window of ``seeds``. Returns (action, mean utility)."""
    tab = fixed_tables_for(config, windows, cells, seeds, progress).mean((0, 1))
    a, u = best_split(tab, config.codec)
    return int(a), float(u)


def search_best_fixed(config: SimConfig, windows: int, cells: int, seed: int,
                      progress: bool = False) -> tuple[int, float]:
    """Best fixed allocation in hindsight on one seed's traffic."""
    return best_fixed(config, windows, cells, [seed], progress)


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
