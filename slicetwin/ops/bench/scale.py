"""``slicetwin bench scale``: N controller replicas behind HAProxy, driven open loop.

For each replica count it starts real processes: a private Redis (:func:`start_redis`), N
``slicetwin controller`` processes in the compose configuration (cell memory in Redis, the Redis
transitions sink, production keys), HAProxy in front (``slicetwin.ops.haproxy``) and
``generators`` load-generator processes (``slicetwin.ops.loadgen``, open loop, disjoint cells,
one shared schedule), so the client is not the bottleneck and a stall cannot slow the offered
load. After a warm-up it offers ``rate`` reports/s for ``duration_s`` (one per request, or
``batch`` per ``/v1/reports:batch`` request) and prints one JSON line:
decisions/s, p50/p99 (from each request's due time), failed requests by kind, per-cell ordering
violations (answers and Redis' cell memory), lost / duplicate transitions (the stream against the
answered window pairs: ``scale_audit``), and decisions per server CPU-second (controllers +
HAProxy, from /proc; Redis separately).

``kill_replica``: replica 0 is SIGKILLed at ``kill_at`` of the load and started again on its
port ``restart_after_s`` later; the line then carries when HAProxy took it out and back, and the
failed requests sent before the kill (in flight at it) and after.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from slicetwin.ops.bench.controller import _cpu_s
from slicetwin.ops.bench.scale_audit import (
    audit_memory,
    audit_transitions,
    redis_figures,
    redis_sample,
)
from slicetwin.ops.haproxy import HAProxy
from slicetwin.ops.loadgen import LoadConfig, drive
from slicetwin.ops.procs import ControllerProcess, RedisServer
from slicetwin.ops.redis_cluster import RedisCluster
from slicetwin.ops.soak import wait_drained
from slicetwin.platform.cell_keys import cell_keys
from slicetwin.platform.keys import fresh_keys
from slicetwin.platform.redis_client import connect, is_cluster

REDIS_KINDS = ("single", "cluster")
KEY_PREFIX = "slicetwin:"
STREAM = KEY_PREFIX + "transitions"
SPAWN_MARGIN_S = 4.0  # generator processes start (imports) before the shared schedule begins


@dataclass
class ScaleConfig:
    replicas: tuple[int, ...] = (1, 2, 4)
    redis: str = "single"
    rate: float = 1000.0  # offered reports/s, all generators together
    rate_per_replica: bool = False  # True: ``rate`` per replica (the load grows with replicas)
    duration_s: float = 20.0
    cells: int = 512  # all generators together
    generators: int = 2  # load-generator processes
    connections: int = 8  # per generator
    batch: int = 1  # reports per request (> 1: POST /v1/reports:batch)
    warmup_s: float = 3.0
    kill_replica: bool = False
    kill_at: float = 0.4  # fraction of the load
    restart_after_s: float = 1.0
    affinity: bool = False  # HAProxy hashes X-Cell-Id (never needed for correctness)
    seed: int = 0

    def offered(self, replicas: int) -> float:
        """Reports/s offered to ``replicas`` replicas."""
        return self.rate * replicas if self.rate_per_replica else self.rate

    def check(self) -> None:
        if self.redis not in REDIS_KINDS:
            raise ValueError(f"redis must be one of {REDIS_KINDS}, not {self.redis!r}")
        if not self.replicas or min(self.replicas) < 1:
            raise ValueError("replicas: counts >= 1")
        if self.kill_replica and min(self.replicas) < 2:
            raise ValueError("--kill-replica needs at least 2 replicas in every configuration")
        per = self.generators * self.connections * self.batch
        if self.batch < 1 or self.cells % per:
            raise ValueError(f"cells ({self.cells}) must be a multiple of generators x "
                             f"connections x batch ({per}): each cell stays on one connection")
        if self.rate <= 0 or self.duration_s <= 0:
            raise ValueError("rate and duration must be positive")


def start_redis(kind: str) -> tuple[str, Callable[[], None]]:
    """The bench's Redis backend: (url, stop). ``cluster``: 3 masters with a replica each
    (``slicetwin.ops.redis_cluster``)."""
    if kind == "single":
        srv = RedisServer().start()
        return srv.url, srv.cleanup
    if kind == "cluster":
        missing = RedisCluster.available()
        if missing:
            raise RuntimeError(f"--redis cluster is not available here: {missing}")
        cluster = RedisCluster(masters=3, replicas_per_master=1).start()
        return cluster.url, cluster.stop
    raise ValueError(f"unknown Redis kind {kind!r}")


def _generate_into(queue, port: int, cfg: dict, warm: dict | None) -> None:
    """A load-generator process's body: its result (or its failure) goes to ``queue``."""
    try:
        queue.put(_generate(port, cfg, warm))
    except BaseException as e:  # the parent reports it instead of waiting for a result
        queue.put({"error": f"{type(e).__name__}: {e}", "prefix": cfg["cell_prefix"]})


