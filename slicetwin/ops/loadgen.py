"""Open-loop load generator for the controller (soak and outage tests, ``slicetwin bench soak``).

Raw HTTP/1.1 over keep-alive asyncio streams (a general-purpose client costs more per request
than the controller). Request ``i`` is due at ``t0 + i / rate`` and its latency is measured from
that due time, so a stall shows up in the figures instead of slowing the client (no coordinated
omission). Request ``i`` reports window ``i // cells`` of cell ``i % cells``; with ``cells`` a
multiple of ``connections`` every cell stays on one connection, so its windows arrive in order
and every answered pair of consecutive windows must become exactly one transition: the result
keeps the answered ``(cell, window)`` pairs so a test can count what the stream must hold.
A failed connection is reopened and counted; nothing is retried (a retry would hide a failure).

Several generator processes can share one schedule (``start_at``: a ``time.perf_counter()``
instant, the same clock in every process on Linux) with disjoint cells (``cell_prefix``); each
keeps its latencies (``keep_latencies``) and the send instant and kind of every failure, so the
caller can merge percentiles and place failures around an event (``slicetwin bench scale``).
``batch`` > 1 sends ``POST /v1/reports:batch`` of ``batch`` cells per request: the cells form
``cells // batch`` groups, request ``i`` reports window ``i // groups`` of every cell of group
``i % groups`` (``rate`` stays requests/s).
Every 200 answer is checked against its request: an answer for another cell or window counts in
``answer_mismatches``, and an accepted window that is not newer than the last one accepted for its
cell (answers of a cell arrive in order on its connection) in ``order_violations``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from dataclasses import dataclass, field

from slicetwin.core.slices import SLICE_NAMES

_SLICE = ('{{"slice":"{}","arrived_packets":%d,"delivered_packets":%d,"sla_met_packets":%d,'
          '"throughput_bps":%.1f,"spectral_efficiency":%.4f}}')
_REPORT = ('{"cell_id":"%s","window":%d,"window_ms":200,"slices":['
           + ",".join(_SLICE.format(n) for n in SLICE_NAMES) + "]}")


@dataclass
class LoadConfig:
    rate: float = 1000.0  # offered load, requests/s
    duration_s: float = 10.0
    connections: int = 8
    cells: int = 256  # a multiple of ``connections`` x ``batch`` (a cell's windows stay in order)
    batch: int = 1  # cells per request (> 1: the batch endpoint)
    cell_header: bool = False  # send X-Cell-Id (a batch: its first cell) for a balancer's affinity
    bucket_s: float = 60.0  # period of the per-bucket latency figures
    path: str = "/v1/reports"
    api_key: str | None = None
    cell_prefix: str = "soak"
    keep_answered: bool = False  # keep the answered (cell, window) pairs (transition counting)
    seed: int = 0
    start_at: float | None = None  # perf_counter() instant of request 0 (default: now + 0.1 s)
    keep_latencies: bool = False  # keep every answered request's latency (LoadResult.latencies)


@dataclass
class LoadResult:
    requests: int = 0
    ok: int = 0
    errors: int = 0  # non-200 answers + connection failures
    status: dict = field(default_factory=dict)  # status code (or "conn") -> count
    wall_s: float = 0.0
    buckets: list = field(default_factory=list)  # per bucket: start_s, requests, errors, p50, p99
    versions: dict = field(default_factory=dict)  # policy_version -> answers
    fallback_answers: int = 0
    degraded_answers: int = 0  # answered without the shared cell memory ("degraded")
    answered: set = field(default_factory=set)  # (cell index, window) answered with 200
    latencies: list = field(default_factory=list)  # seconds from due time (keep_latencies)
    failures: list = field(default_factory=list)  # (perf_counter() at send, "conn" or status)
    answer_mismatches: int = 0  # 200 answers naming another cell or window than the request
    order_violations: int = 0  # 200 answers whose window is not newer than the cell's last

    @property
    def achieved_rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    def expected_transitions(self) -> set:
        """(cell index, window) of every transition the controller must have closed."""
        return {(c, w) for c, w in self.answered if (c, w - 1) in self.answered}


class _Bodies:
    """Report bodies with plausible KPIs from a small pre-drawn pool (cheap per request)."""

    def __init__(self, cfg: LoadConfig):
        r = random.Random(cfg.seed)
        self.pool = []
        for _ in range(512):
            vals = []
            for mean in (100, 1000, 10):
                a = max(0, int(r.gauss(mean, mean / 3)))
                d = int(a * r.uniform(0.6, 1.0))
                vals += [a, d, int(d * r.uniform(0.3, 1.0)), r.uniform(1e5, 5e7),
                         r.uniform(0.01, 3)]
            self.pool.append(tuple(vals))
        self.cells = [f"{cfg.cell_prefix}-{i}" for i in range(cfg.cells)]
        self.batch = cfg.batch
        self.groups = cfg.cells // cfg.batch
        path = cfg.path if cfg.batch == 1 else "/v1/reports:batch"
        head = [f"POST {path} HTTP/1.1", "Host: loadgen", "Content-Type: application/json"]
        if cfg.api_key:
            head.append(f"Authorization: Bearer {cfg.api_key}")
        if cfg.cell_header:  # X-Cell-Id: <first cell>, filled per request
            head.append("X-Cell-Id: %s")
        self.head = ("\r\n".join(head) + "\r\nContent-Length: %d\r\n\r\n").encode()
        self.cell_header = cfg.cell_header

    def cells_of(self, i: int) -> tuple[range, int]:
        """(cell indices, window) that request ``i`` reports."""
        g = i % self.groups
        return range(g * self.batch, (g + 1) * self.batch), i // self.groups

    def request(self, i: int) -> bytes:
        cells, w = self.cells_of(i)
        pool = self.pool
        first = cells[0]
        reps = [_REPORT % (self.cells[c], w, *pool[(i * self.batch + c - first) % len(pool)])
                for c in cells]
        body = (reps[0] if self.batch == 1 else
                '{"reports":[' + ",".join(reps) + "]}").encode()
        if self.cell_header:
            return self.head % (self.cells[first].encode(), len(body)) + body
        return self.head % len(body) + body

    def answer_head(self, i: int) -> bytes:
        """How the controller's answer to request ``i`` must begin (its first cell and window)."""
        cells, w = self.cells_of(i)
        head = b'{"cell_id":"%s","window":%d,' % (self.cells[cells[0]].encode(), w)
        return head if self.batch == 1 else b'{"decisions":[' + head


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    low = head.lower()
    i = low.index(b"content-length:")
    j = low.index(b"\r\n", i)
    body = await reader.readexactly(int(low[i + 15:j]))
    return status, body


