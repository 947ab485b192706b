"""``slicetwin bench soak``: sustained open-loop load on a real uvicorn controller.

Starts a private redis-server (transitions stream + registry) and a controller process
(``slicetwin controller``, cell memory local), warms it up, then offers ``--rate`` req/s for
``--duration`` s (``slicetwin.ops.loadgen``) while sampling the controller's RSS from /proc. Prints
one JSON line: requests, errors, achieved rate, p50/p99 latency per ``--bucket`` (a minute by
default), RSS at start (after the warm-up) / end / max and the growth, and the transition
accounting read back from the controller's metrics and the stream (closed = written + buffered,
dropped).

``--outage-at T --outage S`` stops the private Redis ``T`` s into the measured phase and starts it
again ``S`` s later on the same port and directory (RDB snapshot as in the compose file, so the
data survives the restart); with ``--cell-store redis`` (the compose configuration) this is the
floor of issue 18, "decisions never wait on Redis". The JSON line then carries ``outage``: the
answers flagged ``degraded``, the time to re-sync, and the transition accounting against the
answered window pairs (stored, duplicates, missing, and what the controller counted as lost).

The processes (controller, Redis) are ``slicetwin.ops.procs``'s, which the reliability tests use
too.
Module level: typer and the standard library only (``slicetwin.cli.main`` rule).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import redis
from tqdm import tqdm

from slicetwin.core.transition_wire import decode
from slicetwin.ops.loadgen import LoadConfig, drive
from slicetwin.ops.procs import ControllerProcess, RedisServer
from slicetwin.platform.cell_keys import cell_key
from slicetwin.platform.keys import fresh_keys


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


@dataclass
class SoakConfig:
    rate: float = 1000.0  # offered requests/s
    duration_s: float = 600.0  # measured phase
    warmup_s: float = 10.0  # load before the RSS baseline (allocator, caches, model paths)
    connections: int = 8
    cells: int = 256
    bucket_s: float = 60.0  # latency figures per bucket (a minute)
    rss_every_s: float = 5.0
    redis: bool = True  # private redis-server: transitions stream + registry
    seed: int = 0
    cell_store: str = "local"  # "redis": per-cell memory in Redis (the compose configuration)
    outage_at_s: float | None = None  # stop Redis this far into the measured phase
    outage_s: float = 30.0  # and start it again this much later


def run_soak(cfg: SoakConfig, progress: bool = True) -> dict:
    """Drive a fresh controller process; return the figures (see the module docstring)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_term)  # so the finally stops our children
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    outage = cfg.outage_at_s is not None
    if (outage or cfg.cell_store == "redis") and not cfg.redis:
        raise ValueError("an outage and cell_store=redis need the private redis-server")
    redis_proc = RedisServer(persist=outage) if cfg.redis else None
    keys = fresh_keys()  # production mode, as deployed: every request carries the bearer key
    api_key = keys["SLICETWIN_API_KEY"]
    env = {**{k: v for k, v in keys.items() if k.startswith("SLICETWIN_")},
           "SLICETWIN_CELL_STORE": cfg.cell_store, "SLICETWIN_MODEL_SOURCE": "auto"}
    if redis_proc is not None:
        env["SLICETWIN_REDIS_URL"] = redis_proc.url
        env["SLICETWIN_TRANSITIONS_SINK"] = "redis"
    ctl = ControllerProcess(env)
    out: dict = {"bench": "soak", "rate": cfg.rate, "duration_s": cfg.duration_s,
                 "connections": cfg.connections, "cells": cfg.cells, "cpus": os.cpu_count(),
                 "loadavg_1m_start": round(os.getloadavg()[0], 2),
                 "transitions_sink": "redis" if redis_proc else "memory",
                 "cell_store": cfg.cell_store}
    try:
        if redis_proc is not None:
            redis_proc.start()
        ctl.start()
        warm = LoadConfig(rate=cfg.rate, duration_s=cfg.warmup_s, connections=cfg.connections,
                          cells=cfg.cells, bucket_s=max(cfg.warmup_s, 1), cell_prefix="warm",
                          seed=cfg.seed, api_key=api_key)
        wres = asyncio.run(drive(ctl.port, warm)) if cfg.warmup_s > 0 else None
        rss0 = ctl.rss_mb()
        samples = [(0.0, rss0)]
        bar = None
        if progress:
            bar = tqdm(total=int(cfg.duration_s), unit="s", desc="soak", file=sys.stderr)

        fault = _Outage(cfg, redis_proc, ctl) if outage else None

        async def tick(t: float) -> None:
            if bar is not None:
                bar.n = min(int(t), bar.total)
                bar.refresh()
            if t - samples[-1][0] >= cfg.rss_every_s:
                samples.append((t, ctl.rss_mb()))
            if fault is not None:
                await fault.tick(t)

        load = LoadConfig(rate=cfg.rate, duration_s=cfg.duration_s, connections=cfg.connections,
                          cells=cfg.cells, bucket_s=cfg.bucket_s, seed=cfg.seed,
                          api_key=api_key, keep_answered=outage)
        res = asyncio.run(drive(ctl.port, load, on_tick=tick, tick_s=0.25 if outage else 1.0))
        if bar is not None:
            bar.close()
        rss1 = ctl.rss_mb()
        samples.append((res.wall_s, rss1))
        if fault is not None:
            fault.finish()
        m = wait_drained(ctl, 60 if outage else 20)
        stream_len = None
        if redis_proc is not None:
            import redis

            r = redis.Redis.from_url(redis_proc.url)
            stream_len = r.xlen("slicetwin:transitions")
            r.close()
        out.update({
            "requests": res.requests, "errors": res.errors, "status": res.status,
            "achieved_rps": round(res.achieved_rps, 1),
            "warmup_errors": wres.errors if wres else 0,
            "per_bucket": res.buckets, "bucket_s": cfg.bucket_s,
            "p99_ms_max_bucket": max((b["p99_ms"] or 0) for b in res.buckets),
            "rss_start_mb": round(rss0, 2), "rss_end_mb": round(rss1, 2),
            "rss_max_mb": round(max(s for _, s in samples), 2),
            "rss_growth_mb": round(rss1 - rss0, 2),
            "rss_samples_mb": [round(s, 1) for _, s in samples],
            "transitions_closed": m.get("slicetwin_transitions_closed_total"),
            "transitions_written": m.get("slicetwin_transitions_written_total"),
            "transitions_dropped": m.get("slicetwin_transitions_dropped_total"),
            "stream_len": stream_len,
            "policy_versions": res.versions,
            "loadavg_1m_end": round(os.getloadavg()[0], 2)})
        if fault is not None:
            out["outage"] = fault.figures(res, m)
    except BaseException:
        sys.stderr.write("controller log tail:\n" + ctl.log_tail() + "\n")
        raise
    finally:
        ctl.stop()
        if redis_proc is not None:
            redis_proc.cleanup()
    return out


