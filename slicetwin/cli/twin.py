"""``slicetwin twin`` (the twin service) and ``slicetwin bench twin``.

Module level: typer + stdlib only (CLI rule); heavy imports inside the commands.
"""

from __future__ import annotations

import json

import typer

app = typer.Typer()
bench_app = typer.Typer()


@app.command("twin")
def twin(
    host: str = typer.Option("127.0.0.1", help="bind address"),
    port: int = typer.Option(8002, help="bind port"),
    model: str = typer.Option(None, help="twin model file (else env SLICETWIN_TWIN_MODEL)"),
    redis_url: str = typer.Option(None, help="registry Redis (else env REDIS_URL)"),
    log_level: str = typer.Option("warning", help="uvicorn log level"),
    allow_unsigned: bool = typer.Option(False, "--allow-unsigned", help="load --model without "
                                        "a valid .sig (logged; slicetwin_twin_model_unsigned "
                                        "= 1)"),
    ssl_certfile: str = typer.Option(None, help="serve HTTPS with this certificate (PEM)"),
    ssl_keyfile: str = typer.Option(None, help="private key of --ssl-certfile (PEM)"),
) -> None:
    """Serve the digital twin over HTTP (step, step:batch, model, health, metrics)."""
    from pydantic import ValidationError  # lazy: fast start

    from slicetwin.platform.settings_errors import settings_error  # lazy: fast start
    from twin_service.app import create_app  # lazy: service
    from twin_service.settings import TwinServiceSettings  # lazy: service

    overrides = {k: v for k, v in {"model": model, "redis_url": redis_url,
                                   "allow_unsigned": allow_unsigned}.items() if v}
    try:
        settings = TwinServiceSettings(**overrides)
    except ValidationError as e:  # a clear start-up error naming the variable
        typer.echo(settings_error(e, "SLICETWIN_TWIN_"), err=True)
        raise typer.Exit(2) from None
    from slicetwin.platform.serve import (
        serve,  # exit 0 after a SIGTERM drain (uvicorn re-raises it)
    )  # lazy: fast start

    serve(create_app(settings), host=host, port=port, log_level=log_level,
          access_log=False, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)


@bench_app.command("twin")
def bench_twin(
    batch: int = typer.Option(4096, help="rollouts per batch request"),
    requests: int = typer.Option(60, help="batch requests to time"),
    concurrency: int = typer.Option(2, help="client threads sending batches"),
    single: int = typer.Option(200, help="serial single-step requests for latency"),
    model: str = typer.Option(None, help="twin model file; default: a fresh default-config twin"),
    port: int = typer.Option(0, help="service port (0: a free one)"),
) -> None:
    """Start the twin service as a real uvicorn process and time it; prints one JSON line."""

    from slicetwin.ops.bench.twin import run_bench  # lazy: torch

    typer.echo(json.dumps(run_bench(batch=batch, requests=requests, concurrency=concurrency,
                                    single=single, model=model, port=port)))


@bench_app.command("twin-plan")
def bench_twin_plan(
    states: int = typer.Option(40, min=1, help="real states, every split rated at each"),
    repeats: int = typer.Option(3, min=1, help="alternated repeats (the median is reported)"),
    chunk: int = typer.Option(5, min=1, help="states per call of the shared-prefix path"),
    plain_chunk: int = typer.Option(20, min=1, help="states per predict call of the plain path"),
    profile: str = typer.Option("diurnal", help="simulator profile of the twin's data"),
    seed: int = typer.Option(0),
) -> None:
    """The twin rating all splits at real states: predict per split vs the shared LSTM prefix,
    with their largest difference (one JSON line)."""

    from slicetwin.ops.bench.twin_plan import run_bench  # lazy: torch

    typer.echo(json.dumps(run_bench(states=states, repeats=repeats, chunk=chunk,
                                    plain_chunk=plain_chunk, profile=profile, seed=seed)))


@bench_app.command("twin-fidelity")
def bench_twin_fidelity(
    train_steps: int = typer.Option(400, help="windows of random-policy data per training cell"),
    train_cells: int = typer.Option(8, help="simulated cells for training"),
    test_steps: int = typer.Option(150, help="windows per held-out cell"),
    horizon: int = typer.Option(5, help="multi-step horizon"),
    seed: int = typer.Option(0),
    ranking: bool = typer.Option(True, help="also rank policies in twin vs simulator"),
) -> None:
    """Fit the twin on simulator data; held-out one/multi-step error, Kendall's tau (one JSON)."""

    from trainer.twin_fidelity import fidelity_report  # lazy: torch

    typer.echo(json.dumps(fidelity_report(train_steps, train_cells, test_steps, horizon=horizon,
                                          seed=seed, ranking=ranking)))
