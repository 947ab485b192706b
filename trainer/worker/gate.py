"""The promotion gate: candidate vs the policy in service, on the same held-out inputs.

Both policies run as the ONNX bytes the controller would serve (``OnnxPolicy``), so the gate
judges the artifact, not the torch model it came from. Figures:

- ``sim_utility`` (held out): mean utility of both policies in closed loop with the simulator
  on the same *tuning-range* seeds (``slicetwin.core.protocol``: never training seeds, never
  report seeds), when the traffic is a known simulator profile (``sim_profile``; the demo
  passes its ``--profile``);
- ``real_heldout_utility`` (held out): the estimate of ``trainer.worker.heldout`` on the live
  transitions held out from the twin fit and the agents (per-slice SSR models on the real
  arrivals; not the twin);
- ``twin_utility`` (reported only): mean utility of ``gate_horizon``-step rollouts in the twin
  from the same held-out live states, same seed, for both policies. Agent 2 trained in this
  twin, so it flatters the candidate: it never promotes one, alone or otherwise.

A candidate passes when, on every *deciding* held-out figure, it is *confidently* not worse
than the current policy by more than ``margin``: the lower end of the 95 % CI of the paired
difference (candidate - current; per simulator cell and seed, or per held-out real row) is at
least ``-margin``. The deciding figure is the simulator one when there is one, else the real-data
estimate. Comparing means alone let a candidate that is worse, but within the noise of two seeds,
through (the demo's live loop promoted such ones); the paired CI refuses it unless the evidence
says otherwise, while two identical policies (every difference 0) still pass. With no held-out
figure (no simulator profile and too few held-out rows) the candidate is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from slicetwin.core import protocol
from slicetwin.core.actions import ActionCodec
from slicetwin.core.transitions import Transitions
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator
from slicetwin.twin.history import histories
from trainer.worker.heldout import heldout_real_utility
from trainer.worker.learn import LIVE_T

PolicyFn = Callable[[np.ndarray], np.ndarray]
TWIN, SIM, REAL = "twin_utility", "sim_utility", "real_heldout_utility"


@dataclass
class GateResult:
    passed: bool
    margin: float
    candidate: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] = field(default_factory=dict)
    current_version: str | None = None
    reason: str = ""
    sim_profile: str | None = None  # the simulator profile of the sim figures (None: no sim gate)
    sim_seeds: list[int] = field(default_factory=list)  # tuning-range seeds of the sim figures
    decided_on: list[str] = field(default_factory=list)  # the held-out figures that decided
    real_heldout: dict = field(default_factory=dict)  # rows, extrapolated share per policy
    # per deciding figure: the paired difference candidate - current (mean, ci95, lower, n)
    paired: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def onnx_policy_fn(blob: bytes, n_units: int = 100, total_bandwidth_hz: float = 20e6) -> PolicyFn:
    codec = ActionCodec(total_bandwidth_hz=total_bandwidth_hz, n_units=n_units)
    return OnnxPolicy(blob, expect_codec=codec).act_batch


def twin_utility(policy: PolicyFn, twin: Any, data: Transitions, rows: np.ndarray, horizon: int,
                 seed: int) -> float:
    """Mean predicted utility of ``policy`` over rollouts from real rows (with their histories)."""

    state, past_s, past_a = histories(data, rows, int(twin.history_len))
    s = twin.reset(state, past_s, past_a, t=LIVE_T, seed=seed, sample=False)
    total = []
    for _ in range(horizon):
        out = twin.step(policy(s))
        total.append(np.asarray(out.utility, np.float64).mean())
        s = out.next_state
    return float(np.mean(total))


def gate_seeds(cycle: int, n: int) -> list[int]:
    """``n`` simulator seeds of the protocol's tuning range for trainer cycle ``cycle`` (a fresh
    slice of the range each cycle, so no seed is selected on over and over)."""
    lo, hi = protocol.RANGES["tune"]
    span = hi - lo
    return protocol.check_seeds("tune", [lo + (cycle * n + i) % span for i in range(n)])


def sim_cell_utilities(policy: PolicyFn, cells: int, windows: int, seed: int | list[int],
                       utility=None, profile: str = "paper") -> np.ndarray:
    """Mean utility of ``policy`` per (seed, cell), in closed loop with the simulator (same
    seeds and profile = same traffic); ``utility``: the weights (default: the profile's)."""
    cfg = (SimConfig.from_profile(profile) if utility is None
           else SimConfig.from_profile(profile, utility=utility))
    out = []
    for sd in np.atleast_1d(seed):
        sim = RanSimulator(cfg, n_cells=cells, seed=int(sd))
        s = sim.reset()
        total = np.zeros(cells)
        for _ in range(windows):
            s, kpis = sim.step_actions(policy(s))
            total += np.asarray(kpis.utility, np.float64)
        out.append(total / windows)
    return np.concatenate(out)


def sim_utility(policy: PolicyFn, cells: int, windows: int, seed: int | list[int], utility=None,
                profile: str = "paper") -> float:
    """Mean utility of ``policy`` over every cell-window of ``sim_cell_utilities``."""
    return float(sim_cell_utilities(policy, cells, windows, seed, utility, profile).mean())


def paired_lower(candidate: np.ndarray, current: np.ndarray) -> dict:
    """The paired difference candidate - current (``protocol.paired``): mean, 95 % CI
    half-width over the pairs, its lower end, and the number of pairs (one pair: no CI)."""
    p = protocol.paired(candidate, current)
    half = p["ci95"] or 0.0
    return {"mean_diff": p["mean"], "ci95": half, "lower": round(p["mean"] - half, 5),
            "n": p["n"]}


def gate(candidate: PolicyFn, current: PolicyFn, *, twin: Any, data: Transitions,
         held_rows: np.ndarray, margin: float, horizon: int = 5, rollouts: int = 256,
         seed: int = 0, sim: dict | None = None, current_version: str | None = None,
         codec: ActionCodec | None = None, utility=None) -> GateResult:
    """Compare ``candidate`` with ``current`` (module docstring). ``sim``: {"cells", "windows",
    "seeds"[, "utility", "profile"]} for the simulator figure (tuning-range seeds only);
    ``codec``/``utility``: of the real-data estimate (default: 20 MHz / 100 units, defaults)."""
    rng = np.random.default_rng(seed)
    rows = held_rows if len(held_rows) <= rollouts else np.sort(
        rng.choice(held_rows, rollouts, replace=False))
    res = GateResult(passed=True, margin=margin, current_version=current_version)
    if len(rows) and twin is not None:
        res.candidate[TWIN] = twin_utility(candidate, twin, data, rows, horizon, seed)
        res.current[TWIN] = twin_utility(current, twin, data, rows, horizon, seed)
    real = heldout_real_utility({"candidate": candidate, "current": current}, data,
                                np.asarray(held_rows, np.int64), codec or ActionCodec(), utility)
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if real is not None:
        res.candidate[REAL] = real["candidate"].pop("utility")
        res.current[REAL] = real["current"].pop("utility")
        pairs[REAL] = (real["candidate"].pop("per_row"), real["current"].pop("per_row"))
        res.real_heldout = real
    if sim:
        seeds = protocol.check_seeds("tune", sim["seeds"])  # held out: never train or report
        u, p = sim.get("utility"), sim.get("profile", "paper")
        res.sim_profile, res.sim_seeds = p, seeds
        cells, windows = sim["cells"], sim["windows"]
        pairs[SIM] = (sim_cell_utilities(candidate, cells, windows, seeds, u, p),
                      sim_cell_utilities(current, cells, windows, seeds, u, p))
        res.candidate[SIM] = float(pairs[SIM][0].mean())
        res.current[SIM] = float(pairs[SIM][1].mean())
    res.decided_on = [SIM] if SIM in res.candidate else [REAL] if REAL in res.candidate else []
    if not res.decided_on:
        res.passed = False
        res.reason = ("no held-out evaluation (no simulator profile and fewer held-out rows "
                      "than the real-data estimate needs): the twin alone never promotes")
        return res
    res.paired = {k: paired_lower(*pairs[k]) for k in res.decided_on}
    worse = [k for k in res.decided_on if res.paired[k]["lower"] < -margin]
    res.passed = not worse
    res.reason = ("not worse than current within margin (paired 95 % CI) on "
                  + ", ".join(res.decided_on) if res.passed else "worse than current on " + ", ".join(
                      f"{k} (paired difference {res.paired[k]['mean_diff']:+.4f} "
                      f"± {res.paired[k]['ci95']:.4f}, lower end below -{margin})"
                      for k in worse))
    if TWIN in res.candidate and res.candidate[TWIN] > res.current[TWIN] + margin and not (
            res.passed):
        res.reason += " (the twin, reported only, scored it higher)"
    return res
