"""Probe on TUNING traffic (seeds 1000+): does a planner that weighs the backlog its split leaves
beat the one-step model-known planner? One JSON line per (seed, planner).

The lookahead planner rates unit count v of slice n by the coming window's utility term with v
plus ``gamma`` times the next window's term when the slice then gets what the one-step planner
chose now: the backlog an under-served slice carries over is charged to the split that left it,
while the next window is re-planned rather than held at v (``--label-horizon 2`` in
``experiment plan-distill`` holds v, which overstates it). Exact over all splits: the slices stay
separable.

    .venv/bin/python scripts/probe_planner_lookahead.py [PROFILE] [SEED ...]   # diurnal 1000 1001 1002

Results: docs/figures/planner_lookahead_probe_tuning_seeds.jsonl.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from slicetwin.core.slices import N_SLICES
from slicetwin.sim.baselines import PlannerPolicy, run_policy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.search import (
    best_split,
    contributions,
    diagonal_clones,
    step_diagonal,
    unit_values,
)

GAMMAS = (1.0, 0.5)
FUTURES, WINDOWS, CELLS = 8, 150, 4  # the yardstick's planner and evaluation size


class LookaheadPlanner:
    def __init__(self, futures: int, gamma: float, seed: int):
        self.futures, self.gamma = futures, gamma
        self.rng = np.random.default_rng([int(seed), 0x91A7])  # PlannerPolicy's stream
        self.name = f"lookahead(gamma={gamma})"

    def act(self, sim, state):
        c, reps, nv = sim.n_cells, self.futures, len(unit_values(sim.codec))
        clone, units = diagonal_clones(sim, np.arange(c), reps)
        keys = self.rng.integers(0, 2**63, size=(2, c * reps), dtype=np.uint64)
        clone.state.rng[:] = np.repeat(keys[0], nv)
        clone.state.chan_key[:] = np.repeat(keys[1], nv)
        now = contributions(clone, step_diagonal(clone, units))
        first, _ = best_split(now.reshape(c, reps, nv, N_SLICES).mean(1), sim.codec)
        chosen = np.asarray(sim.codec.decode(first)).reshape(c, N_SLICES)
        after = contributions(clone, step_diagonal(clone, np.repeat(chosen, reps * nv, axis=0)))
        tables = (now + self.gamma * after).reshape(c, reps, nv, N_SLICES).mean(1)
        return best_split(tables, sim.codec)[0]


def main() -> None:
    profile = sys.argv[1] if len(sys.argv) > 1 else "diurnal"
    seeds = [int(s) for s in sys.argv[2:]] or [1000, 1001, 1002]
    cfg = SimConfig.from_profile(profile)
    for seed in seeds:
        if not 1000 <= seed < 2000:
            sys.exit(f"seed {seed}: probes use tuning seeds 1000-1999")
        for pol in [PlannerPolicy(FUTURES, seed=seed),
                    *(LookaheadPlanner(FUTURES, g, seed) for g in GAMMAS)]:
            t0 = time.perf_counter()
            u = run_policy(pol, cfg, WINDOWS, CELLS, seed).mean_utility
            print(json.dumps({"profile": profile, "seed": seed, "planner": pol.name,
                              "utility": round(u, 5),
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
