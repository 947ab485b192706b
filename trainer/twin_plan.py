"""Planning with the learned twin, distilled into the served student.

Why: after a change of traffic regime a model-free learner must rediscover the value of 4,851
splits from the few real windows it gets. The twin already knows how a slice's SLA satisfaction
and the cell's spectral efficiency respond to bandwidth given the arrivals (physics that a change
of user mix leaves alone), so it can answer "what would this window's utility have been under
split a" for every split at every real state. Those answers are projected onto per-slice tables
(utility is separable by slice, so the projection keeps what a split-choosing policy needs) and
regressed onto the three reported numbers by ``trainer.plan_distill``'s table-head student, the
same path as the model-known planner's labels. The served graph is the ordinary ``StudentMLP``.

Unlike the simulator planner, this one uses only what a deployment has: real transitions and the
twin fitted on them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from slicetwin.core.actions import ActionCodec
from slicetwin.core.transitions import Transitions
from slicetwin.sim.config import SimConfig
from slicetwin.sim.search import unit_values
from slicetwin.sim.simulator import RanSimulator
from slicetwin.twin import Twin, TwinConfig
from slicetwin.twin.history import history_index
from slicetwin.twin.rating import rate_actions
from trainer.collect import collect_transitions
from trainer.plan_distill import FactoredStudent, PlanDistillConfig, PlanDistillResult, fit_student


@dataclass
class TwinPlanConfig:
    plan_rows: int = 96  # real states planned per refresh (newest first, then a random share)
    newest: float = 0.5  # share of plan_rows taken from the newest rows; the rest at random
    chunk: int = 5  # states per twin call (chunk x n_actions rows)
    futures: int = 0  # 0: the twin's mean prediction; k: the mean of k sampled next windows

    def __post_init__(self) -> None:
        if self.plan_rows < 1 or self.chunk < 1 or self.futures < 0:
            raise ValueError("plan_rows and chunk must be >= 1, futures >= 0")
        if not 0 <= self.newest <= 1:
            raise ValueError(f"newest must be in [0, 1], got {self.newest}")


def plan_rows(n: int, cfg: TwinPlanConfig, rng: np.random.Generator) -> np.ndarray:
    """Which of ``n`` real rows to plan on: the newest share, then a random draw of the rest."""
    if n <= cfg.plan_rows:
        return np.arange(n)
    k_new = int(round(cfg.plan_rows * cfg.newest))
    new = np.arange(n - k_new, n)
    old = rng.choice(n - k_new, cfg.plan_rows - k_new, replace=False)
    return np.sort(np.concatenate([old, new]))


def twin_utilities(twin, data: Transitions, rows: np.ndarray, chunk: int = 5,
                   futures: int = 0, seed: int = 0, pessimism: float | None = None) -> np.ndarray:
    """(R, n_actions) the twin's expected utility of every split at each real row's state, with
    the row's real history. ``futures`` 0 takes the twin's mean prediction (one pass, the LSTM's
    history shared by all splits: ``slicetwin.twin.rating``); k > 0 averages k sampled next
    windows (SLA satisfaction is not linear in the arrivals, so the utility at the mean arrivals
    is not the mean utility). ``pessimism`` kappa rates a split by its members' mean utility less
    kappa times their spread instead: the maximum over 4,851 ratings favours the splits the
    members disagree on, whose ratings are more often too high (it did not pay on tuning seeds:
    docs/training.md, so planning uses the mean prediction)."""
    if pessimism is not None and (pessimism < 0 or futures):
        raise ValueError("pessimism must be >= 0, and rates the mean prediction (futures 0)")
    h = twin.history_len
    idx = history_index(data, h, rows)  # (R, H) oldest first, ending at the row
    states = data.state[idx]  # (R, H, 3)
    past = data.action[idx[:, :-1]]  # (R, H-1): the action applied after each past state
    all_a = np.arange(twin.n_actions, dtype=np.int64)
    if futures:
        return _sampled_utilities(twin, states, past, futures, seed)
    out = np.empty((len(rows), twin.n_actions), np.float32)
    for i in range(0, len(rows), chunk):
        s, p = states[i:i + chunk], past[i:i + chunk]
        if pessimism is None:
            out[i:i + len(s)] = rate_actions(twin, s, p, all_a)
        else:
            m = rate_actions(twin, s, p, all_a, members=True)
            out[i:i + len(s)] = m.mean(0) - pessimism * m.std(0)
    return out


SAMPLED_CHUNK = 20  # states per sampled predict call; the draws depend on it, so it stays fixed


def _sampled_utilities(twin, states: np.ndarray, past: np.ndarray, futures: int,
                       seed: int) -> np.ndarray:
    """The mean of ``futures`` sampled next windows' utility, every split at every state."""
    n_a = twin.n_actions
    all_a = np.arange(n_a, dtype=np.int64)
    out = np.empty((len(states), n_a), np.float32)
    for i in range(0, len(states), SAMPLED_CHUNK):
        s = states[i:i + SAMPLED_CHUNK]
        acts = np.concatenate([np.repeat(past[i:i + SAMPLED_CHUNK], n_a, axis=0),
                               np.tile(all_a, len(s))[:, None]], axis=1)
        rep = np.repeat(s, n_a, axis=0)
        u = np.mean([twin.predict(rep, acts, seed=seed + 7919 * i + k, sample=True)["utility"]
                     for k in range(futures)], axis=0)
        out[i:i + len(s)] = u.reshape(len(s), n_a)
    return out


