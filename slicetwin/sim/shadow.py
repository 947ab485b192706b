"""Shadow baselines: what reference policies would have earned on the very traffic a set of cells
is serving, window by window, exactly.

Arrivals, regimes and fading never depend on the allocation (common random numbers, see
``slicetwin.sim.search``), so a copy of the cells taken right after ``reset`` and stepped with
another policy sees the same users, packets and channels as the real cells. ``ShadowBaselines``
keeps such copies:

- one copy of the cells per heuristic (equal split, demand-proportional, the tuned heuristic
  when given), each acting on its own observations exactly as ``baselines.run_policy`` does;
- the per-slice bank of ``search.diagonal_clones``: one copy per unit count v at (v, v, v), whose
  per-slice utility terms give every fixed split's utility at once (the utility is separable by
  slice), so the best fixed split in hindsight over any set of windows is ``search.best_split``
  of the summed terms.

Cost per window: (n_units - 2 + heuristics) simulated copies of every cell (98 + 3 for the
20 MHz / 200 kHz carrier); see docs/demo.md for measured figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slicetwin.core.state import state_from_arrivals
from slicetwin.sim.baselines import DemandProportionalPolicy, equal_split
from slicetwin.sim.search import contributions, diagonal_clones, step_diagonal, unit_values
from slicetwin.sim.simulator import RanSimulator


@dataclass
class ShadowWindow:
    """One window of the shadows, every cell."""

    utility: dict[str, np.ndarray]  # heuristic name -> (cells,) utility it earned
    tables: np.ndarray  # (bank cells, n_values, 3): per-slice terms, every slice at v units


class ShadowBaselines:
    """Copies of ``sim``'s cells that replay its traffic under the reference policies.

    Create it right after ``sim.reset()`` (before the first ``step``), then call ``step()`` once
    per window of ``sim``. ``policies``: extra observation-only policies by name (e.g. the tuned
    heuristic), each with ``act(sim, state)`` like those of ``slicetwin.sim.baselines``.
    ``bank_cells``: the cells whose every fixed split is tracked (default all; the bank costs
    n_units - 2 copies per cell, so a subset keeps a real-time loop fast).
    """

    def __init__(self, sim: RanSimulator, policies: dict | None = None,
                 bank_cells=None, parallel: bool | None = None):
        if sim.state is None or sim.t != 0:
            raise ValueError("shadow baselines start from a freshly reset simulator (t == 0)")
        codec = sim.codec
        self.codec = codec
        self.n_cells = sim.n_cells
        self.values = unit_values(codec)
        named = {"equal": equal_split(codec), "proportional": DemandProportionalPolicy(sim.config)}
        named.update(policies or {})
        self.policies = named
        self._copies = {}
        for name in named:
            c = sim.replicate_many(np.arange(sim.n_cells))
            self._copies[name] = (c, state_from_arrivals(c.state.last_arrived))
        self.bank_cells = (np.arange(sim.n_cells) if bank_cells is None
                           else np.asarray(bank_cells, np.int64).reshape(-1))
        self.bank = self._bank_units = None
        if len(self.bank_cells):
            self.bank, self._bank_units = diagonal_clones(sim, self.bank_cells)
        if parallel is not None and self.bank is not None:
            self.bank.parallel = bool(parallel)
        self.windows = 0

    @property
    def names(self) -> list[str]:
        return list(self.policies)

    def step(self) -> ShadowWindow:
        """Advance every copy one window; returns what each earned in it."""
        util = {}
        for name, (c, state) in self._copies.items():
            state, k = c.step_actions(self.policies[name].act(c, state))
            self._copies[name] = (c, state)
            util[name] = np.asarray(k.utility, np.float64)
        nb, nv = len(self.bank_cells), len(self.values)
        tables = np.zeros((nb, nv, 3))
        if self.bank is not None:
            k = step_diagonal(self.bank, self._bank_units)
            tables = contributions(self.bank, k).reshape(nb, nv, 3)
        self.windows += 1
        return ShadowWindow(util, tables)
