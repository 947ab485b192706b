"""The promotion gate: candidate vs the policy in service, on the same inputs.

Both policies run as the ONNX bytes the controller would serve (``OnnxPolicy``), so the gate
judges the artifact, not the torch model it came from. Figures:

- ``twin``: mean utility of ``gate_horizon``-step rollouts in the twin (ensemble mean, no
  sampling) from the same held-out live states and histories, same seed, for both policies;
- ``sim`` (``--sim-gate``): mean utility of both policies on the simulator with the same seed
  (same traffic), when the trainer runs beside one; ``sim_profile`` picks the simulator's
  profile (the demo passes its ``--profile``, so the gate judges the traffic it serves).

A candidate passes when it is not worse than the current policy by more than ``margin`` on every
figure computed. The twin is the one agent 2 trained in, which flatters the candidate; the
simulator gate is the independent check where one exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from slicetwin.core.actions import ActionCodec
from slicetwin.core.transitions import Transitions
from slicetwin.runtime.onnx_policy import OnnxPolicy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator
from slicetwin.twin.history import histories
from trainer.worker.learn import LIVE_T

PolicyFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class GateResult:
    passed: bool
    margin: float
    candidate: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] = field(default_factory=dict)
    current_version: str | None = None
    reason: str = ""
    sim_profile: str | None = None  # the simulator profile of the sim figures (None: no sim gate)

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


def sim_utility(policy: PolicyFn, cells: int, windows: int, seed: int, utility=None,
                profile: str = "paper") -> float:
    """Mean utility of ``policy`` in closed loop with the simulator (same seed and profile = same
    traffic); ``utility``: the weights (a ``UtilityConfig``; default: the profile's)."""

    cfg = (SimConfig.from_profile(profile) if utility is None
           else SimConfig.from_profile(profile, utility=utility))
    sim = RanSimulator(cfg, n_cells=cells, seed=seed)
    s = sim.reset()
    u = []
    for _ in range(windows):
        s, kpis = sim.step_actions(policy(s))
        u.append(float(kpis.utility.mean()))
    return float(np.mean(u))


def gate(candidate: PolicyFn, current: PolicyFn, *, twin: Any, data: Transitions,
         held_rows: np.ndarray, margin: float, horizon: int = 5, rollouts: int = 256,
         seed: int = 0, sim: dict | None = None, current_version: str | None = None) -> GateResult:
    """Compare ``candidate`` with ``current``; ``sim``: {"cells", "windows"[, "utility",
    "profile"]} to add the sim gate."""
    rng = np.random.default_rng(seed)
    rows = held_rows if len(held_rows) <= rollouts else np.sort(
        rng.choice(held_rows, rollouts, replace=False))
    res = GateResult(passed=True, margin=margin, current_version=current_version)
    if len(rows):
        res.candidate["twin_utility"] = twin_utility(candidate, twin, data, rows, horizon, seed)
        res.current["twin_utility"] = twin_utility(current, twin, data, rows, horizon, seed)
    if sim:
        u, p = sim.get("utility"), sim.get("profile", "paper")
        res.sim_profile = p
        res.candidate["sim_utility"] = sim_utility(candidate, sim["cells"], sim["windows"], seed,
                                                   u, p)
        res.current["sim_utility"] = sim_utility(current, sim["cells"], sim["windows"], seed, u,
                                                 p)
    if not res.candidate:
        return GateResult(False, margin, reason="no held-out data to judge the candidate on",
                          current_version=current_version)
    worse = [k for k in res.candidate if res.candidate[k] < res.current[k] - margin]
    res.passed = not worse
    res.reason = ("not worse than current within margin" if res.passed else
                  "worse than current on " + ", ".join(
                      f"{k} ({res.candidate[k]:.4f} < {res.current[k]:.4f} - {margin})"
                      for k in worse))
    return res
