"""The demo's shadow baselines: beside the served policy, what equal split, demand-proportional,
the tuned heuristic and the best fixed split in hindsight earned on the same cells' traffic.

``DemoShadow`` steps ``slicetwin.sim.shadow.ShadowBaselines`` once per demo window and keeps, per
window, the served utility and each baseline's, over all cells and over the cells whose allocation
came from the policy itself (not ε-exploration, not the fallback): the same cell-windows on both
sides of every comparison. The best fixed split is chosen in hindsight over the windows asked
about (all of them, or the last 5 minutes of traffic), from the per-slice terms of every unit
count (``search.best_split``), so it is the ceiling of any static configuration on exactly that
traffic. Margins are ``served / baseline - 1``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from slicetwin.sim.baselines import TunedProportionalPolicy, tune_proportional
from slicetwin.sim.config import SimConfig
from slicetwin.sim.search import best_split
from slicetwin.sim.shadow import ShadowBaselines
from slicetwin.sim.simulator import RanSimulator

BEST_FIXED = "best_fixed"
LIVE_LOOP_BLOCK = 100  # windows per block of the live-loop checks (issue 15: "over any 100")
RECENT_S = 300.0  # "the last 5 minutes" of traffic
# the tuned heuristic's grid search at demo start: one training seed, small (docs/demo.md)
TUNE_BUDGET = {"windows": 50, "cells": 2, "seeds": (0,)}


def tune_heuristic(config: SimConfig) -> tuple[TunedProportionalPolicy, dict]:
    """The tuned heuristic for the demo's profile, grid-searched on training traffic (seed 0 of
    the protocol's training range, never the demo's own traffic); returns it and its budget."""
    pol, _ = tune_proportional(config, TUNE_BUDGET["windows"], TUNE_BUDGET["cells"],
                               TUNE_BUDGET["seeds"])
    return pol, {**pol.params(), "tuned_on": {**TUNE_BUDGET, "seeds": list(TUNE_BUDGET["seeds"])}}


class _Grow:
    """A growing float64 array of rows of a fixed shape (amortised O(1) append)."""

    def __init__(self, shape: tuple[int, ...]):
        self.a = np.zeros((64, *shape))
        self.n = 0

    def append(self, row) -> None:
        if self.n == len(self.a):
            self.a = np.concatenate([self.a, np.zeros_like(self.a)])
        self.a[self.n] = row
        self.n += 1

    def view(self) -> np.ndarray:
        return self.a[:self.n]


class DemoShadow:
    """Shadow baselines of the demo's cells plus the per-window ledger of what everyone earned.

    The heuristics shadow every cell; the best fixed split is tracked on ``bank_cells`` cells
    (the first ones; default all), and compared with the served utility of those same cells.
    """

    def __init__(self, sim: RanSimulator, tuned: TunedProportionalPolicy | None = None,
                 tuned_info: dict | None = None, bank_cells: int | None = None):
        extra = {"tuned_proportional": tuned} if tuned is not None else {}
        nb = sim.n_cells if bank_cells is None else max(0, min(int(bank_cells), sim.n_cells))
        self.base = ShadowBaselines(sim, extra, bank_cells=np.arange(nb))
        self.codec = sim.codec
        self.tuned_info = tuned_info
        self.recent_windows = max(1, round(RECENT_S / sim.config.window_s))
        self.names = self.base.names
        self.n_cells, self.n_bank = sim.n_cells, nb
        nv = len(self.base.values)
        k = len(self.names)
        # per window: [served, *heuristics] summed over all cells and over policy cells; on the
        # bank's cells: served, and the per-slice terms at every unit count, summed
        self.sum_all = _Grow((k + 1,))
        self.sum_pol = _Grow((k + 1,))
        self.n_pol = _Grow(())
        self.bank_all = _Grow((1 + nv * 3,))  # [served, tables.ravel()]
        self.bank_pol = _Grow((2 + nv * 3,))  # [served, count, tables.ravel()]
        self._live: tuple[float, dict] | None = None

    @property
    def windows(self) -> int:
        return self.sum_all.n

    def record(self, served: np.ndarray, policy_cells: np.ndarray) -> dict[str, float]:
        """Step the shadows through the window the real cells just ran; ``served``: (cells,)
        utility the real cells earned, ``policy_cells``: (cells,) bool. Returns each heuristic's
        mean utility over all cells in this window."""
        w = self.base.step()
        served = np.asarray(served, np.float64)
        m = np.asarray(policy_cells, bool)
        cols = [served, *(w.utility[n] for n in self.names)]
        self.sum_all.append([c.sum() for c in cols])
        self.sum_pol.append([c[m].sum() for c in cols])
        self.n_pol.append(float(m.sum()))
        nb, mb = self.n_bank, m[:self.n_bank]
        self.bank_all.append(np.concatenate([[served[:nb].sum()], w.tables.sum(0).ravel()]))
        self.bank_pol.append(np.concatenate([[served[:nb][mb].sum(), float(mb.sum())],
                                             w.tables[mb].sum(0).ravel()]))
        return {n: float(w.utility[n].mean()) for n in self.names}

    # ------------------------------------------------------------------ figures
    def figures(self, last: int | None = None) -> dict:
        """Mean utility of the served policy and of every baseline over the last ``last``
        windows (None: all), over all cells and over policy cells, with the margins."""
        n = self.windows
        lo = 0 if last is None else max(0, n - last)
        out = {"windows": n - lo, "from_window": lo}
        if n - lo == 0:
            return out
        nv = len(self.base.values)
        ba = self.bank_all.view()[lo:].sum(0)
        bp = self.bank_pol.view()[lo:].sum(0)
        out["all_cells"] = self._side(self.sum_all.view()[lo:].sum(0), (n - lo) * self.n_cells,
                                      ba[0], (n - lo) * self.n_bank, ba[1:].reshape(nv, 3))
        npol = float(self.n_pol.view()[lo:].sum())
        out["policy_cells"] = (self._side(self.sum_pol.view()[lo:].sum(0), npol, bp[0],
                                          bp[1], bp[2:].reshape(nv, 3))
                               if npol > 0 else {"cell_windows": 0})
        return out

    def live_figures(self, max_age_s: float = 1.0) -> dict:
        """``figures`` overall and over the last 5 minutes, recomputed at most every
        ``max_age_s`` (the views redraw every window)."""
        now = time.monotonic()
        if self._live is None or now - self._live[0] >= max_age_s:
            self._live = (now, {"overall": self.figures(),
                                "recent": self.figures(self.recent_windows)})
        return self._live[1]

    def _side(self, sums: np.ndarray, count: float, bank_served: float, bank_count: float,
              tables: np.ndarray) -> dict:
        served = float(sums[0] / count)
        out = {"cell_windows": int(count), "served": served, "baselines": {}}
        for i, name in enumerate(self.names):
            out["baselines"][name] = _margin(served, float(sums[i + 1] / count))
        if bank_count > 0:
            a, best = best_split(tables / bank_count, self.codec)
            b_served = float(bank_served / bank_count)
            out["baselines"][BEST_FIXED] = {
                **_margin(b_served, float(best)), "units": self.codec.decode(int(a)).tolist(),
                "served_same_cells": b_served, "cells": self.n_bank,
                "cell_windows": int(bank_count)}
        return out

    def best_fixed_per_window(self) -> tuple[list[int], np.ndarray, np.ndarray] | None:
        """The best fixed split in hindsight over the whole run, its mean utility over the
        bank's cells in every window and the served utility of those cells (for the plot)."""
        if not self.n_bank or not self.windows:
            return None
        nv = len(self.base.values)
        tab = self.bank_all.view()[:, 1:].reshape(-1, nv, 3)
        a, _ = best_split(tab.sum(0) / max(1, len(tab) * self.n_bank), self.codec)
        u = self.codec.decode(int(a))
        j = u - self.base.values[0]
        per = tab[:, j, np.arange(3)].sum(1) / self.n_bank
        return u.tolist(), per, self.bank_all.view()[:, 0] / self.n_bank

    def live_loop(self, block: int = LIVE_LOOP_BLOCK) -> dict:
        """Issue 15's live-loop checks over sliding ``block``-window means (all cells): the worst
        margin of the served utility over the safe heuristic (demand-proportional), and the first
        window whose block reaches 99 % of, and then reaches, the best fixed split in hindsight
        (on the bank's cells, served utility of the same cells). None where never reached."""
        out: dict = {"block_windows": block, "windows": self.windows}
        if self.windows < block:
            return out
        k = np.ones(block)
        sums = self.sum_all.view()
        j = 1 + self.names.index("proportional")
        served, prop = (np.convolve(sums[:, i], k, "valid") for i in (0, j))
        margin = served / np.where(prop > 0, prop, np.nan) - 1.0
        worst = int(np.nanargmin(margin))
        out["worst_margin_vs_proportional"] = float(margin[worst])
        out["worst_block_ends_at_window"] = worst + block - 1
        best = self.best_fixed_per_window()
        if best is not None:
            units, per, served_bank = best
            ratio = np.convolve(served_bank, k, "valid") / np.convolve(per, k, "valid")
            for name, level in (("windows_to_99pct_best_fixed", 0.99),
                                ("windows_to_best_fixed", 1.0)):
                hit = np.flatnonzero(ratio >= level)
                out[name] = int(hit[0] + block - 1) if hit.size else None
            out["best_fixed_units"] = units
            out["last_block_ratio_to_best_fixed"] = float(ratio[-1])
        return out

    def summary(self) -> dict:
        """``summary.json``'s ``shadow_baselines``: overall and over the last 5 minutes."""
        return {"baselines": [*self.names, BEST_FIXED], "live_loop": self.live_loop(),
                "tuned_proportional": self.tuned_info,
                "overall": self.figures(),
                "last_5min": self.figures(self.recent_windows),
                "recent_windows": self.recent_windows,
                "best_fixed_cells": self.n_bank, "cells": self.n_cells,
                "margin": "served / baseline - 1 on the same cell-windows; policy_cells: only "
                          "the cell-windows whose allocation came from the policy; best fixed: "
                          "on the first best_fixed_cells cells, against the served utility of "
                          "those cells (served_same_cells)"}


def _margin(served: float, baseline: float) -> dict:
    return {"utility": baseline, "margin": served / baseline - 1.0 if baseline > 0 else math.nan,
            "difference": served - baseline}
