"""A held-out estimate of a policy's utility on real transitions that does not come from the twin.

The promotion gate needs, for real gNB data (no simulator of that traffic), a figure a candidate
cannot flatter by being trained against it. This one uses only the held-out rows (never seen by
the twin fit or the agents) and two facts of the scenario:

- arrivals are exogenous: the packets that arrived in window t+1 (``Transitions.arrived``) would
  have arrived whatever allocation was chosen, so they are known for a counterfactual action;
- the utility is separable by slice: ``alpha * SE + sum_n beta_n * SSR_n``, and slice n's SSR
  depends on its own units and its own load.

Per slice, a binomial logistic model of the SLA-met share on (log units, log(1 + arrivals)) and
their product is fitted to the held-out rows (each packet a trial; the rows logged with many
different allocations thanks to exploration). A policy is scored by the model's SSR at the
units it would pick on each held-out state and that row's real arrivals; the ``alpha * SE`` term
is the logged one, the same for every policy (SE per slice is not reported).

Limits (docs/trainer_worker.md): a one-step estimate (the backlog a policy leaves to the next
window is ignored); a smooth monotone model of each slice's SSR, so a policy whose advantage
lies in sharp thresholds is judged by the smooth trend; units far outside those logged for a
slice are extrapolated (the share of such picks is reported as ``extrapolated``); with few
held-out rows the figure is noisy, so it is computed only from ``MIN_ROWS`` rows and the gate
keeps its margin.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from slicetwin.core.actions import ActionCodec
from slicetwin.core.transitions import Transitions
from slicetwin.core.utility import UtilityConfig

MIN_ROWS = 20  # held-out rows below which no estimate is made (each row: many packets)
_RIDGE = 1e-3


def _features(units: np.ndarray, arrived: np.ndarray) -> np.ndarray:
    lu = np.log(np.maximum(units, 1e-9))
    la = np.log1p(arrived)
    return np.stack([np.ones_like(lu), lu, la, lu * la], -1)


def _fit_logistic(x: np.ndarray, succ: np.ndarray, trials: np.ndarray,
                  iters: int = 50) -> np.ndarray:
    """Binomial logistic regression (IRLS with a small ridge): P(success) = sigmoid(x @ w)."""
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        g = x.T @ (succ - trials * p) - _RIDGE * w
        h = (x * (trials * p * (1 - p))[:, None]).T @ x + _RIDGE * np.eye(len(w))
        step = np.linalg.solve(h, g)
        w += step
        if np.abs(step).max() < 1e-8:
            break
    return w


class HeldoutSSRModel:
    """Per-slice SSR models fitted on held-out real transitions (see the module docstring)."""

    def __init__(self, data: Transitions, rows: np.ndarray, codec: ActionCodec,
                 utility: UtilityConfig | None = None):
        self.codec = codec
        self.utility = utility or UtilityConfig()
        self.rows = np.asarray(rows, np.int64)
        d = data[self.rows]
        self.state = np.asarray(d.state, np.float32)
        self.arrived = np.asarray(d.arrived, np.float64)
        self.se = np.asarray(d.se, np.float64)
        units = codec.decode(np.asarray(d.action, np.int64)).astype(np.float64)
        self.logged_range = (units.min(0), units.max(0))
        met = np.minimum(np.asarray(d.sla_met, np.float64), self.arrived)
        self.w = []
        for n in range(3):
            busy = self.arrived[:, n] > 0
            x = _features(units[busy, n], self.arrived[busy, n])
            self.w.append(_fit_logistic(x, met[busy, n], self.arrived[busy, n]))

    def ssr(self, units: np.ndarray) -> np.ndarray:
        """(rows, 3) predicted SSR with ``units`` (rows, 3) on each row's real arrivals."""
        out = np.ones((len(self.rows), 3))
        for n in range(3):
            z = _features(units[:, n].astype(np.float64), self.arrived[:, n]) @ self.w[n]
            p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
            out[:, n] = np.where(self.arrived[:, n] > 0, p, 1.0)
        return out

    def score(self, policy: Callable[[np.ndarray], np.ndarray]) -> dict:
        """Estimated mean utility of ``policy`` on the held-out states (``per_row``: each row's,
        for paired comparisons), and how much of it lies outside the logged units."""
        units = self.codec.decode(np.asarray(policy(self.state), np.int64).reshape(-1))
        beta = np.asarray(self.utility.beta, np.float64)
        u = self.utility.alpha * self.se + self.ssr(units) @ beta
        lo, hi = self.logged_range
        outside = ((units < lo) | (units > hi)).any(1)
        return {"utility": float(u.mean()), "extrapolated": float(outside.mean()),
                "rows": len(self.rows), "per_row": u}


def heldout_real_utility(policies: dict[str, Callable], data: Transitions, rows: np.ndarray,
                         codec: ActionCodec, utility: UtilityConfig | None = None
                         ) -> dict[str, dict] | None:
    """Each policy's held-out estimate on the same rows; None with fewer than ``MIN_ROWS``."""
    if len(rows) < MIN_ROWS:
        return None
    model = HeldoutSSRModel(data, rows, codec, utility)
    return {name: model.score(p) for name, p in policies.items()}