def wait_drained(ctl: ControllerProcess, timeout: float) -> dict[str, float]:
    """Wait until every closed transition is written or counted as dropped, and nothing is held
    for a re-sync; return the metrics."""
    deadline = time.time() + timeout
    while True:
        m = ctl.metrics()
        done = (m.get("slicetwin_transitions_written_total", 0)
                + m.get("slicetwin_transitions_dropped_total", 0))
        settled = (m.get("slicetwin_cell_store_up", 1) == 1
                   and m.get("slicetwin_held_transitions_waiting", 0) == 0)
        if (done >= m.get("slicetwin_transitions_closed_total", 0) and settled) \
                or time.time() > deadline:
            return m
        time.sleep(0.2)


class _Outage:
    """Stops the private Redis at ``outage_at_s`` of the load and starts it ``outage_s`` later;
    then reads the accounting (``figures``)."""

    def __init__(self, cfg: SoakConfig, redis_proc: RedisServer, ctl: ControllerProcess):
        self.cfg, self.redis, self.ctl = cfg, redis_proc, ctl
        self.down_at: float | None = None  # seconds into the load
        self.down_wall = self.up_wall = self.store_up_wall = None  # time.perf_counter()

    async def tick(self, t: float) -> None:

        if self.down_at is None and t >= self.cfg.outage_at_s:
            self.down_at, self.down_wall = t, time.perf_counter()
            await asyncio.to_thread(self.redis.stop)
        elif self.down_at is not None and self.up_wall is None \
                and t >= self.cfg.outage_at_s + self.cfg.outage_s:
            await asyncio.to_thread(self._start)
        elif self.up_wall is not None and self.store_up_wall is None:
            m = await asyncio.to_thread(self.ctl.metrics)
            if m.get("slicetwin_cell_store_up", 1) == 1 and \
                    m.get("slicetwin_held_transitions_waiting", 0) == 0:
                self.store_up_wall = time.perf_counter()

    def _start(self) -> None:
        self.redis.start()
        self.up_wall = time.perf_counter()

    def finish(self) -> None:
        """The load ended: make sure Redis runs again (an outage longer than the load)."""
        if self.down_at is None:
            raise RuntimeError("the load ended before the outage began")
        if self.up_wall is None:
            self._start()

    def figures(self, res, m: dict[str, float]) -> dict:
        prefix = "soak-"
        r = redis.Redis.from_url(self.redis.url)
        payloads: dict[tuple, set] = {}  # (cell, window) -> distinct stored entries
        keys = []
        for _, f in r.xrange("slicetwin:transitions"):
            t = decode(f)
            if t["cell_id"].startswith(prefix):
                keys.append((t["cell_id"], t["window"]))
                payloads.setdefault(keys[-1], set()).add(f[b"t"])
        last: dict[int, int] = {}
        for c, w in res.answered:
            last[c] = max(w, last.get(c, -1))
        mismatched = 0
        if self.cfg.cell_store == "redis":
            p = r.pipeline()
            for c in sorted(last):
                p.hget(cell_key("slicetwin:", f"{prefix}{c}"), "window")  # a single Redis
            got = p.execute()
            mismatched = sum(int(g or -1) != last[c] for c, g in zip(sorted(last), got,
                                                                     strict=True))
        r.close()
        expected = {(f"{prefix}{c}", w) for c, w in res.expected_transitions()}
        stored = set(keys)
        held = {k: m.get(f'slicetwin_held_transitions_total{{outcome="{k}"}}', 0.0)
                for k in ("held", "delivered", "already_stored", "conflict", "overflow",
                          "shutdown")}
        # every lost transition must be counted: dropped (held and refused at the re-sync, held
        # buffer or sink buffer full) or never closed (a cell the cache had no memory of)
        counted = (m.get("slicetwin_transitions_dropped_total", 0.0)
                   + m.get("slicetwin_cell_cache_misses_total", 0.0))
        missing = len(expected - stored)
        return {
            "at_s": round(self.down_at, 2), "down_s": round(self.up_wall - self.down_wall, 2),
            "degraded_answers": res.degraded_answers,
            "degraded_decisions": m.get('slicetwin_degraded_decisions_total{reason="cell_store"}'),
            "resync_s": (round(self.store_up_wall - self.up_wall, 2)
                         if self.store_up_wall is not None else None),
            "transitions_expected": len(expected), "stored": len(keys),
            "stored_unique": len(stored),
            # a sink batch re-sent after a lost reply (at-least-once: identical entries) ...
            "duplicates": len(keys) - len(stored),
            # ... never one window accepted twice (two different transitions)
            "windows_accepted_twice": sum(len(v) > 1 for v in payloads.values()),
            "missing": missing, "unexpected": len(stored - expected),
            "held": held, "cache_misses": m.get("slicetwin_cell_cache_misses_total"),
            "resync_conflicts": m.get('slicetwin_cell_resync_total{outcome="conflict"}'),
            "dropped": m.get("slicetwin_transitions_dropped_total"),
            "lost_uncounted": max(0, missing - int(counted)),
            "cell_memory_mismatches": mismatched}
