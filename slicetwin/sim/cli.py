"""CLI of the simulator: ``slicetwin baselines`` and ``slicetwin bench sim``.

Module level imports only typer and the standard library (project CLI rule).
"""

from __future__ import annotations

import json
import time

import typer

app = typer.Typer(add_completion=False)
bench_app = typer.Typer(add_completion=False)


@app.command()
def baselines(
    windows: int = typer.Option(30, min=1, help="evaluation windows per cell"),
    cells: int = typer.Option(2, min=1, help="independent cells (same traffic for every policy)"),
    seed: int = typer.Option(0, help="traffic seed shared by all policies"),
    profile: str = typer.Option("paper", help="simulator profile: paper | reference"),
    oracle: str = typer.Option("full", help="oracle search: full (all actions) | coarse"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON line"),
) -> None:
    """Random, equal split, demand-proportional, best fixed and the clairvoyant oracle."""
    from slicetwin.sim.baselines import evaluate
    from slicetwin.sim.config import SimConfig

    try:
        cfg = SimConfig.from_profile(profile)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    out = evaluate(cfg, windows=windows, cells=cells, seed=seed, oracle_search=oracle,
                   progress=not as_json)
    if as_json:
        typer.echo(json.dumps(out))
        return
    for k, v in out.items():
        typer.echo(f"{k:>30}: {v}")


def _measure(cells: int, steps: int, seed: int, parallel: bool | None
             ) -> tuple[float, float, float]:
    import numpy as np

    from slicetwin.sim.simulator import RanSimulator

    sim = RanSimulator(n_cells=cells, seed=seed, parallel=parallel)
    sim.reset()
    rng = np.random.default_rng(seed)
    acts = rng.integers(0, sim.codec.n_actions, size=(steps + 1, cells))
    sim.step_actions(acts[0])  # compile / warm caches outside the timing
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        sim.step_actions(acts[i + 1])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, float(sim.config.n_users * sim.config.slots_per_window), cpu


@bench_app.command("sim")
def bench_sim(
    cells: int = typer.Option(64, min=1, help="cells stepped together"),
    steps: int = typer.Option(200, min=1, help="windows (decision steps) per cell"),
    seed: int = typer.Option(0),
    parallel: str = typer.Option("auto", help="auto | on | off (numba prange over cells)"),
) -> None:
    """Simulator throughput (random actions): one JSON line."""
    import os

    if parallel not in ("auto", "on", "off"):
        raise typer.BadParameter("parallel must be auto, on or off")
    modes = {"auto": [False, True], "on": [True], "off": [False]}[parallel]
    rates, cpu_rates = {}, {}
    for par in modes:
        dt, us, cpu = _measure(cells, steps, seed, par)
        rates["parallel" if par else "serial"] = cells * steps / dt
        cpu_rates["parallel" if par else "serial"] = cells * steps / max(cpu, 1e-9)
    mode, eps = max(rates.items(), key=lambda kv: kv[1])
    single_steps = max(50, min(2000, steps * cells // 4))
    dt1, _, cpu1 = _measure(1, single_steps, seed, False)
    out = {
        "bench": "sim", "cells": cells, "steps": steps, "env_steps_per_s": round(eps, 1),
        "user_slots_per_s": round(eps * us, 1), "slots_per_s": round(eps * 400, 1),
        "mode": mode, **{f"{k}_env_steps_per_s": round(v, 1) for k, v in rates.items()},
        "single_cell_env_steps_per_s": round(single_steps / dt1, 1),
        "single_cell_steps": single_steps,
        # per CPU-second of this process: what one dedicated core delivers (load-independent)
        **{f"{k}_env_steps_per_cpu_s": round(v, 1) for k, v in cpu_rates.items()},
        "single_cell_env_steps_per_cpu_s": round(single_steps / max(cpu1, 1e-9), 1),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    typer.echo(json.dumps(out))