def _version(body: bytes) -> str:
    i = body.find(b'"policy_version":"')
    if i < 0:
        return "?"
    return body[i + 18:body.index(b'"', i + 18)].decode()


async def _open(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def drive(port: int, cfg: LoadConfig, on_tick=None, tick_s: float = 1.0) -> LoadResult:
    """Offer ``cfg.rate`` req/s for ``cfg.duration_s`` to the controller on ``port``.

    ``on_tick(elapsed_s)`` (optional, may be a coroutine function) runs every ``tick_s`` on the
    same loop: the place for fault injection and probes during the load."""
    if cfg.cells % (cfg.connections * cfg.batch):
        raise ValueError("cells must be a multiple of connections x batch (per-cell window "
                         "order)")
    bodies = _Bodies(cfg)
    n = int(cfg.rate * cfg.duration_s)
    res = LoadResult(requests=n)
    nb = max(1, int(-(-cfg.duration_s // cfg.bucket_s)))
    lat: list[list[float]] = [[] for _ in range(nb)]
    err = [0] * nb
    cnt = [0] * nb
    clock = time.perf_counter
    t0 = cfg.start_at if cfg.start_at is not None else clock() + 0.1
    last_window: dict[int, int] = {}  # cell index -> last accepted window

    def count(key) -> None:
        res.status[key] = res.status.get(key, 0) + 1

    async def worker(k: int) -> None:
        conn = None
        for i in range(k, n, cfg.connections):
            due = t0 + i / cfg.rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            b = min(nb - 1, int((due - t0) / cfg.bucket_s))
            cnt[b] += 1
            sent = clock()
            try:
                if conn is None:
                    conn = await _open(port)
                conn[1].write(bodies.request(i))
                status, body = await _read_answer(conn[0])
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                count("conn")
                res.failures.append((sent, "conn"))
                err[b] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            lat[b].append(clock() - due)
            if cfg.keep_latencies:
                res.latencies.append(lat[b][-1])
            count(status)
            if status != 200:
                err[b] += 1
                res.failures.append((sent, status))
                continue
            res.ok += 1
            if not body.startswith(bodies.answer_head(i)):
                res.answer_mismatches += 1
            cells, w = bodies.cells_of(i)
            c = cells[0]  # the cells of a group move together
            if last_window.get(c, -1) >= w:
                res.order_violations += 1
            last_window[c] = w
            v = _version(body)
            res.versions[v] = res.versions.get(v, 0) + 1
            if b'"fallback":true' in body:
                res.fallback_answers += 1
            if b'"degraded":' in body:
                res.degraded_answers += 1
            if cfg.keep_answered:
                res.answered.update((c, w) for c in cells)
        if conn is not None:
            conn[1].close()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(tick_s)
            out = on_tick(clock() - t0)
            if asyncio.iscoroutine(out):
                await out

    tick = asyncio.ensure_future(ticker()) if on_tick is not None else None
    try:
        await asyncio.gather(*(worker(k) for k in range(cfg.connections)))
    finally:
        if tick is not None:
            tick.cancel()
    res.wall_s = clock() - t0
    res.errors = n - res.ok
    for b in range(nb):
        p50, p99 = _pct(lat[b], 0.50), _pct(lat[b], 0.99)
        res.buckets.append({"start_s": round(b * cfg.bucket_s, 1), "requests": cnt[b],
                            "errors": err[b],
                            "p50_ms": round(p50 * 1e3, 3) if p50 is not None else None,
                            "p99_ms": round(p99 * 1e3, 3) if p99 is not None else None})
    return res
