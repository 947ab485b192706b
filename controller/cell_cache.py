"""Cell memory in Redis that never makes a decision wait: a local cache, a breaker, a re-sync.

:class:`ShadowedCellStore` wraps :class:`controller.cells.RedisCellStore`. While Redis answers,
every commit goes to Redis (the atomic Lua order check, shared by all replicas) and the new
memory is also kept in a local cache. When a Redis call fails (refused, timed out, any redis-py
error) the breaker opens: from then on decisions are answered from the cache, with the window
order checked there (duplicate -> 409, backwards -> 422 as always), and Redis is not asked again
on the request path, so only the request that found Redis gone pays the (short) socket timeout.

A memory accepted from the cache is *held* per cell (:class:`Held`): ``first``, the lowest window
this replica accepted on its own, the latest memory, and the transitions those reports closed.
A probe thread pings Redis every ``probe_s``; once it answers, the held memories are pushed with
a compare-and-set (``RedisCellStore.push_if_unmoved``): a cell's memory is stored only if no other
replica accepted a window >= ``first`` meanwhile, and then its held transitions go to the sink;
otherwise the newer memory in Redis wins, the cache takes it, and the held transitions are
dropped and counted (never stored twice). The breaker closes (decisions use Redis again) only
when nothing is held, so a window accepted during the outage can never be accepted again.
"""

from __future__ import annotations

import logging
import threading

from controller.cells import CellMemory, Close, RedisCellStore, Stored, check_order, is_outage
from slicetwin.core.transition_wire import Transition

log = logging.getLogger(__name__)

OPEN, STORED, DROPPED = "open", "stored", "dropped"


class Held:
    """What one cell accepted while Redis was unreachable, until the re-sync's verdict."""

    __slots__ = ("first", "mem", "synced", "transitions", "state")

    def __init__(self, first: int, mem: CellMemory):
        self.first = first  # lowest window accepted here that Redis has not confirmed
        self.mem = mem  # latest memory accepted here
        self.synced = -1  # highest window confirmed stored in Redis by the re-sync
        self.transitions: list[Transition] = []
        self.state = OPEN


