"""``slicetwin controller``, ``slicetwin gnb``, ``slicetwin bench controller``, ``bench soak`` and
``bench scale``.

Module level imports typer and the standard library only (the controller must never import
torch; the import contracts in pyproject.toml and tests/unit/test_architecture.py hold it).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading

import typer

from slicetwin.cli.sim import sim_config

app = typer.Typer(no_args_is_help=True)
bench_app = typer.Typer(no_args_is_help=True)
# = slicetwin.cli.sim.PROFILE_HELP (not imported here: it would import the simulator package at
# module level; tests/system/test_gnb_profile.py keeps the two equal)
PROFILE_HELP = ("simulator profile: paper | reference | diurnal | flash-crowd | hetero | mix=A/B/C, "
                "or a schedule like 'paper:2000,flash-crowd:2000'")


@app.command()
def controller(
    host: str = typer.Option(None, help="bind address (env SLICETWIN_HOST, default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (env SLICETWIN_PORT, default 8080)"),
    model_path: str = typer.Option(None, help="ONNX policy file (env SLICETWIN_MODEL_PATH)"),
    redis_url: str = typer.Option(None, help="Redis URL (env SLICETWIN_REDIS_URL)"),
    log_level: str = typer.Option(None, help="uvicorn log level (env SLICETWIN_LOG_LEVEL)"),
    allow_unsigned: bool = typer.Option(None, "--allow-unsigned", help="serve --model-path "
                                        "without a valid .sig (logged; slicetwin_model_unsigned"
                                        " = 1; env SLICETWIN_ALLOW_UNSIGNED)"),
    ssl_certfile: str = typer.Option(None, help="serve HTTPS with this certificate (PEM)"),
    ssl_keyfile: str = typer.Option(None, help="private key of --ssl-certfile (PEM)"),
) -> None:
    """Run the controller (FastAPI + uvicorn, one worker). Settings: SLICETWIN_* env vars."""
    for name, val in (("HOST", host), ("PORT", port), ("MODEL_PATH", model_path),
                      ("REDIS_URL", redis_url), ("LOG_LEVEL", log_level),
                      ("ALLOW_UNSIGNED", "true" if allow_unsigned else None)):
        if val is not None:
            os.environ[f"SLICETWIN_{name}"] = str(val)
    from pydantic import ValidationError  # lazy: fast start

    from controller.app import create_app  # lazy: service
    from controller.settings import ControllerSettings  # lazy: service
    from slicetwin.platform.settings_errors import settings_error  # lazy: fast start

    try:
        s = ControllerSettings()
    except ValidationError as e:  # a clear start-up error naming the variable, no traceback
        typer.echo(settings_error(e), err=True)
        raise typer.Exit(2) from None
    # background threads (registry watcher loading a model, transition writer) hand the GIL
    # back to the event loop sooner: a hot-swap stalls requests for ~1 ms slices, not 5 ms ones
    sys.setswitchinterval(s.gil_switch_interval_s)
    app = create_app(s)
    # the objects alive after start-up (modules, app, schemas) are never garbage: move them out
    # of the collector's sight, and let it run per 100k allocations rather than per 700
    if s.gc_gen0_threshold:
        gc.set_threshold(s.gc_gen0_threshold, *gc.get_threshold()[1:])
    gc.collect()
    gc.freeze()
    http = "auto"  # httptools when installed
    if s.coalesce_writes:
        try:
            from controller.server import CoalescingHttpToolsProtocol

            http = CoalescingHttpToolsProtocol
        except ImportError:  # no httptools: uvicorn's h11
            pass
    from slicetwin.platform.serve import (
        serve,  # exit 0 after a SIGTERM drain (uvicorn re-raises it)
    )  # lazy: fast start

    serve(app, host=s.host, port=s.port, log_level=s.log_level, http=http,
          access_log=False, workers=1, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)


@app.command()
def gnb(
    controller: str = typer.Option("http://127.0.0.1:8080", "--controller", help="controller URL"),
    cells: int = typer.Option(4, min=1, help="simulated cells"),
    windows: int = typer.Option(50, min=0, help="observation windows to run (0: until SIGTERM "
                                "or SIGINT, then the summary)"),
    batch: bool = typer.Option(False, "--batch", help="one batch request per window"),
    seed: int = typer.Option(0),
    api_key: str = typer.Option(None, envvar="SLICETWIN_API_KEY"),
    cell_prefix: str = typer.Option("gnb", help="cell ids are <prefix>-<i>"),
    start_window: int = typer.Option(None, help="first window number (default: wall clock)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON line"),
    pace: bool = typer.Option(False, "--pace", help="keep real time: one window per --window-ms"),
    window_ms: float = typer.Option(200.0, min=1.0, help="window length for --pace (ms)"),
    profile: str = typer.Option("paper", help="traffic of the simulated cells (" + PROFILE_HELP + ")"),
) -> None:
    """Run simulator cells in closed loop with a controller; print per-slice SSR / utility.

    SIGTERM / SIGINT end the run after the current window, with the summary (exit 0)."""

    from slicetwin.ops.gnb import GnbConfig, print_summary, run_gnb  # lazy: numba

    sim_config(profile)  # a bad --profile: exit 2 naming the choices, before any request
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    s = run_gnb(GnbConfig(controller=controller, cells=cells, windows=windows, batch=batch,
                          seed=seed, profile=profile, api_key=api_key, cell_prefix=cell_prefix,
                          start_window=start_window, progress=not as_json, pace=pace,
                          window_ms=window_ms, stop_event=stop))
    if as_json:
        typer.echo(json.dumps(s.to_dict()))
    else:
        print_summary(s)
    if s.failed_requests or s.invariant_violations:
        raise typer.Exit(1)


@bench_app.command("controller")
def bench_controller(
    seconds: float = typer.Option(3.0, help="duration of each timed phase"),
    serial_requests: int = typer.Option(3000),
    rate: float = typer.Option(1000.0, help="offered load of the fixed-rate phase (req/s)"),
    connections: int = typer.Option(16, help="connections of the max-throughput phase"),
    batch_size: int = typer.Option(1000),
    swaps: int = typer.Option(6, help="promotions during the hot-swap phase"),
    redis: bool = typer.Option(True, help="start a private redis-server for the hot-swap phase"),
) -> None:
    """Start a real controller process, drive it from this one, print one JSON line."""
    from slicetwin.ops.bench.controller import BenchConfig, run_bench  # lazy: service

    res = run_bench(BenchConfig(seconds=seconds, serial_requests=serial_requests, rate=rate,
                                connections=connections, batch_size=batch_size, swaps=swaps,
                                use_redis=redis))
    typer.echo(json.dumps(res))


@bench_app.command("sink")
def bench_sink(
    redis: str = typer.Option("single,cluster", help="single and/or cluster (comma-separated)"),
    wait_replicas: str = typer.Option("0,1", help="replicas each write waits for (WAIT), "
                                      "comma-separated; 1 on a single Redis adds a replica"),
    transitions: int = typer.Option(50_000, min=1),
    cells: int = typer.Option(256, min=1),
    shards: int = typer.Option(0, min=0, help="stream shards (0: 1 single, 6 cluster)"),
    batch: int = typer.Option(2000, min=1, help="transitions per writer batch"),
) -> None:
    """The controller's transitions writer on a private Redis or Redis Cluster, with and
    without waiting for a replica; one JSON line per configuration."""
    from slicetwin.ops.bench.sink import run_sink_bench  # lazy: service

    for backend in [b.strip() for b in redis.split(",") if b.strip()]:
        for w in [int(x) for x in wait_replicas.split(",") if x.strip()]:
            typer.echo(json.dumps(run_sink_bench(backend, w, transitions, cells, shards, batch)),
                       nl=True)


@bench_app.command("soak")
def soak(
    rate: float = typer.Option(1000.0, help="offered load, requests/s (open loop)"),
    duration: float = typer.Option(600.0, help="measured seconds (after the warm-up)"),
    warmup: float = typer.Option(10.0, help="seconds of load before the RSS baseline"),
    connections: int = typer.Option(8, help="keep-alive connections"),
    cells: int = typer.Option(256, help="distinct cells (a multiple of connections)"),
    bucket: float = typer.Option(60.0, help="seconds per latency bucket"),
    redis: bool = typer.Option(True, help="private redis-server for the transitions stream"),
    cell_store: str = typer.Option("local", help="per-cell memory: local, or redis (the "
                                   "compose configuration)"),
    outage_at: float = typer.Option(None, help="stop Redis this many seconds into the "
                                    "measured phase (and start it again after --outage)"),
    outage: float = typer.Option(30.0, help="seconds Redis stays stopped (with --outage-at)"),
    progress: bool = typer.Option(True, help="progress bar on stderr"),
) -> None:
    """Soak a real controller process; print one JSON line (errors, latency, RSS growth; with
    --outage-at, the Redis outage's accounting)."""
    from slicetwin.ops.soak import SoakConfig, run_soak  # lazy: service

    if cell_store not in ("local", "redis"):
        raise typer.BadParameter("local or redis", param_hint="--cell-store")
    if outage_at is not None and not (0 <= outage_at and outage_at + outage < duration):
        raise typer.BadParameter("the outage must end before the measured phase does",
                                 param_hint="--outage-at")
    cfg = SoakConfig(rate=rate, duration_s=duration, warmup_s=warmup, connections=connections,
                     cells=cells, bucket_s=bucket, redis=redis, cell_store=cell_store,
                     outage_at_s=outage_at, outage_s=outage)
    typer.echo(json.dumps(run_soak(cfg, progress=progress)))


@bench_app.command("scale")
def bench_scale(
    replicas: str = typer.Option("1,2,4", help="replica counts to measure, comma-separated"),
    redis: str = typer.Option("single", help="Redis backend: single (a private redis-server) "
                              "or cluster"),
    rate: float = typer.Option(1000.0, help="offered load, reports/s (open loop, all "
                               "generators together)"),
    rate_per_replica: bool = typer.Option(False, "--rate-per-replica", help="--rate is per "
                                          "replica: the offered load grows with the replica "
                                          "count (equal load per replica)"),
    duration: float = typer.Option(20.0, help="measured seconds per configuration"),
    cells: int = typer.Option(512, help="distinct cells (a multiple of generators x "
                              "connections x batch)"),
    generators: int = typer.Option(2, min=1, help="load-generator processes"),
    connections: int = typer.Option(8, min=1, help="keep-alive connections per generator"),
    batch: int = typer.Option(1, min=1, help="reports per request (> 1: POST "
                              "/v1/reports:batch; --rate stays reports/s)"),
    warmup: float = typer.Option(3.0, min=0.0, help="seconds of load before the measured phase"),
    kill_replica: bool = typer.Option(False, "--kill-replica", help="SIGKILL replica 0 during "
                                      "the load and start it again"),
    kill_at: float = typer.Option(0.4, min=0.05, max=0.9, help="when to kill (fraction of the "
                                  "load)"),
    restart_after: float = typer.Option(1.0, min=0.0, help="seconds between the kill and the "
                                        "restart"),
    affinity: bool = typer.Option(False, "--affinity", help="HAProxy hashes X-Cell-Id "
                                  "(optional: correctness never needs it)"),
) -> None:
    """Controller replicas behind HAProxy on a private Redis, open-loop load; one JSON line per
    replica count (decisions/s, p50/p99, failures, ordering, lost/duplicate transitions,
    decisions per server CPU-second)."""
    from slicetwin.ops.bench.scale import ScaleConfig, run_scale  # lazy: service
    from slicetwin.ops.haproxy import find as find_haproxy  # lazy: service

    try:
        counts = tuple(int(x) for x in replicas.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter("comma-separated integers, e.g. 1,2,4",
                                 param_hint="--replicas") from None
    cfg = ScaleConfig(replicas=counts, redis=redis, rate=rate, rate_per_replica=rate_per_replica,
                      duration_s=duration, cells=cells,
                      generators=generators, connections=connections, batch=batch,
                      warmup_s=warmup,
                      kill_replica=kill_replica, kill_at=kill_at, restart_after_s=restart_after,
                      affinity=affinity)
    try:
        cfg.check()
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if find_haproxy() is None:
        typer.echo("haproxy is not installed (Debian: apt-get install haproxy)", err=True)
        raise typer.Exit(2)
    try:
        run_scale(cfg, emit=lambda res: typer.echo(json.dumps(res)))
    except RuntimeError as e:
        if "is not available here" not in str(e):
            raise
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
