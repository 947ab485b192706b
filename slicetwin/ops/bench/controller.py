"""``slicetwin bench controller``: a real uvicorn controller process driven from this process.

Phases (one JSON line of figures at the end):
1. serial: one connection, one request at a time -> ``serial_p50_ms``, ``serial_p99_ms``;
2. fixed rate: ``rate`` req/s open loop over several connections; latency is measured from each
   request's *scheduled* send time, so a stall is not hidden by the client waiting (no
   coordinated omission) -> ``p99_ms_at_1000rps``;
3. max throughput: ``connections`` closed-loop connections -> ``max_rps``;
4. batch: serial batch requests of ``batch_size`` cells -> ``batch_decisions_per_s`` (and per
   server CPU-second, ``batch_decisions_per_server_cpu_s``), and the
   same through the columnar endpoint -> ``columns_decisions_per_s``;
5. hot-swap: the fixed-rate load again while the registry promotes a new policy ``swaps`` times
   -> ``hotswap_p99_ms``, ``hotswap_failed``, versions seen and publish-to-serving delay.
Next to the wall-clock figures, the server's own CPU time (user + system of the controller
process, all threads, from /proc) per request or decision: ``serial_server_cpu_us_per_request``,
``requests_per_server_cpu_s``, ``batch_decisions_per_server_cpu_s``,
``columns_decisions_per_server_cpu_s``. On a shared, loaded machine these move far less than the
wall-clock ones (they include the transition writer thread and the kernel's socket work).
The client speaks raw HTTP/1.1 over keep-alive sockets (~20 us per request), because a
general-purpose client (httpx) costs more per request than the controller itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

from slicetwin.core.slices import SLICE_NAMES
from slicetwin.ops.procs import RedisServer, free_port, wait_port
from slicetwin.platform.keys import fresh_keys
from slicetwin.registry.store import RedisRegistry
from slicetwin.runtime.onnx_policy import fresh_policy_onnx

_SLICE = ('{{"slice":"{}","arrived_packets":%d,"delivered_packets":%d,"sla_met_packets":%d,'
          '"throughput_bps":%.1f,"spectral_efficiency":%.4f}}')
# printf template of one report, filled per request
_REPORT = ('{"cell_id":"%s","window":%d,"window_ms":200,"slices":['
           + ",".join(_SLICE.format(n) for n in SLICE_NAMES) + "]}")


@dataclass
class BenchConfig:
    seconds: float = 3.0
    serial_requests: int = 3000
    rate: float = 1000.0
    connections: int = 16
    rate_connections: int = 8
    batch_size: int = 1000
    batch_requests: int = 40
    swaps: int = 6
    use_redis: bool = True
    cells: int = 256
    seed: int = 0


class ReportMaker:
    """Report bodies for many cells with increasing windows and plausible KPIs."""

    def __init__(self, cells: int, seed: int = 0):
        self.rng = random.Random(seed)
        self.cells = [f"bench-{i}" for i in range(cells)]
        self.window = dict.fromkeys(self.cells, 0)
        self.i = 0

    def one(self, cell: str | None = None) -> bytes:
        if cell is None:
            cell = self.cells[self.i % len(self.cells)]
            self.i += 1
        w = self.window[cell]
        self.window[cell] = w + 1
        r = self.rng
        vals = []
        for mean in (100, 1000, 10):
            a = max(0, int(r.gauss(mean, mean / 3)))
            d = int(a * r.uniform(0.6, 1.0))
            vals += [a, d, int(d * r.uniform(0.3, 1.0)), r.uniform(1e5, 5e7), r.uniform(0.01, 3)]
        return (_REPORT % (cell, w, *vals)).encode()

    def columns(self, n: int) -> bytes:
        """n cells as one columnar body (their own cell ids, windows increasing)."""

        cells = [f"bench-c{i}" for i in range(n)]
        r = self.rng
        arr, dlv, met, se, wins = [], [], [], [], []
        for c in cells:
            w = self.window.get(c, 0)
            self.window[c] = w + 1
            wins.append(w)
            a = [max(0, int(r.gauss(m, m / 3))) for m in (100, 1000, 10)]
            d = [int(x * r.uniform(0.6, 1.0)) for x in a]
            arr.append(a)
            dlv.append(d)
            met.append([int(x * r.uniform(0.3, 1.0)) for x in d])
            se.append(r.uniform(0.5, 6.0))
        return json.dumps({"cell_id": cells, "window": wins, "arrived_packets": arr,
                           "delivered_packets": dlv, "sla_met_packets": met,
                           "spectral_efficiency": se}).encode()

    def batch(self, n: int) -> bytes:
        cells = self.cells[:n] if n <= len(self.cells) else [f"bench-b{i}" for i in range(n)]
        for c in cells:
            self.window.setdefault(c, 0)
        return b'{"reports":[' + b",".join(self.one(c) for c in cells) + b"]}"


# extra request header lines of every bench request: run_bench sets the bearer key of the
# controller it starts (the bench measures the authenticated production path)
_AUTH_HEADER = b""


def _request(path: str, body: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), _AUTH_HEADER, len(body))) + body


def _parse_head(buf: bytes) -> tuple[int, int, int]:
    """(status, content_length, header_end) of a response head in ``buf``."""
    end = buf.index(b"\r\n\r\n")
    head = buf[:end].lower()
    status = int(head[9:12])
    i = head.index(b"content-length:")
    j = head.find(b"\r\n", i)
    length = int(head[i + 15: j if j != -1 else None])
    return status, length, end + 4


class RawConn:
    """Blocking keep-alive HTTP/1.1 connection (serial and batch phases)."""

    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.s.sendall(_request(path, body))
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv(65536)
        status, n, start = _parse_head(self.buf)
        while len(self.buf) < start + n:
            self.buf += self._recv(max(65536, start + n - len(self.buf)))
        payload, self.buf = self.buf[start:start + n], self.buf[start + n:]
        return status, payload

    def _recv(self, n: int) -> bytes:
        b = self.s.recv(n)
        if not b:  # e.g. uvicorn closed an idle keep-alive connection (5 s default)
            raise ConnectionError("server closed the connection")
        return b

    def close(self) -> None:
        self.s.close()


async def _apost(reader, writer, path: str, body: bytes) -> tuple[int, bytes]:
    writer.write(_request(path, body))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    status, n, start = _parse_head(buf)
    while len(buf) < start + n:
        buf += await reader.readexactly(start + n - len(buf))
    return status, buf[start:start + n]


def _version_of(payload: bytes) -> str:
    i = payload.find(b'"policy_version":"')
    if i < 0:
        return "?"
    j = payload.index(b'"', i + 18)
    return payload[i + 18:j].decode()


async def _fixed_rate(port: int, maker: ReportMaker, rate: float, seconds: float, conns: int,
                      on_answer=None) -> dict:
    n = int(rate * seconds)
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(conns)]
    for _, w in streams:
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bodies = [maker.one() for _ in range(n)]
    lat = np.full(n, np.nan)
    failed = 0
    clock = time.perf_counter  # uvloop's loop.time() is millisecond-grained: too coarse here
    t0 = clock() + 0.05

    async def worker(k: int) -> None:
        nonlocal failed
        reader, writer = streams[k]
        for i in range(k, n, conns):
            due = t0 + i / rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                status, payload = await _apost(reader, writer, "/v1/reports", bodies[i])
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                failed += 1
                continue
            lat[i] = clock() - due
            if status != 200:
                failed += 1
            elif on_answer is not None:
                on_answer(payload)

    await asyncio.gather(*(worker(k) for k in range(conns)))
    wall = clock() - t0
    for _, w in streams:
        w.close()
    ok = lat[np.isfinite(lat)]
    return {"p50_ms": float(np.percentile(ok, 50) * 1e3), "p99_ms": float(np.percentile(ok, 99) * 1e3),
            "max_ms": float(ok.max() * 1e3), "failed": failed, "requests": n,
            "achieved_rps": n / wall}


async def _closed_loop(port: int, maker: ReportMaker, seconds: float, conns: int) -> dict:
    pool = [maker.one() for _ in range(int(8000 * seconds))]
    idx = 0
    done = failed = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal idx, done, failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop and idx < len(pool):
            body = pool[idx]
            idx += 1
            status, _ = await _apost(reader, writer, "/v1/reports", body)
            done += 1
            failed += status != 200
        writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return {"rps": done / (time.perf_counter() - t), "failed": failed, "done": done}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far (/proc; 0 elsewhere).

    Wall-clock figures on a shared, loaded machine mostly measure the other processes; the
    server's own CPU time per request or decision does not (resolution: one clock tick).
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def run_bench(cfg: BenchConfig) -> dict:


    global _AUTH_HEADER

    signal.signal(signal.SIGTERM, _raise_exit)  # so the finally below stops our children
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    redis_proc = (RedisServer().start() if cfg.use_redis and RedisServer.find() else None)
    port = free_port()
    # fresh production keys: the controller runs as deployed (API key checked on every POST)
    keys = fresh_keys()
    _AUTH_HEADER = b"Authorization: Bearer %s\r\n" % keys["SLICETWIN_API_KEY"].encode()
    env = {**os.environ, **{k: v for k, v in keys.items() if k.startswith("SLICETWIN_")},
           "SLICETWIN_PORT": str(port), "SLICETWIN_CELL_STORE": "local",
           "SLICETWIN_LOG_LEVEL": "warning", "SLICETWIN_MODEL_SOURCE": "auto"}
    if redis_proc is not None:
        env["SLICETWIN_REDIS_URL"] = redis_proc.url
    log = tempfile.NamedTemporaryFile("w+", prefix="slicetwin-bench-ctl-", suffix=".log",
                                      delete=False)
    ctl = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "controller"], env=env,
                           stdout=log, stderr=subprocess.STDOUT)
    out: dict = {"bench": "controller", "device": "cpu", "cpus": os.cpu_count(),
                 "cell_store": "local",
                 "transitions_sink": "redis" if redis_proc is not None else "memory"}
    try:
        wait_port(port)
        conn = RawConn(port)
        maker = ReportMaker(cfg.cells, cfg.seed)
        for _ in range(300):  # warm-up (allocator, caches, first-model paths)
            conn.post("/v1/reports", maker.one())
        # 1. serial
        lat = np.empty(cfg.serial_requests)
        bodies = [maker.one() for _ in range(cfg.serial_requests)]
        c0 = _cpu_s(ctl.pid)
        for i, b in enumerate(bodies):
            t = time.perf_counter()
            status, _ = conn.post("/v1/reports", b)
            lat[i] = time.perf_counter() - t
            if status != 200:
                raise RuntimeError(f"serial request failed with {status}")
        cpu = _cpu_s(ctl.pid) - c0
        out["serial_p50_ms"] = round(float(np.percentile(lat, 50) * 1e3), 4)
        out["serial_p99_ms"] = round(float(np.percentile(lat, 99) * 1e3), 4)
        out["serial_server_cpu_us_per_request"] = round(cpu / len(bodies) * 1e6, 1)
        # 2. fixed rate
        fr = asyncio.run(_fixed_rate(port, maker, cfg.rate, cfg.seconds, cfg.rate_connections))
        out["p99_ms_at_1000rps" if cfg.rate == 1000 else f"p99_ms_at_{int(cfg.rate)}rps"] = round(
            fr["p99_ms"], 4)
        out["fixed_rate"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in fr.items()}
        # 3. max throughput
        c0 = _cpu_s(ctl.pid)
        cl = asyncio.run(_closed_loop(port, maker, cfg.seconds, cfg.connections))
        cpu = _cpu_s(ctl.pid) - c0
        out["max_rps"] = round(cl["rps"], 1)
        out["requests_per_server_cpu_s"] = round(cl["done"] / cpu, 1) if cpu > 0 else None
        out["max_rps_connections"] = cfg.connections
        # 4. batch (fresh connection: the serial one has idled past uvicorn's keep-alive)
        conn.close()
        bodies = [maker.batch(cfg.batch_size) for _ in range(cfg.batch_requests + 2)]
        conn = RawConn(port)
        for b in bodies[:2]:
            conn.post("/v1/reports:batch", b)
        t, c0 = time.perf_counter(), _cpu_s(ctl.pid)
        for b in bodies[2:]:
            status, _ = conn.post("/v1/reports:batch", b)
            if status != 200:
                raise RuntimeError(f"batch request failed with {status}")
        cpu = _cpu_s(ctl.pid) - c0
        out["batch_decisions_per_s"] = round(cfg.batch_size * cfg.batch_requests
                                             / (time.perf_counter() - t), 1)
        out["batch_decisions_per_server_cpu_s"] = round(
            cfg.batch_size * cfg.batch_requests / cpu, 1) if cpu > 0 else None
        out["batch_size"] = cfg.batch_size
        # 4b. the same cells as columns (POST /v1/reports:columns)
        bodies = [maker.columns(cfg.batch_size) for _ in range(cfg.batch_requests + 2)]
        for b in bodies[:2]:
            conn.post("/v1/reports:columns", b)
        t, c0 = time.perf_counter(), _cpu_s(ctl.pid)
        for b in bodies[2:]:
            status, _ = conn.post("/v1/reports:columns", b)
            if status != 200:
                raise RuntimeError(f"columns request failed with {status}")
        cpu = _cpu_s(ctl.pid) - c0
        out["columns_decisions_per_s"] = round(cfg.batch_size * cfg.batch_requests
                                               / (time.perf_counter() - t), 1)
        out["columns_decisions_per_server_cpu_s"] = round(
            cfg.batch_size * cfg.batch_requests / cpu, 1) if cpu > 0 else None
        conn.close()
        # 5. hot-swap under the fixed-rate load
        if redis_proc is not None and cfg.swaps > 0:
            out.update(_hotswap(port, maker, cfg, redis_proc.url, keys, fr["p99_ms"]))
        else:
            out["hotswap_p99_ms"] = None
        # 6. serial again with the cell memory in Redis (stateless replicas), own process
        if redis_proc is not None:
            out.update(_serial_redis_cells(env, redis_proc.url, cfg))
    except Exception:
        log.seek(0)
        sys.stderr.write("controller log tail:\n" + log.read()[-3000:] + "\n")
        raise
    finally:
        ctl.terminate()
        try:
            ctl.wait(10)
        except subprocess.TimeoutExpired:
            ctl.kill()
        log.close()
        os.unlink(log.name)
        if redis_proc is not None:
            redis_proc.cleanup()
    return out


def _serial_redis_cells(env: dict, url: str, cfg: BenchConfig) -> dict:
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "controller"],
                         env={**env, "SLICETWIN_PORT": str(port), "SLICETWIN_CELL_STORE": "redis",
                              "SLICETWIN_REDIS_URL": url, "SLICETWIN_REGISTRY_PREFIX": "rc:"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        conn = RawConn(port)
        maker = ReportMaker(cfg.cells, cfg.seed + 1)
        for _ in range(300):
            conn.post("/v1/reports", maker.one())
        n = max(500, cfg.serial_requests // 2)
        lat = np.empty(n)
        for i, b in enumerate([maker.one() for _ in range(n)]):
            t = time.perf_counter()
            status, _ = conn.post("/v1/reports", b)
            lat[i] = time.perf_counter() - t
            if status != 200:
                raise RuntimeError(f"redis-cells request failed with {status}")
        conn.close()
        return {"serial_p50_ms_redis_cells": round(float(np.percentile(lat, 50) * 1e3), 4),
                "serial_p99_ms_redis_cells": round(float(np.percentile(lat, 99) * 1e3), 4)}
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def _hotswap(port: int, maker: ReportMaker, cfg: BenchConfig, url: str, keys: dict,
             steady_p99: float) -> dict:

    reg = RedisRegistry(url, keys["SLICETWIN_HMAC_KEY"],
                        promotion_key=keys["SLICETWIN_PROMOTION_KEY"])
    versions = [f"bench-swap-{i}" for i in range(cfg.swaps)]
    for i, v in enumerate(versions):
        reg.publish("policy", fresh_policy_onnx(v, seed=100 + i), version=v)
    promoted_at: dict[str, float] = {}
    first_seen: dict[str, float] = {}
    seen_counts: dict[str, int] = {}

    def on_answer(payload: bytes) -> None:
        v = _version_of(payload)
        seen_counts[v] = seen_counts.get(v, 0) + 1
        if v not in first_seen:
            first_seen[v] = time.perf_counter()

    def promoter() -> None:
        gap = cfg.seconds / (cfg.swaps + 1)
        for v in versions:
            time.sleep(gap)
            promoted_at[v] = time.perf_counter()
            reg.promote("policy", v)

    th = threading.Thread(target=promoter, daemon=True)
    th.start()
    res = asyncio.run(_fixed_rate(port, maker, cfg.rate, cfg.seconds, cfg.rate_connections,
                                  on_answer))
    th.join()
    reg.close()
    delays = [first_seen[v] - promoted_at[v] for v in versions if v in first_seen]
    return {"hotswap_p99_ms": round(res["p99_ms"], 4), "hotswap_failed": res["failed"],
            "hotswap_requests": res["requests"], "hotswap_swaps": cfg.swaps,
            "hotswap_versions_served": sum(1 for v in versions if v in seen_counts),
            "hotswap_p99_ratio": round(res["p99_ms"] / steady_p99, 3) if steady_p99 else None,
            "promote_to_serving_ms_max": round(max(delays) * 1e3, 2) if delays else None}