def _generate(port: int, cfg: dict, warm: dict | None) -> dict:
    """One load generator: warm-up, then its share of the measured load."""
    try:
        import uvloop  # lazy: optional speed-up of the generator's event loop

        uvloop.install()
    except ImportError:
        pass
    if warm is not None:
        late = time.perf_counter() + 0.05 - warm["start_at"]
        if late > 0:  # spawned late: shorten the warm-up rather than burst to catch up
            warm["duration_s"] -= late
            warm["start_at"] += late
        if warm["duration_s"] > 0.2:
            asyncio.run(drive(port, LoadConfig(**warm)))
    res = asyncio.run(drive(port, LoadConfig(**cfg)))
    return {"requests": res.requests, "ok": res.ok, "status": res.status, "wall_s": res.wall_s,
            "latencies": res.latencies, "failures": res.failures, "answered": res.answered,
            "answer_mismatches": res.answer_mismatches,
            "order_violations": res.order_violations, "prefix": cfg["cell_prefix"]}


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3, 3)


def _zombie_cpu_s(pid: int, timeout: float = 2.0) -> float:
    """CPU seconds of a child just SIGKILLed, read before it is reaped (its /proc entry stays)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    break
        except OSError:
            break
        time.sleep(0.005)
    return _cpu_s(pid)


class _CpuLedger:
    """Server CPU seconds between :meth:`open` and :meth:`close`, per process and role, across
    a replica's death and restart."""

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.used: dict[str, float] = {}
        self.role: dict[int, str] = {}

    def open(self, pid: int, role: str) -> None:
        self.start[pid], self.role[pid] = _cpu_s(pid), role

    def close(self, pid: int, cpu_now: float | None = None) -> None:
        if pid in self.start:
            now = _cpu_s(pid) if cpu_now is None else cpu_now
            role = self.role[pid]
            self.used[role] = self.used.get(role, 0.0) + now - self.start.pop(pid)

    def close_all(self) -> None:
        for pid in list(self.start):
            self.close(pid)


def _controller_env(redis_url: str, keys: dict) -> dict[str, str]:
    """The compose file's controller settings (docker-compose.yml), on a private Redis."""
    return {**{k: v for k, v in keys.items() if k.startswith("SLICETWIN_")},
            "SLICETWIN_REDIS_URL": redis_url, "SLICETWIN_REGISTRY_PREFIX": KEY_PREFIX,
            "SLICETWIN_MODEL_SOURCE": "auto", "SLICETWIN_CELL_STORE": "redis",
            "SLICETWIN_TRANSITIONS_SINK": "redis", "SLICETWIN_LOG_LEVEL": "warning"}


def _progress(msg: str) -> None:
    sys.stderr.write(f"[bench scale] {msg}\n")
    sys.stderr.flush()


