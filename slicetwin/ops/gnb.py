"""Fake gNB: simulator cells in closed loop with a controller over HTTP.

Every window: step the simulator's cells with the allocation in force, post each cell's KPI
report (one request per cell, or one batch request), apply the answered allocations from the next
window on. A failed request keeps the cell's previous allocation (and is counted), as a real
gNB would. Each answer is checked against the allocation invariants (sums to the carrier, every
slice at least its minimum). Window numbers start by default at the wall clock in microseconds
and count up by one per window, so a restarted or repeated run never sends a window the
controller already saw for the same cell.

By default the fake gNB runs as fast as the controller answers (tests, benchmarks). With
``pace`` it keeps real time like a gNB: window ``k`` starts ``k * window_ms`` after the first
(a window that overruns is counted in ``late_windows`` and the next one starts at once, with no
catch-up burst beyond the schedule). ``windows=0`` runs until ``stop_event`` is set (the CLI sets
it on SIGTERM/SIGINT), then returns the summary of the windows run; per-window samples are kept
in bounded buffers (the latest ``MAX_SAMPLES``) so a gNB that runs for days does not grow.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from slicetwin.core.slices import SLICE_NAMES, slice_index
from slicetwin.sim.config import SimConfig
from slicetwin.sim.simulator import RanSimulator


@dataclass
class GnbConfig:
    controller: str = "http://127.0.0.1:8080"
    cells: int = 4
    windows: int = 50
    batch: bool = False
    seed: int = 0
    profile: str = "paper"  # simulator profile (SimConfig.from_profile; docs/simulator.md)
    api_key: str | None = None
    cell_prefix: str = "gnb"
    start_window: int | None = None  # default: int(time.time() * 1e6)
    timeout_s: float = 5.0
    progress: bool = True
    pace: bool = False  # sleep to real time: one window per window_ms
    window_ms: float = 200.0  # the simulator's window (200 ms, sim_spec.md)
    stop_event: threading.Event | None = None  # set -> finish the current window and return


MAX_SAMPLES = 200_000  # latency / utility samples kept for the summary's percentiles and halves


@dataclass
class GnbSummary:
    cells: int
    windows: int
    profile: str = "paper"
    requests: int = 0
    failed_requests: int = 0
    decisions: int = 0
    fallback_decisions: int = 0
    invariant_violations: int = 0
    versions: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    latency_ms_p50: float = float("nan")
    latency_ms_p99: float = float("nan")
    ssr_mean: dict = field(default_factory=dict)
    utility_mean: float = float("nan")
    utility_first_half: float = float("nan")
    utility_second_half: float = float("nan")
    seconds: float = 0.0
    paced: bool = False
    late_windows: int = 0  # paced windows that took longer than window_ms
    interrupted: bool = False  # stopped by stop_event (SIGTERM/SIGINT) before `windows`
    answers: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "answers"}
        return json.loads(json.dumps(d, default=float))


def units_from_answer(ans: dict, codec) -> np.ndarray:
    """Allocation of an answer -> units per slice (slice order), checked against the invariants."""
    u = np.zeros(codec.n_slices, dtype=np.int64)
    seen = set()
    for a in ans["allocation"]:
        j = slice_index(a["slice"])
        seen.add(j)
        u[j] = round(a["bandwidth_hz"] / codec.unit_hz)
    if len(seen) != codec.n_slices:
        raise ValueError(f"answer lacks slices: {ans['allocation']}")
    total = sum(a["bandwidth_hz"] for a in ans["allocation"])
    if abs(total - codec.total_bandwidth_hz) > 1e-6 * codec.total_bandwidth_hz:
        raise ValueError(f"allocation sums to {total} Hz, not {codec.total_bandwidth_hz}")
    if u.sum() != codec.n_units or (u < codec.min_units).any():
        raise ValueError(f"allocation {u.tolist()} breaks the {codec.n_units}-unit / "
                         f"min {codec.min_units} invariant")
    return u


def run_gnb(cfg: GnbConfig, keep_answers: bool = False) -> GnbSummary:


    sim = RanSimulator(SimConfig.from_profile(cfg.profile), n_cells=cfg.cells, seed=cfg.seed)
    sim.reset()
    codec = sim.codec
    simcfg = sim.config
    w0 = cfg.start_window if cfg.start_window is not None else int(time.time() * 1e6)
    ids = [f"{cfg.cell_prefix}-{i}" for i in range(cfg.cells)]
    units = np.tile(codec.from_weights(np.ones(codec.n_slices)), (cfg.cells, 1))
    headers = {"content-type": "application/json"}
    if cfg.api_key:
        headers["authorization"] = f"Bearer {cfg.api_key}"
    s = GnbSummary(cells=cfg.cells, windows=0, profile=cfg.profile, paced=cfg.pace)
    lat: deque[float] = deque(maxlen=MAX_SAMPLES)
    ssr_sum = np.zeros(codec.n_slices)
    util: deque[float] = deque(maxlen=MAX_SAMPLES)
    util_sum = 0.0
    stop = cfg.stop_event or threading.Event()
    period = cfg.window_ms / 1e3
    t_start = t_sched = time.perf_counter()  # t_sched: start of the pacing schedule

    def note_error(kind: str) -> None:
        s.failed_requests += 1
        s.errors[kind] = s.errors.get(kind, 0) + 1

    def post(path: str, content: str) -> httpx.Response | None:
        """One timed request; a transport error or a non-200 is counted and gives None."""
        t = time.perf_counter()
        try:
            r = client.post(path, content=content)
        except httpx.HTTPError as e:
            note_error(type(e).__name__)
            return None
        lat.append(time.perf_counter() - t)
        s.requests += 1
        if r.status_code != 200:
            note_error(str(r.status_code))
            return None
        return r

    def apply(i: int, ans: dict) -> None:
        s.decisions += 1
        s.fallback_decisions += bool(ans.get("fallback"))
        v = ans.get("policy_version", "?")
        s.versions[v] = s.versions.get(v, 0) + 1
        try:
            units[i] = units_from_answer(ans, codec)
        except (ValueError, KeyError) as e:
            s.invariant_violations += 1
            s.errors["invariant"] = s.errors.get("invariant", 0) + 1
            if len(s.errors) < 50:
                s.errors.setdefault("invariant_examples", str(e)[:200])
        if keep_answers:
            s.answers.append(ans)

    with httpx.Client(base_url=cfg.controller, timeout=cfg.timeout_s, headers=headers) as client:
        steps = itertools.count() if cfg.windows == 0 else range(cfg.windows)
        bar = tqdm(steps, total=cfg.windows or None, desc="gnb windows", unit="win",
                   disable=not cfg.progress)
        for k in bar:
            if stop.is_set():
                s.interrupted = True
                break
            if cfg.pace and k:
                delay = t_sched + k * period - time.perf_counter()
                if delay < 0:
                    s.late_windows += 1
                    t_sched -= delay  # restart the schedule from now: no burst to catch up
                elif stop.wait(delay):
                    s.interrupted = True
                    break
            s.windows += 1
            applied = units.copy()
            _, kpis = sim.step(applied)
            ssr_sum += kpis.ssr.mean(0)
            util.append(float(kpis.utility.mean()))
            util_sum += util[-1]
            reports = kpis.to_reports(ids, w0 + k, applied, simcfg)
            bodies = [r.model_dump_json(exclude_none=True) for r in reports]
            if cfg.batch:
                r = post("/v1/reports:batch", '{"reports":[' + ",".join(bodies) + "]}")
                if r is not None:
                    for i, ans in enumerate(r.json()["decisions"]):
                        apply(i, ans)
            else:
                for i, body in enumerate(bodies):
                    r = post("/v1/reports", body)
                    if r is not None:
                        apply(i, r.json())
            if cfg.progress:
                bar.set_postfix(utility=f"{util[-1]:.3f}", fb=s.fallback_decisions)
    s.seconds = time.perf_counter() - t_start
    if lat:
        s.latency_ms_p50 = float(np.percentile(lat, 50) * 1e3)
        s.latency_ms_p99 = float(np.percentile(lat, 99) * 1e3)
    if util:
        u = np.asarray(util)  # the latest MAX_SAMPLES windows
        s.ssr_mean = {n: float(x) for n, x in zip(SLICE_NAMES, ssr_sum / s.windows, strict=True)}
        s.utility_mean = util_sum / s.windows
        h = max(1, len(u) // 2)
        s.utility_first_half = float(u[:h].mean())
        s.utility_second_half = float(u[h:].mean()) if len(u) > 1 else s.utility_mean
    return s


def print_summary(s: GnbSummary) -> None:
    c = Console()
    how = " (interrupted)" if s.interrupted else ""
    t = Table(title=f"fake gNB ({s.profile} traffic): {s.cells} cells x {s.windows} windows in "
                    f"{s.seconds:.1f} s{how}")
    t.add_column("slice")
    t.add_column("mean SSR", justify="right")
    for n, v in s.ssr_mean.items():
        t.add_row(n, f"{v:.3f}")
    c.print(t)
    c.print(f"utility mean {s.utility_mean:.3f} (first half {s.utility_first_half:.3f}, second "
            f"half {s.utility_second_half:.3f})")
    c.print(f"requests {s.requests}, failed {s.failed_requests}, decisions {s.decisions}, "
            f"fallback {s.fallback_decisions}, invariant violations {s.invariant_violations}")
    c.print(f"request latency p50 {s.latency_ms_p50:.2f} ms, p99 {s.latency_ms_p99:.2f} ms; "
            f"policy versions {s.versions}")
    if s.errors:
        c.print(f"errors: {s.errors}")