class ShadowedCellStore:
    """Redis cell memory with a local cache that answers while Redis is away (module doc)."""

    name = "redis"

    def __init__(self, redis_store: RedisCellStore, sink, metrics, probe_s: float = 0.5,
                 hold_buffer: int = 100_000, push_batch: int = 500):
        self._redis, self._sink, self.m = redis_store, sink, metrics
        self.probe_s, self.hold_cap, self.push_batch = probe_s, hold_buffer, push_batch
        self._cache: dict[str, CellMemory] = {}
        self._held: dict[str, Held] = {}
        self._n_held = 0  # transitions held, all cells
        self._explored: dict[str, int] = {}
        self._lock = threading.Lock()
        self._recovering = threading.Lock()
        self._up = True  # breaker closed: Redis in use
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        # True: while Redis is in use, a commit appends the transitions it closes (cells.py)
        self.closes_transitions = redis_store.closes_transitions

    # ------------------------------------------------------------------ state
    @property
    def up(self) -> bool:
        """True while cell memory is read and written in Redis."""
        return self._up

    def held_transitions(self) -> int:
        return self._n_held

    def held_cells(self) -> int:
        return len(self._held)

    def publish(self) -> None:
        """Set the store's gauges (at scrape time)."""
        self.m.cell_store_up.set(1 if self._up else 0)
        self.m.held_transitions_gauge.set(self._n_held)

    # ------------------------------------------------------------------ request path
    def record(self, cell_id: str, mem: CellMemory, close: Close | None = None
               ) -> tuple[CellMemory | None, Held | None]:
        """Commit one memory: ``(prev, None)`` through Redis (with ``close``, the transition it
        closes is stored with it), ``(prev, held)`` from the cache (the caller holds it)."""
        if self._up:
            try:
                prev = self._redis.commit(cell_id, mem, close)
            except Exception as e:
                if not is_outage(e):
                    raise  # a window conflict (409/422) or a bug
                self._trip(e)
            else:
                self._cache[cell_id] = mem
                return prev, None
        prevs, helds = self._record_local([(cell_id, mem)],
                                          None if close is None else [close])
        return prevs[0], None if helds is None else helds[0]

    def record_many(self, items: list[tuple[str, CellMemory]],
                    closes: list[Close] | None = None
                    ) -> tuple[list[CellMemory | None], list[Held] | None]:
        """Commit a batch, all or nothing: ``(prevs, None)`` or ``(prevs, helds)``."""
        if self._up:
            try:
                prevs = self._redis.commit_many(items, closes)
            except Exception as e:
                if not is_outage(e):
                    raise
                self._trip(e)
            else:
                cache = self._cache
                for cid, mem in items:
                    cache[cid] = mem
                return prevs, None
        return self._record_local(items, closes)

    def _record_local(self, items: list[tuple[str, CellMemory]],
                      closes: list[Close] | None = None
                      ) -> tuple[list[CellMemory | None], list[Held] | None]:
        with self._lock:
            if not self._up:  # still down (else the re-sync finished meanwhile: use Redis)
                return self._accept_locally(items)
        return self.record_many(items, closes)

    def _accept_locally(self, items: list[tuple[str, CellMemory]]
                        ) -> tuple[list[CellMemory | None], list[Held]]:
        """Order check against the cache, then hold every memory (caller holds the lock)."""
        cache, held = self._cache, self._held
        prevs = []
        for i, (cid, mem) in enumerate(items):
            prev = cache.get(cid)
            check_order(cid, mem.window, prev.window if prev else None, i)
            prevs.append(prev)
        helds = []
        for cid, mem in items:
            h = held.get(cid)
            if h is None:
                h = held[cid] = Held(mem.window, mem)
            else:
                h.mem = mem
            cache[cid] = mem
            helds.append(h)
        misses = sum(p is None for p in prevs)
        if misses:
            self.m.cell_cache_misses.inc(misses)
        return prevs, helds

    def hold(self, h: Held, t: Transition) -> None:
        """Keep ``t`` (closed from the cache) until its cell's memory is back in Redis."""
        self.m.held_transitions.labels("held").inc()
        with self._lock:
            if h.state == OPEN and t.window > h.synced:
                if self._n_held >= self.hold_cap:
                    self._count_dropped("overflow", 1)
                    return
                h.transitions.append(t)
                self._n_held += 1
                return
            state = h.state
        if state == DROPPED:
            self._count_dropped("conflict", 1)
        else:  # its memory is already stored
            self.m.held_transitions.labels("delivered").inc()
            self._sink.put(t)

    def _count_dropped(self, outcome: str, n: int) -> None:
        self.m.held_transitions.labels(outcome).inc(n)
        self.m.transitions_dropped.inc(n)

    def take_exploration(self, cell_id: str, budget: int) -> bool:
        if self._up:
            try:
                return self._redis.take_exploration(cell_id, budget)
            except Exception as e:
                if not is_outage(e):
                    raise
                self._trip(e)
        with self._lock:  # per-replica budget while Redis is away
            n = self._explored.get(cell_id, 0)
            if n >= budget:
                return False
            self._explored[cell_id] = n + 1
            return True

    # ------------------------------------------------------------------ breaker
    def _trip(self, e: Exception) -> None:
        with self._lock:
            if not self._up:
                return
            self._up = False
        self.last_error = f"{type(e).__name__}: {e}"
        self.m.cell_store_outages.inc()
        self.m.cell_store_up.set(0)
        log.warning("cell store unreachable (%s): answering from the local cache, re-sync when "
                    "Redis is back", self.last_error)
        self._start_probe()

    def _start_probe(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._probe_loop, name="cell-store-probe",
                                            daemon=True)
            self._thread.start()

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.probe_s):
            if not self._up:
                self.try_recover()

    # ------------------------------------------------------------------ re-sync
    def try_recover(self, rounds: int = 100) -> bool:
        """One probe: if Redis answers, push the held memories; close the breaker once none
        is left. True when Redis is in use again."""
        with self._recovering:  # the probe thread, close() and tests may all call it
            return self._recover(rounds)

    def _recover(self, rounds: int) -> bool:
        if self._up:
            return True
        if not self._redis.ping():
            return False
        for _ in range(rounds):
            with self._lock:
                if not self._held:
                    self._up = True
                    self.m.cell_store_up.set(1)
                    log.warning("cell store is back: decisions use Redis again")
                    return True
                snap = [(cid, h, h.first, h.mem) for cid, h in self._held.items()]
            for i in range(0, len(snap), self.push_batch):
                if not self._push(snap[i:i + self.push_batch]):
                    return False
        return False  # still busy re-syncing: the next probe goes on

    def _push(self, part: list[tuple[str, Held, int, CellMemory]]) -> bool:
        try:
            verdicts = self._redis.push_if_unmoved([(c, first, mem) for c, _, first, mem in part])
        except Exception as e:
            if not is_outage(e):
                log.exception("cell memory re-sync failed")
            self.last_error = f"{type(e).__name__}: {e}"
            return False
        deliver: list[Transition] = []
        conflicts = 0
        with self._lock:
            for (cid, h, _, mem), v in zip(part, verdicts, strict=True):
                if isinstance(v, Stored):
                    deliver += self._stored(cid, h, mem, v.own_window)
                else:
                    conflicts += 1
                    self._conflict(cid, h, v)
        if conflicts:
            log.warning("re-sync: %d cell(s) moved on elsewhere during the outage; their held "
                        "memory and transitions are dropped", conflicts)
        if deliver:
            self.m.held_transitions.labels("delivered").inc(len(deliver))
            self._sink.put_many(deliver)
        return True

    def _stored(self, cid: str, h: Held, mem: CellMemory, own: int = -1) -> list[Transition]:
        """``mem`` is in Redis: release the transitions up to its window (lock held).

        ``own``: the window of this replica's commit that landed although its reply was lost.
        When commits append the transitions they close, those up to ``own`` are already in the
        stream (same Lua call as the memory), so they are not sent again: the same window
        would otherwise be stored twice."""
        self.m.cell_resync.labels("stored").inc()
        h.synced = mem.window
        out = [t for t in h.transitions if t.window <= mem.window]
        h.transitions = [t for t in h.transitions if t.window > mem.window]
        self._n_held -= len(out)
        if own >= 0 and self.closes_transitions:
            n = len(out)
            out = [t for t in out if t.window > own]
            if n > len(out):
                self.m.held_transitions.labels("already_stored").inc(n - len(out))
                self.m.transitions_written.inc(n - len(out))
        if h.mem is mem:  # nothing newer accepted meanwhile
            h.state = STORED
            del self._held[cid]
        else:
            h.first = mem.window + 1
        return out

    def _conflict(self, cid: str, h: Held, newer: CellMemory | None) -> None:
        """Another replica moved the cell on: its memory wins, ours is dropped (lock held)."""
        self.m.cell_resync.labels("conflict").inc()
        n = len(h.transitions)
        h.transitions = []
        h.state = DROPPED
        self._n_held -= n
        del self._held[cid]
        if newer is not None:
            self._cache[cid] = newer
        else:
            self._cache.pop(cid, None)
        if n:
            self._count_dropped("conflict", n)

    # ------------------------------------------------------------------ rest of the store API
    def commit(self, cell_id: str, mem: CellMemory) -> CellMemory | None:
        return self.record(cell_id, mem)[0]

    def commit_many(self, items: list[tuple[str, CellMemory]]) -> list[CellMemory | None]:
        return self.record_many(items)[0]

    def peek(self, cell_id: str) -> CellMemory | None:
        if self._up:
            try:
                return self._redis.peek(cell_id)
            except Exception as e:
                if not is_outage(e):
                    raise
        return self._cache.get(cell_id)

    def ping(self) -> bool:
        return self._redis.ping()

    def close(self) -> None:
        """Stop the probe; one last re-sync if Redis answers, then count what is still held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if not self._up:
            self.try_recover()
        with self._lock:
            lost = self._n_held
            self._held.clear()
            self._n_held = 0
        if lost:
            log.warning("shutdown with Redis away: %d held transitions dropped", lost)
            self._count_dropped("shutdown", lost)
        self._redis.close()
