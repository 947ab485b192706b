"""CLI of the simulator: ``slicetwin baselines`` and ``slicetwin bench sim``.

Module level imports only typer and the standard library (project CLI rule).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)
bench_app = typer.Typer(add_completion=False)
experiment_app = typer.Typer(add_completion=False)


PROFILE_HELP = ("simulator profile: paper | reference | diurnal | flash-crowd | hetero | mix=A/B/C, "
                "or a schedule like 'paper:2000,flash-crowd:2000'")


def sim_config(profile: str):
    """SimConfig of a --profile value, or a clean CLI error naming the choices."""
    from slicetwin.sim.config import SimConfig  # lazy: numba

    try:
        return SimConfig.from_profile(profile)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--profile") from e


@app.command()
def baselines(
    profile: list[str] = typer.Option(["paper"], help=PROFILE_HELP + "; repeat for several"),
    seeds: int = typer.Option(5, min=1, help="report seeds (10000, 10001, ...)"),
    windows: int = typer.Option(150, min=1, help="evaluation windows per report seed and cell"),
    cells: int = typer.Option(4, min=1, help="cells per report seed"),
    train_seeds: int = typer.Option(3, min=1, help="training seeds (0, 1, ...) for the causal "
                                    "best fixed split and the tuned heuristic"),
    futures: int = typer.Option(8, min=1, help="sampled futures per planner decision"),
    first_seed: int = typer.Option(10_000, help="first report seed"),
    allow_any_seeds: bool = typer.Option(False, "--allow-any-seeds",
                                         help="accept report seeds outside 10000+"),
    out: str | None = typer.Option(None, help="folder for summary.json, baselines.md and a plot"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON line (the summary)"),
    quick: bool = typer.Option(False, help="smoke run: 2 seeds x 2 cells x 12 windows"),
) -> None:
    """Every baseline on report traffic: equal, proportional, tuned heuristic, best fixed
    (training traffic and hindsight), model-known planner, full-search oracle (mean ± 95 % CI)."""

    from slicetwin.core.protocol import SeedRangeError  # lazy: fast start
    from slicetwin.sim.yardstick import (
        YardstickConfig,
        evaluate_baselines,
        markdown_table,
        summarise,
    )  # lazy: numba

    kw = dict(report_seeds=seeds, windows=windows, cells=cells, train_seeds=train_seeds,
              planner_futures=futures, first_report_seed=first_seed,
              allow_any_seeds=allow_any_seeds)
    try:
        yc = YardstickConfig.quick(first_report_seed=first_seed,
                                   allow_any_seeds=allow_any_seeds) if quick \
            else YardstickConfig(**kw)
    except SeedRangeError as e:
        raise typer.BadParameter(str(e), param_hint="--first-seed") from e
    cfgs = {p: sim_config(p) for p in profile}
    t0 = time.perf_counter()
    result = {"profiles": {}}
    for name, cfg in cfgs.items():
        log = None if as_json else (lambda m, n=name: typer.echo(f"[{n}] {m}", err=True))
        evals = evaluate_baselines(cfg, yc, progress=not as_json, log=log)
        result["profiles"][name] = summarise(evals, cfg, yc)
    result["wall_time_s"] = round(time.perf_counter() - t0, 1)
    if out:
        from slicetwin.sim.report import write_report  # lazy: numba

        write_report(Path(out), result)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for s in result["profiles"].values():
        typer.echo(markdown_table(s))
        m = s["margins"]
        typer.echo(f"oracle over best fixed (hindsight): {m['oracle_over_best_fixed_hindsight']:+.1%}"
                   f"   planner: {m['planner_over_best_fixed_hindsight']:+.1%}\n")


def _measure(cells: int, steps: int, seed: int, parallel: bool | None, config=None
             ) -> tuple[float, float, float]:
    import numpy as np  # lazy: fast start

    from slicetwin.sim.simulator import RanSimulator  # lazy: numba

    sim = RanSimulator(config, n_cells=cells, seed=seed, parallel=parallel)
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
    profile: str = typer.Option("paper", help=PROFILE_HELP),
) -> None:
    """Simulator throughput (random actions): one JSON line."""

    cfg = sim_config(profile)

    if parallel not in ("auto", "on", "off"):
        raise typer.BadParameter("parallel must be auto, on or off")
    modes = {"auto": [False, True], "on": [True], "off": [False]}[parallel]
    rates, cpu_rates = {}, {}
    for par in modes:
        dt, us, cpu = _measure(cells, steps, seed, par, cfg)
        rates["parallel" if par else "serial"] = cells * steps / dt
        cpu_rates["parallel" if par else "serial"] = cells * steps / max(cpu, 1e-9)
    mode, eps = max(rates.items(), key=lambda kv: kv[1])
    single_steps = max(50, min(2000, steps * cells // 4))
    dt1, _, cpu1 = _measure(1, single_steps, seed, False, cfg)
    out = {
        "bench": "sim", "profile": profile, "cells": cells, "steps": steps, "env_steps_per_s": round(eps, 1),
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


@experiment_app.command("explore-cost")
def experiment_explore_cost(
    profile: str = typer.Option("diurnal", help=PROFILE_HELP),
    seeds: int = typer.Option(5, min=1, help="seeds (report 10000+, or tuning 1000+ with --tune)"),
    tune: bool = typer.Option(False, "--tune", help="use tuning seeds 1000+ (to pick a radius); "
                              "report seeds are for figures only"),
    epsilon: float = typer.Option(0.2, help="exploration probability per decision"),
    radius: list[int] = typer.Option([0, 2, 5, 10, 20], help="radii in units (0: uniform over "
                                     "all actions); repeat for several"),
    policy: str = typer.Option("tuned", help="served policy: tuned | proportional | an ONNX file"),
    windows: int = typer.Option(150, min=1, help="windows per seed and cell"),
    cells: int = typer.Option(4, min=1, help="cells per seed"),
    out: Path = typer.Option(Path("runs/explore_cost"), help="output directory"),
    quick: bool = typer.Option(False, help="smoke run: 2 seeds, 30 windows, 2 cells, radii 0 and 3"),
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """Utility given up by the controller's exploration, by radius, on the same traffic as the
    served policy alone: summary.json, explore_cost.md/.csv/.png."""
    from slicetwin.experiments.explore_cost import (  # lazy: torch
        ExploreCostConfig,
        run_explore_cost,
    )

    sim_config(profile)  # a clean error for a bad --profile
    role = "tune" if tune else "report"
    try:
        if quick:
            cfg = ExploreCostConfig.quick(profile=profile, seed_role=role, epsilon=epsilon)
        else:
            cfg = ExploreCostConfig(profile=profile, seeds=seeds, seed_role=role,
                                    epsilon=epsilon, radii=tuple(radius), policy=policy,
                                    windows=windows, cells=cells)
        res = run_explore_cost(cfg, out, progress=progress)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(json.dumps({"out": str(out), "served_utility": res["served_utility"]["mean"],
                           "given_up_per_explored": {
                               r: v["given_up_per_explored"]["mean"]
                               for r, v in res["by_radius"].items()}}))


@experiment_app.command("demo-ceiling")
def experiment_demo_ceiling(
    profile: str = typer.Option("diurnal", help=PROFILE_HELP),
    seed: list[int] = typer.Option([0], help="the demo's --seed (its traffic); repeat for several"),
    cells: int = typer.Option(8, min=1, help="the demo's --cells"),
    shadow_cells: int = typer.Option(2, min=1, help="the demo's --shadow-cells"),
    duration: float = typer.Option(600.0, help="the demo's --duration, s"),
    window_ms: float = typer.Option(200.0, help="the demo's --window-ms"),
    futures: int = typer.Option(8, min=1, help="sampled futures per planner decision"),
    demo_summary: Path | None = typer.Option(None, help="a demo summary.json run on this "
                                             "traffic: its served figure goes beside the ceilings"),
    workers: int = typer.Option(1, min=1, help="processes (one seed each)"),
    out: Path = typer.Option(Path("runs/demo_ceiling"), help="output directory"),
    quick: bool = typer.Option(False, help="smoke run: 2 cells, 60 windows, 2 futures"),
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """Planner and oracle against the best fixed split over the demo's last 5 minutes, on the
    demo's own traffic: how far above that split any policy can end (summary.json, .md, .png)."""
    from slicetwin.experiments.demo_ceiling import (  # lazy: numba
        DemoCeilingConfig,
        run_demo_ceiling,
    )

    sim_config(profile)  # a clean error for a bad --profile
    kw = dict(profile=profile, seeds=tuple(seed))
    try:
        cfg = DemoCeilingConfig.quick(**kw) if quick else DemoCeilingConfig(
            **kw, cells=cells, shadow_cells=shadow_cells, duration_s=duration,
            window_ms=window_ms, futures=futures)
        if demo_summary is not None and not demo_summary.is_file():
            raise ValueError(f"--demo-summary {demo_summary}: no such file")
        res = run_demo_ceiling(cfg, out, demo_summary, workers, progress)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    p = res["policies"]
    typer.echo(json.dumps({"out": str(out), "best_fixed": p["best_fixed"]["utility"]["mean"],
                           **{f"{n}_margin": p[n]["margin_over_best_fixed"]["mean"]
                              for n in ("proportional", "tuned_proportional", "planner", "oracle")},
                           "demo_margin": res["demo"] and res["demo"]["margin"],
                           "reach_the_floor": res["reach_the_floor"]}))