def run_config(cfg: ScaleConfig, replicas: int) -> dict:
    """One configuration: fresh Redis, ``replicas`` controllers, HAProxy, the load; the figures."""
    url, stop_redis = start_redis(cfg.redis)
    keys = fresh_keys()
    env = _controller_env(url, keys)
    ctls: list[ControllerProcess] = []
    lb: HAProxy | None = None
    out: dict = {"bench": "scale", "replicas": replicas, "redis": cfg.redis,
                 "offered_rps": cfg.offered(replicas), "batch": cfg.batch, "duration_s": cfg.duration_s,
                 "cells": cfg.cells,
                 "generators": cfg.generators, "connections": cfg.generators * cfg.connections,
                 "affinity": cfg.affinity, "cpus": os.cpu_count(),
                 "loadavg_1m_start": round(os.getloadavg()[0], 2)}
    r = connect(url)
    try:
        _progress(f"{replicas} replica(s): starting controllers, HAProxy")
        for _ in range(replicas):
            ctls.append(ControllerProcess(env, ready_path="/readyz").start())
        lb = HAProxy([c.port for c in ctls], affinity=cfg.affinity).start(wait_up=replicas)
        out.update(_drive(cfg, replicas, ctls, lb, env, keys["SLICETWIN_API_KEY"], r))
    except BaseException:
        for i, c in enumerate(ctls):
            sys.stderr.write(f"controller {i} log tail:\n{c.log_tail()}\n")
        if lb is not None:
            sys.stderr.write(f"haproxy log tail:\n{lb.log_tail()}\n")
        raise
    finally:
        r.close()
        if lb is not None:
            lb.stop()
        for c in ctls:
            c.stop()
        stop_redis()
    out["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    return out


def _drive(cfg: ScaleConfig, replicas: int, ctls: list[ControllerProcess], lb: HAProxy,
           env: dict, api_key: str, r) -> dict:
    g = cfg.generators
    start_at = time.perf_counter() + SPAWN_MARGIN_S + cfg.warmup_s
    rate = cfg.offered(replicas)
    share = {"rate": rate / g / cfg.batch, "connections": cfg.connections,
             "cells": cfg.cells // g, "batch": cfg.batch, "api_key": api_key,
             "cell_header": cfg.affinity,
             "bucket_s": cfg.duration_s}
    loads = [{**share, "duration_s": cfg.duration_s, "cell_prefix": f"scale{k}",
              "seed": cfg.seed + k, "start_at": start_at, "keep_latencies": True,
              "keep_answered": True} for k in range(g)]
    warms = [{**share, "duration_s": cfg.warmup_s - 0.1, "cell_prefix": f"warm{k}",
              "seed": cfg.seed + 100 + k, "start_at": start_at - cfg.warmup_s,
              "bucket_s": cfg.warmup_s} if cfg.warmup_s > 0 else None for k in range(g)]
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing of this process is copied
    queue = ctx.Queue()
    gens = [ctx.Process(target=_generate_into, args=(queue, lb.port, loads[k], warms[k]),
                        daemon=True) for k in range(g)]
    for p in gens:
        p.start()
    try:
        _progress(f"{replicas} replica(s): warm-up {cfg.warmup_s:.0f} s, then "
                  f"{rate:.0f} reports/s for {cfg.duration_s:.0f} s")
        time.sleep(max(0.0, start_at - time.perf_counter()))
        ledger = _CpuLedger()
        for c in ctls:
            ledger.open(c.proc.pid, "controllers")
        ledger.open(lb.pid, "haproxy")
        rs0 = redis_sample(r)
        kill = None
        if cfg.kill_replica:
            time.sleep(max(0.0, start_at + cfg.kill_at * cfg.duration_s - time.perf_counter()))
            kill = _kill_and_restart(cfg, ctls, lb, env, ledger)
        results = [queue.get(timeout=cfg.duration_s + SPAWN_MARGIN_S + cfg.warmup_s + 120)
                   for _ in gens]
        ledger.close_all()
        rs1 = redis_sample(r)
    finally:
        for p in gens:
            p.join(5)
            if p.is_alive():
                p.kill()
    bad = [res for res in results if "error" in res]
    if bad:
        raise RuntimeError(f"load generator {bad[0]['prefix']} failed: {bad[0]['error']}")
    _progress(f"{replicas} replica(s): load done, draining the transition sinks")
    for c in ctls:
        wait_drained(c, 30)
    answered = {res["prefix"]: res["answered"] for res in results}
    lat = [x for res in results for x in res["latencies"]]
    ok = sum(res["ok"] for res in results) * cfg.batch  # decisions
    requests = sum(res["requests"] for res in results)
    wall = max(res["wall_s"] for res in results)
    status: dict = {}
    for res in results:
        for k, v in res["status"].items():
            status[str(k)] = status.get(str(k), 0) + v
    failed_by_kind = {k: v for k, v in status.items() if k != "200"}
    cpu_ctl = ledger.used.get("controllers", 0.0)
    cpu_lb = ledger.used.get("haproxy", 0.0)
    # the controllers' own key layout: 1 stream shard on a single Redis, 6 on a cluster
    layout = cell_keys(KEY_PREFIX, is_cluster(r), 0, STREAM)
    streams = layout.streams
    out = {"requests": requests, "decisions": ok, "achieved_rps": round(requests / wall, 1),
           "decisions_per_s": round(ok / wall, 1), "p50_ms": _pct(lat, 0.50),
           "p99_ms": _pct(lat, 0.99), "failed": requests - ok // cfg.batch,
           "failed_by_kind": failed_by_kind,
           "order_violations": sum(res["order_violations"] for res in results),
           "answer_mismatches": sum(res["answer_mismatches"] for res in results),
           "cell_memory_mismatches": audit_memory(r, layout, answered)}
    out.update(audit_transitions(r, streams, answered))
    out.update({"server_cpu_s": {"controllers": round(cpu_ctl, 2), "haproxy": round(cpu_lb, 2)},
                "decisions_per_cpu_s": round(ok / (cpu_ctl + cpu_lb), 1)
                if cpu_ctl + cpu_lb > 0 else None,
                "decisions_per_controller_cpu_s": round(ok / cpu_ctl, 1) if cpu_ctl > 0 else None})
    cell_ids = [f"scale0-{i}" for i in range(cfg.cells // g)]
    out.update(redis_figures(r, rs0, rs1, ok, layout, cell_ids))
    stats = lb.stats().get("BACKEND", {})
    out["haproxy"] = {k: int(stats.get(k) or 0) for k in
                      ("wretr", "wredis", "econ", "eresp", "hrsp_5xx", "connect", "reuse")}
    if kill is not None:
        t_kill = kill.pop("t_kill")
        kill["failed_in_flight"] = _failures_between(results, t_kill - 1.0, t_kill)
        kill["failed_after"] = _failures_between(results, t_kill, float("inf"))
        out["kill"] = kill
    return out


def _failures_between(results: list[dict], t0: float, t1: float) -> dict:
    """Failed requests sent in (t0, t1], by kind."""
    out: dict = {}
    for res in results:
        for sent, kind in res["failures"]:
            if t0 < sent <= t1:
                out[str(kind)] = out.get(str(kind), 0) + 1
    return out


def _kill_and_restart(cfg: ScaleConfig, ctls: list[ControllerProcess], lb: HAProxy, env: dict,
                      ledger: _CpuLedger) -> dict:
    """SIGKILL replica 0, watch HAProxy take it out, start it again on its port, watch it
    rejoin. Returns the timings (``t_kill``: the perf_counter instant, popped by the caller)."""
    victim = ctls[0]
    pid = victim.proc.pid
    os.kill(pid, signal.SIGKILL)
    ledger.close(pid, _zombie_cpu_s(pid))
    t_kill = time.perf_counter()  # dead (a zombie): a request sent before this reached it alive
    _progress("replica 0 SIGKILLed")
    down_s = _wait_status(lb, "ctl0", lambda s: s.startswith("DOWN"), 10.0, t_kill)
    victim.stop()  # reaps it and closes its log
    time.sleep(max(0.0, t_kill + cfg.restart_after_s - time.perf_counter()))
    fresh = ControllerProcess(env, port=victim.port, ready_path="/readyz").start()
    ctls[0] = fresh
    ledger.open(fresh.proc.pid, "controllers")
    ready_s = time.perf_counter() - t_kill
    up_s = _wait_status(lb, "ctl0", lambda s: s == "UP", 10.0, t_kill)
    _progress(f"replica 0 restarted, back in HAProxy's pool {up_s} s after the kill")
    return {"t_kill": t_kill, "at_s": round(cfg.kill_at * cfg.duration_s, 2),
            "out_of_pool_s": down_s, "restarted_ready_s": round(ready_s, 2),
            "back_in_pool_s": up_s}


def _wait_status(lb: HAProxy, server: str, ok, timeout: float, t0: float) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if ok(lb.status().get(server, "")):
            return round(time.perf_counter() - t0, 3)
        time.sleep(0.01)
    return None


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


def run_scale(cfg: ScaleConfig, emit: Callable[[dict], None]) -> list[dict]:
    """Every configuration in turn; ``emit`` gets each JSON-able result as soon as it is done."""
    cfg.check()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_term)  # so the finally blocks stop our children
    out = []
    for n in cfg.replicas:
        res = run_config(cfg, n)
        if cfg.kill_replica:
            res["kill"]["restart_after_s"] = cfg.restart_after_s
        emit(res)
        out.append(res)
    return out
