"""Decision-time planning distilled into the served student.

Why: the model-known planner (one-step MPC over sampled futures, ``slicetwin.sim.baselines``) is
the strongest causal policy we have, but it reads the simulator's hidden state and steps 98
copies per future per decision; the controller serves a 16-unit network on three numbers. A
window's utility is separable by slice, so what the planner knows about a split is three
per-slice tables f_n(v) (``slicetwin.sim.search.window_tables``). We sample those tables along
the planner's own trajectory and regress them onto the observed state with a 16-unit network
whose head *is* the three tables. Regression averages the sampled futures given what the gNB
reports: the target is E[f | state], the best one-step policy on that state.

Summing the tables over slices is a fixed linear map (3 x n_values -> n_actions), so it folds
into the head: the served graph is the ordinary ``StudentMLP`` (Gemm/Relu, 3 -> 16 -> 16 ->
4,851), with the same contract and latency as every other student.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm, trange

from slicetwin.core.actions import ActionCodec
from slicetwin.core.state import STATE_DIM, state_from_arrivals
from slicetwin.sim.config import SimConfig
from slicetwin.sim.search import best_split, unit_values, window_tables
from slicetwin.sim.simulator import RanSimulator
from trainer.nets import StateNorm, StudentMLP, mlp


@dataclass
class PlanDistillConfig:
    cells: int = 16  # simulated cells stepped together while collecting
    windows: int = 1500  # windows per cell: cells x windows labels (1,500: tuning seeds, training.md)
    futures: int = 1  # sampled next windows per label; 1 is unbiased, the regression averages
    horizon: int = 1  # windows per label with the split held (1: the planner's one step)
    discount: float = 0.5  # weight of window h of the horizon: discount ** h
    hidden: int = 16  # the served student's width (paper: 4 or 16)
    steps: int = 4000  # gradient steps of the regression
    batch_size: int = 256
    lr: float = 3e-3
    lr_final: float = 1e-4  # cosine decay
    holdout: float = 0.1  # share of states kept aside to report the regression's error
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        for k in ("cells", "windows", "futures", "horizon", "hidden", "steps", "batch_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not 0 <= self.discount <= 1:
            raise ValueError(f"discount must be in [0, 1], got {self.discount}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")


@dataclass
class PlanDistillResult:
    student: StudentMLP  # the folded, servable student
    states: np.ndarray  # (N, 3) the collected states
    train_mse: float
    holdout_mse: float  # against single sampled futures: includes their noise
    collect_s: float
    fit_s: float
    config: dict


def collect_planner_tables(sim_cfg: SimConfig, cfg: PlanDistillConfig, seed: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """States the gNB would report and the planner's sampled per-slice tables for them, along the
    planner's own trajectory on ``seed``'s traffic: ((N, 3) float32, (N, n_values, 3) float32)."""
    sim = RanSimulator(sim_cfg, n_cells=cfg.cells, seed=seed)
    sim.reset()
    rng = np.random.default_rng([int(seed), 0x51A7])
    state = state_from_arrivals(sim.state.last_arrived)
    states, tables = [], []
    for _ in trange(cfg.windows, desc="planner tables", leave=False, disable=not cfg.progress):
        tab = window_tables(sim, rng, cfg.futures, cfg.horizon, cfg.discount)
        states.append(np.asarray(state, np.float32))
        tables.append(tab.astype(np.float32))
        state, _ = sim.step_actions(best_split(tab, sim.codec)[0])
    return np.concatenate(states), np.concatenate(tables)


class FactoredStudent(nn.Module):
    """A student whose head outputs per-slice tables (3 x n_values), not one logit per action.

    Unlike ``FactoredQNetwork`` the tables are not forced monotone: the head must stay linear to
    fold into a ``StudentMLP``."""

    def __init__(self, codec: ActionCodec, hidden: int = 16):
        super().__init__()
        self.codec = codec
        v = unit_values(codec)
        self.v_min, self.n_values = int(v[0]), len(v)
        self.norm = StateNorm(STATE_DIM)
        self.body = mlp(STATE_DIM, (hidden, hidden))
        self.head = nn.Linear(hidden, 3 * self.n_values)
        self.hidden = hidden

    def tables(self, state: torch.Tensor) -> torch.Tensor:
        """(B, n_values, 3) predicted f_n(v), the layout of ``window_tables``."""
        return self.head(self.body(self.norm(state))).view(-1, 3, self.n_values).transpose(1, 2)

    def expansion(self) -> torch.Tensor:
        """(n_actions, 3 * n_values) 0/1: logit(a) = sum_n table_n(u_n(a))."""
        idx = torch.as_tensor(self.codec.table - self.v_min)  # (A, 3)
        m = torch.zeros(self.codec.n_actions, 3 * self.n_values)
        rows = torch.arange(self.codec.n_actions)
        for n in range(3):
            m[rows, n * self.n_values + idx[:, n]] = 1.0
        return m

    def to_student(self) -> StudentMLP:
        """The same function as a ``StudentMLP`` (head folded with the expansion)."""
        out = StudentMLP(STATE_DIM, self.codec.n_actions, self.hidden)
        m = self.expansion()
        with torch.no_grad():
            out.norm.load_state_dict(self.norm.state_dict())
            src = [x for x in self.body if isinstance(x, nn.Linear)] + [self.head]
            dst = [x for x in out.net if isinstance(x, nn.Linear)]
            for d, s in zip(dst[:-1], src[:-1], strict=True):
                d.weight.copy_(s.weight)
                d.bias.copy_(s.bias)
            dst[-1].weight.copy_(m @ self.head.weight)
            dst[-1].bias.copy_(m @ self.head.bias)
        return out


def fit_student(states: np.ndarray, tables: np.ndarray, codec: ActionCodec,
                cfg: PlanDistillConfig, init: FactoredStudent | None = None
                ) -> tuple[FactoredStudent, float, float]:
    """Least squares of the sampled tables on the states. Returns (model, train MSE, holdout MSE).

    ``init`` continues from an earlier model (a copy; its state normaliser is kept, so the
    earlier fit stays valid) instead of starting afresh."""
    torch.manual_seed(cfg.seed)
    x = torch.as_tensor(states, dtype=torch.float32)
    y = torch.as_tensor(tables, dtype=torch.float32)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
    n_hold = int(len(x) * cfg.holdout)
    hold, train = perm[:n_hold], perm[n_hold:]
    if init is None:
        model = FactoredStudent(codec, cfg.hidden)
        model.norm.fit(x[train])
    else:
        model = copy.deepcopy(init)
    opt = torch.optim.Adam(model.parameters(), cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, cfg.lr_final)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    bar = tqdm(range(cfg.steps), desc="fit student", leave=False, disable=not cfg.progress)
    for _ in bar:
        idx = train[torch.randint(0, len(train), (cfg.batch_size,), generator=gen)]
        loss = ((model.tables(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        train_mse = float(((model.tables(x[train]) - y[train]) ** 2).mean())
        hold_mse = float(((model.tables(x[hold]) - y[hold]) ** 2).mean()) if n_hold else float("nan")
    return model, train_mse, hold_mse


def plan_distill(sim_cfg: SimConfig, cfg: PlanDistillConfig, seed: int) -> PlanDistillResult:
    """Collect the planner's tables on ``seed``'s traffic and fit the served student."""
    t0 = time.perf_counter()
    states, tables = collect_planner_tables(sim_cfg, cfg, seed)
    t1 = time.perf_counter()
    model, train_mse, hold_mse = fit_student(states, tables, sim_cfg.codec, cfg)
    return PlanDistillResult(model.to_student(), states, train_mse, hold_mse,
                             round(t1 - t0, 1), round(time.perf_counter() - t1, 1), asdict(cfg))