_PROJECTIONS: dict[tuple, np.ndarray] = {}


def table_projection(codec: ActionCodec) -> np.ndarray:
    """(3 * n_values, n_actions) least-squares map from utilities over all splits to per-slice
    tables whose sums reproduce them best (the pseudo-inverse of the 0/1 expansion)."""
    key = (codec.n_units, codec.min_units, codec.n_slices)
    if key not in _PROJECTIONS:
        v = unit_values(codec)
        e = np.zeros((codec.n_actions, 3 * len(v)))
        rows = np.arange(codec.n_actions)
        for n in range(3):
            e[rows, n * len(v) + codec.table[:, n] - v[0]] = 1.0
        _PROJECTIONS[key] = np.linalg.pinv(e)
    return _PROJECTIONS[key]


def separable_tables(utilities: np.ndarray, codec: ActionCodec) -> np.ndarray:
    """(R, n_actions) -> (R, n_values, 3): the layout of ``window_tables`` and ``fit_student``."""
    flat = np.asarray(utilities, np.float64) @ table_projection(codec).T  # (R, 3 * n_values)
    return flat.reshape(len(flat), 3, -1).transpose(0, 2, 1).astype(np.float32)


@dataclass
class TwinPlanFit:
    model: FactoredStudent  # the table-head student (``to_student()`` is the servable one)
    ratings: np.ndarray  # (R, n_actions) the twin's expected utility of every split
    train_mse: float
    holdout_mse: float
    plan_s: float
    fit_s: float


def fit_to_twin(twin, data: Transitions, rows: np.ndarray, codec: ActionCodec,
                cfg: PlanDistillConfig, init: FactoredStudent | None = None, futures: int = 0,
                seed: int = 0, chunk: int = 5) -> TwinPlanFit:
    """The twin's ratings at ``rows``, projected onto per-slice tables, fitted by the table-head
    student (continuing from ``init`` when given): the one path of every twin-planned student."""
    t0 = time.perf_counter()
    ratings = twin_utilities(twin, data, rows, chunk, futures, seed)
    tables = separable_tables(ratings, codec)
    t1 = time.perf_counter()
    model, train_mse, hold_mse = fit_student(data.state[rows], tables, codec, cfg, init=init)
    return TwinPlanFit(model, ratings, train_mse, hold_mse, t1 - t0, time.perf_counter() - t1)


@dataclass
class TwinTeacherConfig:
    """The learned twin as the planner of ``experiment plan-distill --teacher twin``."""

    cells: int = 8  # cells of real data the twin is fitted on
    windows: int = 1200  # windows per cell of uniformly random splits: 4.8 h of the diurnal day
    #   per cell (400, the twin-fidelity bench's size, missed hours: docs/training.md)
    plan_rows: int = 600  # real states the twin rates every split at (the regression's labels)
    futures: int = 0  # see ``TwinPlanConfig``
    max_fit_seconds: float = 60.0

    def __post_init__(self) -> None:
        for k in ("cells", "windows", "plan_rows"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")


def twin_plan_distill(sim_cfg: SimConfig, tcfg: TwinTeacherConfig, pcfg: PlanDistillConfig,
                      seed: int, progress: bool = False) -> PlanDistillResult:
    """Real data on ``seed``'s traffic (random splits), the twin fitted on it, the twin's ratings
    of every split at ``plan_rows`` of its states, and the served student fitted to them. Arrivals
    never depend on the allocation, so these states are those any policy would have met."""
    t0 = time.perf_counter()
    sim = RanSimulator(sim_cfg, n_cells=tcfg.cells, seed=seed)
    data = collect_transitions(tcfg.windows, sim=sim, seed=seed, progress=progress)
    twin = Twin(TwinConfig(seed=seed, n_units=sim_cfg.n_units,
                           max_fit_seconds=tcfg.max_fit_seconds), utility=sim_cfg.utility)
    twin.fit(data, progress=progress)
    rng = np.random.default_rng([seed, 0x7717])
    rows = np.sort(rng.choice(len(data), min(tcfg.plan_rows, len(data)), replace=False))
    fit = fit_to_twin(twin, data, rows, sim_cfg.codec, pcfg, futures=tcfg.futures, seed=seed)
    collect_s = time.perf_counter() - t0 - fit.fit_s
    return PlanDistillResult(fit.model.to_student(), data.state[rows], fit.train_mse,
                             fit.holdout_mse, round(collect_s, 1), round(fit.fit_s, 1),
                             asdict(pcfg) | {"twin": asdict(tcfg),
                                             "twin_metrics": {k: v for k, v in twin.metrics.items()
                                                              if isinstance(v, (int, float))}})
