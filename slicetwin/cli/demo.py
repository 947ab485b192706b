"""``slicetwin demo``: the closed loop (fake gNB -> controller -> trainer -> hot-swap) in one
command. Module level imports typer and the standard library only; see ``demo_run`` for the loop
and docs/demo.md for what it shows."""

from __future__ import annotations

import sys

import typer

from slicetwin.cli.controller import PROFILE_HELP  # typer and the standard library only
from slicetwin.cli.sim import sim_config

app = typer.Typer(no_args_is_help=False)


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        key, sep, val = p.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {p!r}", param_hint="--trainer-set")
        out[key.strip().replace("-", "_")] = val.strip()
    return out


@app.command()
def demo(
    cells: int = typer.Option(8, min=1, max=1000, help="simulated cells (fake gNB)"),
    duration: float = typer.Option(150.0, min=1.0, help="seconds of closed loop"),
    windows: int = typer.Option(None, min=1, help="stop after this many windows (overrides "
                                "--duration)"),
    out: str = typer.Option("runs/demo", help="folder for summary.json, windows.csv, plots, logs"),
    live: bool = typer.Option(None, "--live/--no-live", help="rich live view (default: when "
                              "stdout is a terminal) or plain progress lines"),
    seed: int = typer.Option(0, help="traffic, fresh student, exploration and trainer seed"),
    profile: str = typer.Option("paper", help="traffic of the simulated cells and of the "
                                "trainer's sim gate (" + PROFILE_HELP + ")"),
    window_ms: float = typer.Option(200.0, min=0.0, help="wall-clock time per window (the "
                                    "simulated window is 200 ms); 0 = as fast as possible"),
    mode: str = typer.Option("auto", help="auto: Redis when REDIS_URL is set or redis-server is "
                             "on PATH, else embedded; redis; embedded"),
    swaps: int = typer.Option(0, min=0, help="stop once this many hot-swaps were served (and the "
                              "last one served --after-swap windows); 0: run the full duration"),
    after_swap: int = typer.Option(50, min=1, help="windows to serve after the last --swaps swap"),
    epsilon: float = typer.Option(0.2, min=0.0, max=1.0, help="controller ε-exploration"),
    cold_start: str = typer.Option("proportional", help="served until a trained policy passes "
                                   "the held-out gate: proportional (the safe heuristic of a "
                                   "fresh install) or init (a random student, to watch learning "
                                   "from scratch)"),
    batch: bool = typer.Option(False, "--batch", help="one batch request per window"),
    trainer: bool = typer.Option(True, "--trainer/--no-trainer", help="run the trainer "
                                 "(--no-trainer: serve the initial policy only)"),
    twin_service: bool = typer.Option(False, "--twin-service", help="Redis mode: also run the "
                                      "twin service (slicetwin twin); agent 2 trains through it"),
    trainer_set: list[str] = typer.Option(None, "--trainer-set", help="override a trainer "
                                          "budget, KEY=VALUE (WorkerSettings field), repeatable"),
    shadow: bool = typer.Option(True, "--shadow/--no-shadow", help="shadow baselines: what "
                                "equal split, demand-proportional, the tuned heuristic and the "
                                "best fixed split in hindsight earn on the same traffic"),
    tuned: bool = typer.Option(True, "--tuned/--no-tuned", help="shadow the tuned heuristic "
                               "too (grid-searched on a training seed at start, ~6 s)"),
    shadow_cells: int = typer.Option(2, min=0, help="cells whose best fixed split in "
                                     "hindsight is tracked (each costs n_units - 2 simulated "
                                     "copies per window; 0: none; at most --cells)"),
) -> None:
    """Run the closed loop on this machine and show a model hot-swap (see docs/demo.md)."""
    from slicetwin.ops.demo.run import DemoConfig, run_demo  # lazy: torch

    if mode not in ("auto", "redis", "embedded"):
        raise typer.BadParameter("auto, redis or embedded", param_hint="--mode")
    if cold_start not in ("proportional", "init"):
        raise typer.BadParameter("proportional or init", param_hint="--cold-start")

    sim_config(profile)  # a bad --profile: exit 2 naming the choices, before anything starts
    cfg = DemoConfig(cells=cells, duration_s=duration, windows=windows, out=out,
                     live=sys.stdout.isatty() if live is None else live, seed=seed,
                     profile=profile,
                     window_ms=window_ms, mode=mode, stop_after_swaps=swaps,
                     after_swap_windows=after_swap, explore_epsilon=epsilon, batch=batch,
                     cold_start=cold_start,
                     trainer=trainer, twin_service=twin_service,
                     trainer_overrides=_overrides(trainer_set), shadow=shadow, shadow_tuned=tuned,
                     shadow_cells=min(shadow_cells, cells))
    try:
        summary = run_demo(cfg, echo=lambda s: typer.echo(s))
    except (RuntimeError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if summary.get("error") or summary.get("failed_requests") or summary.get(
            "invariant_violations"):
        raise typer.Exit(1)
    if summary.get("stopped_by") == "interrupt":
        raise typer.Exit(130)
