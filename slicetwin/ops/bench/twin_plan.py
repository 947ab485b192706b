"""``slicetwin bench twin-plan``: the twin rating every split at real states, two ways.

The floor is the plain path, ``Twin.predict`` on each state's history repeated once per split;
the shared-prefix path (``slicetwin.twin.rating``) runs the history's LSTM once per state. Both
rate the same states of a fitted twin, in one process, alternated; the JSON line gives the
milliseconds per state of each, their ratio and the largest difference between their ratings.
"""

from __future__ import annotations

import os
import time

import numpy as np

from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator
from slicetwin.twin import Twin, TwinConfig
from slicetwin.twin.history import history_index
from slicetwin.twin.rating import rate_actions
from trainer.collect import collect_transitions


def _plain(twin: Twin, states: np.ndarray, past: np.ndarray, chunk: int) -> np.ndarray:
    n_a = twin.n_actions
    all_a = np.arange(n_a, dtype=np.int64)
    out = []
    for i in range(0, len(states), chunk):
        s, p = states[i:i + chunk], past[i:i + chunk]
        acts = np.concatenate([np.repeat(p, n_a, axis=0), np.tile(all_a, len(s))[:, None]], 1)
        u = twin.predict(np.repeat(s, n_a, axis=0), acts, sample=False)["utility"]
        out.append(u.reshape(len(s), n_a))
    return np.concatenate(out)


def _shared(twin: Twin, states, past, chunk: int, members: bool = False) -> np.ndarray:
    all_a = np.arange(twin.n_actions, dtype=np.int64)
    return np.concatenate([rate_actions(twin, states[i:i + chunk], past[i:i + chunk], all_a,
                                        members) for i in range(0, len(states), chunk)], -2)


def run_bench(states: int = 40, repeats: int = 3, chunk: int = 5, plain_chunk: int = 20,
              profile: str = "diurnal", seed: int = 0) -> dict:
    sim_cfg = SimConfig.from_profile(profile)
    data = collect_transitions(120, sim=RanSimulator(sim_cfg, n_cells=4, seed=seed), seed=seed)
    twin = Twin(TwinConfig(seed=seed, n_units=sim_cfg.n_units, epochs=5, max_fit_seconds=10.0),
                utility=sim_cfg.utility)
    twin.fit(data)
    rows = np.random.default_rng(seed).choice(np.arange(10, len(data)), states, replace=False)
    idx = history_index(data, twin.history_len, rows)
    st, past = data.state[idx], data.action[idx[:, :-1]]
    times: dict[str, list[float]] = {"plain": [], "shared": [], "members": []}
    outs = {}
    for _ in range(repeats):  # alternated, so load on the shared machine hits all three alike
        for name, fn in (("plain", lambda: _plain(twin, st, past, plain_chunk)),
                         ("shared", lambda: _shared(twin, st, past, chunk)),
                         ("members", lambda: _shared(twin, st, past, chunk, True))):
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    ms = {k: 1000.0 * float(np.median(v)) / states for k, v in times.items()}
    return {"bench": "twin_plan", "profile": profile, "states": states,
            "actions": twin.n_actions, "ensemble": twin.config.ensemble,
            "plain_ms_per_state": round(ms["plain"], 2),
            "shared_ms_per_state": round(ms["shared"], 2),
            "members_ms_per_state": round(ms["members"], 2),
            "speedup": round(ms["plain"] / ms["shared"], 2),
            "max_abs_diff": float(np.abs(outs["plain"] - outs["shared"]).max()),
            "chunk": chunk, "plain_chunk": plain_chunk, "repeats": repeats,
            "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
