"""Soak (``slicetwin bench soak``): sustained open-loop load on a real uvicorn controller.

Starts a private redis-server (transitions stream + registry) and a controller process
(``slicetwin controller``, cell memory local), warms it up, then offers ``--rate`` req/s for
``--duration`` s (``slicetwin.ops.loadgen``) while sampling the controller's RSS from /proc. Prints
one JSON line: requests, errors, achieved rate, p50/p99 latency per ``--bucket`` (a minute by
default), RSS at start (after the warm-up) / end / max and the growth, and the transition
accounting read back from the controller's metrics and the stream (closed = written + buffered,
dropped).

Also home of :class:`ControllerProcess`, the real-process harness of the reliability tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import redis
from tqdm import tqdm

from slicetwin.ops.bench.controller import _start_redis
from slicetwin.ops.loadgen import LoadConfig, drive
from slicetwin.platform.keys import fresh_keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eEinfNa]+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value} (enough for counters and gauges)."""
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class ControllerProcess:
    """A real ``slicetwin controller`` process on a free port (context manager).

    ``env`` adds ``SLICETWIN_*`` settings; the output goes to a temporary log that
    :meth:`log_tail` reads back when something fails."""

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None,
                 ready_timeout: float = 60.0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SLICETWIN_PORT": str(self.port),
                    "SLICETWIN_LOG_LEVEL": "warning", **(env or {})}
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> ControllerProcess:
        self._log = tempfile.NamedTemporaryFile("w+", prefix="slicetwin-ctl-", suffix=".log",
                                                delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "controller"],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited: {self.log_tail()}")
            try:
                status, _ = http_get(self.url + "/healthz", 0.5)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"controller did not start: {self.log_tail()}")

    def get(self, path: str) -> tuple[int, dict | bytes]:
        status, body = http_get(self.url + path)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def metrics(self) -> dict[str, float]:
        return parse_metrics(http_get(self.url + "/metrics")[1].decode())

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def log_tail(self, n: int = 3000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name) as fh:
            return fh.read()[-n:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            os.unlink(self._log.name)
            self._log = None

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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


def run_soak(cfg: SoakConfig, progress: bool = True) -> dict:
    """Drive a fresh controller process; return the figures (see the module docstring)."""


    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_term)  # so the finally stops our children
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    redis_proc = _start_redis() if cfg.redis else None
    keys = fresh_keys()  # production mode, as deployed: every request carries the bearer key
    api_key = keys["SLICETWIN_API_KEY"]
    env = {**{k: v for k, v in keys.items() if k.startswith("SLICETWIN_")},
           "SLICETWIN_CELL_STORE": "local", "SLICETWIN_MODEL_SOURCE": "auto"}
    if redis_proc is not None:
        env["SLICETWIN_REDIS_URL"] = redis_proc[1]
    ctl = ControllerProcess(env)
    out: dict = {"bench": "soak", "rate": cfg.rate, "duration_s": cfg.duration_s,
                 "connections": cfg.connections, "cells": cfg.cells, "cpus": os.cpu_count(),
                 "loadavg_1m_start": round(os.getloadavg()[0], 2),
                 "transitions_sink": "redis" if redis_proc else "memory"}
    try:
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

        def tick(t: float) -> None:
            if bar is not None:
                bar.n = min(int(t), bar.total)
                bar.refresh()
            if t - samples[-1][0] >= cfg.rss_every_s:
                samples.append((t, ctl.rss_mb()))

        load = LoadConfig(rate=cfg.rate, duration_s=cfg.duration_s, connections=cfg.connections,
                          cells=cfg.cells, bucket_s=cfg.bucket_s, seed=cfg.seed,
                          api_key=api_key)
        res = asyncio.run(drive(ctl.port, load, on_tick=tick))
        if bar is not None:
            bar.close()
        rss1 = ctl.rss_mb()
        samples.append((res.wall_s, rss1))
        deadline = time.time() + 20
        while True:  # let the writer drain before reading the accounting
            m = ctl.metrics()
            done = (m.get("slicetwin_transitions_written_total", 0)
                    + m.get("slicetwin_transitions_dropped_total", 0))
            if done >= m.get("slicetwin_transitions_closed_total", 0) or time.time() > deadline:
                break
            time.sleep(0.2)
        stream_len = None
        if redis_proc is not None:
            r = redis.Redis.from_url(redis_proc[1])
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
    except BaseException:
        sys.stderr.write("controller log tail:\n" + ctl.log_tail() + "\n")
        raise
    finally:
        ctl.stop()
        if redis_proc is not None:
            redis_proc[0].terminate()
            redis_proc[0].wait(10)
            shutil.rmtree(redis_proc[2], ignore_errors=True)
    return out
