"""Twin fidelity on held-out real data: one-step and multi-step error against persistence,
and policy-ranking agreement with the simulator (Kendall's tau)."""

from __future__ import annotations

import time

import numpy as np

from slicetwin.core.transitions import Transitions
from slicetwin.sim import RanSimulator
from slicetwin.twin.config import TwinConfig
from slicetwin.twin.history import histories, predecessor_index
from slicetwin.twin.model import Twin
from trainer.collect import (
    Policy,
    collect_transitions,
    fixed_policy,
    proportional_policy,
    random_policy,
)


def successor_chains(data: Transitions, horizon: int) -> np.ndarray:
    """(R, horizon) rows r, succ(r), succ(succ(r)), ... for every start with a full chain."""
    prev = predecessor_index(data.cell, data.window)
    succ = np.full(len(data), -1, dtype=np.int64)
    has = prev >= 0
    succ[prev[has]] = np.nonzero(has)[0]
    chain = [np.arange(len(data))]
    for _ in range(horizon - 1):
        nxt = np.where(chain[-1] >= 0, succ[np.maximum(chain[-1], 0)], -1)
        chain.append(nxt)
    c = np.stack(chain, axis=1)
    return c[(c >= 0).all(axis=1)]


def multi_step_error(twin: Twin, data: Transitions, horizon: int = 10,
                     max_starts: int = 2000, seed: int = 0) -> dict:
    """Open-loop rollouts replaying the real actions from real states; RMSE of the predicted
    state at each horizon (ensemble mean, no sampling) vs persistence (s_{t+h} = s_t)."""
    chains = successor_chains(data, horizon)
    if len(chains) == 0:
        raise ValueError(f"no consecutive run of {horizon} windows in the data")
    rng = np.random.default_rng(seed)
    if len(chains) > max_starts:
        chains = chains[rng.choice(len(chains), max_starts, replace=False)]
    s0, hs, ha = histories(data, chains[:, 0], twin.config.history)
    twin.reset(s0, hs, ha, seed=seed, sample=False)
    twin_rmse, pers_rmse, util_rmse = [], [], []
    for j in range(horizon):
        rows = chains[:, j]
        out = twin.step(data.action[rows])
        y = data.next_state[rows]
        twin_rmse.append(float(np.sqrt(((out.next_state - y) ** 2).mean())))
        pers_rmse.append(float(np.sqrt(((s0 - y) ** 2).mean())))
        util_rmse.append(float(np.sqrt(((out.utility - data.utility[rows]) ** 2).mean())))
    return {"horizon": horizon, "starts": int(len(chains)), "twin_rmse": twin_rmse,
            "persistence_rmse": pers_rmse, "utility_rmse": util_rmse}


def default_policies(codec) -> dict[str, Policy]:
    """Fixed allocations from poor to good, the demand-proportional heuristic, and random."""
    splits = {"equal": (34, 33, 33), "video_heavy": (10, 80, 10), "video_max": (4, 92, 4),
              "volte_heavy": (60, 20, 20), "urllc_heavy": (15, 25, 60), "mixed": (20, 60, 20)}
    scale = codec.n_units / 100
    pol: dict[str, Policy] = {}
    for name, units in splits.items():
        u = np.maximum(np.round(np.asarray(units) * scale).astype(np.int64), codec.min_units)
        u[1] += codec.n_units - u.sum()
        pol[name] = fixed_policy(int(codec.encode(u)))
    pol["proportional"] = proportional_policy(codec)
    pol["random"] = random_policy(codec.n_actions)
    return pol


def twin_policy_utility(twin: Twin, policy: Policy, start: Transitions, horizon: int,
                        n_rollouts: int = 256, seed: int = 0) -> float:
    """Mean utility of ``policy`` over sampled twin rollouts started from real rows of ``start``."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(start), size=min(n_rollouts, len(start)), replace=False)
    s, hs, ha = histories(start, rows, twin.config.history)
    state = twin.reset(s, hs, ha, seed=seed)
    total = 0.0
    for _ in range(horizon):
        out = twin.step(policy(state, rng))
        total += float(out.utility.mean())
        state = out.next_state
    return total / horizon


def policy_ranking(twin: Twin, start: Transitions, policies: dict[str, Policy] | None = None,
                   horizon: int = 20, sim_steps: int = 100, n_cells: int = 4, seed: int = 123,
                   sim_factory=None) -> dict:
    """Rank policies by mean utility in the twin and in the simulator; Kendall's tau."""
    from scipy.stats import kendalltau  # lazy: scipy

    if sim_factory is None:

        def sim_factory():
            return RanSimulator(n_cells=n_cells, seed=seed)
    policies = policies or default_policies(twin.codec)
    sim_u, twin_u = {}, {}
    for name, pol in policies.items():
        d = collect_transitions(sim_steps, pol, seed=seed, sim=sim_factory())
        sim_u[name] = float(d.utility.mean())
        twin_u[name] = twin_policy_utility(twin, pol, start, horizon, seed=seed)
    names = list(policies)
    tau = kendalltau([sim_u[n] for n in names], [twin_u[n] for n in names]).statistic
    return {"kendall_tau": float(tau), "sim_utility": sim_u, "twin_utility": twin_u}


def fidelity_report(train_steps: int = 400, train_cells: int = 8, test_steps: int = 150,
                    test_cells: int = 4, horizon: int = 5, seed: int = 0,
                    config=None, ranking: bool = True) -> dict:
    """Fit a twin on random-policy simulator data, measure it on data from other cells/seeds."""
    t0 = time.perf_counter()
    train = collect_transitions(train_steps, n_cells=train_cells, seed=seed)
    test = collect_transitions(test_steps, n_cells=test_cells, seed=seed + 10_007)
    t_collect = time.perf_counter() - t0
    twin = Twin(config or TwinConfig(seed=seed))
    fit = twin.fit(train)
    held = twin.evaluate(test)
    ms = multi_step_error(twin, test, horizon=horizon, seed=seed)
    out = {
        "bench": "twin-fidelity", "train_transitions": len(train), "test_transitions": len(test),
        "fit_seconds": fit["fit_seconds"], "epochs": fit["epochs"],
        "collect_seconds": round(t_collect, 2),
        "one_step_rmse": round(held["next_state_rmse"], 4),
        "persistence_rmse": round(held["persistence_rmse"], 4),
        "one_step_rmse_per_slice": held["next_state_rmse_per_slice"],
        f"h{horizon}_rmse": round(ms["twin_rmse"][-1], 4),
        f"h{horizon}_persistence_rmse": round(ms["persistence_rmse"][-1], 4),
        "ssr_rmse": round(held["ssr_rmse"], 4), "se_rmse": round(held["se_rmse"], 4),
        "utility_rmse": round(held["utility_rmse"], 4),
        "utility_direct_rmse": round(held["utility_direct_rmse"], 4),
        "utility_std": round(float(test.utility.std()), 4),
        "calibration_error": round(held["calibration_error"], 4),
    }
    if ranking:
        r = policy_ranking(twin, test, horizon=20, sim_steps=100, seed=seed + 123)
        out["kendall_tau"] = round(r["kendall_tau"], 3)
        out["policies"] = {k: [round(r["sim_utility"][k], 3), round(r["twin_utility"][k], 3)]
                           for k in r["sim_utility"]}
    return out
