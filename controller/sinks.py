"""Transition sinks (the data acquisition module): Redis stream, JSON-lines file, memory.

The request path only appends a tuple to a bounded deque (O(1), never blocks); a background
thread encodes and writes batches (one pipelined ``XADD MAXLEN ~`` round trip per batch for
Redis). A failed write puts its batch back and is retried with backoff, so a Redis outage
loses nothing while the buffer holds (``sink_buffer`` transitions, plus one batch in flight);
only when the buffer is full is a transition dropped and counted, so a slow or absent Redis can
never slow the control loop. A write that fails after Redis ran it (connection lost mid-reply)
is written again: delivery is at least once, and readers key transitions by (cell_id, window).

Entry format: ``slicetwin.core.transition_wire``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

from slicetwin.core.transition_wire import Transition, TransitionBatch, cell_number, compact_json
from slicetwin.platform.cell_keys import slot_tag
from slicetwin.platform.redis_client import connect, is_cluster, write_and_wait
from slicetwin.platform.stream_shards import resolve_shards, shard_keys, shard_of

log = logging.getLogger(__name__)


class TransitionSink:
    """Bounded buffer + background writer. Subclasses implement ``_write(batch)``."""

    name = "base"

    def __init__(self, buffer: int = 100_000, flush_interval_s: float = 0.02, batch: int = 2000,
                 on_written=None, on_dropped=None):
        self._buf: deque[Transition] = deque()
        self._batches: deque[TransitionBatch] = deque()  # column batches, expanded by the writer
        self._cap = buffer
        self._interval = flush_interval_s
        self._batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self._on_written = on_written or (lambda n: None)
        self._on_dropped = on_dropped or (lambda n: None)
        self._idle = threading.Event()
        self._idle.set()
        self.failures = 0  # failed write attempts (the batch stays buffered and is retried)
        self.last_error: str | None = None
        self._retry_s = 0.0  # current backoff while the sink is down (0: healthy)

    @property
    def healthy(self) -> bool:
        """False while writes fail (transitions are being held in the buffer)."""
        return self._retry_s == 0.0

    # request path -----------------------------------------------------------------
    def put(self, t: Transition) -> bool:
        if len(self) >= self._cap:
            self.dropped += 1
            self._on_dropped(1)
            return False
        self._buf.append(t)
        self._idle.clear()
        if len(self._buf) >= self._batch:
            self._wake.set()
        return True

    def put_batch(self, tb: TransitionBatch) -> int:
        """Append a column batch (expanded off the request path); dropped whole if no room."""
        n = len(tb)
        held = len(self)
        if held + n > self._cap:
            self.dropped += n
            self._on_dropped(n)
            return 0
        self._batches.append(tb)
        self._idle.clear()
        if held + n >= self._batch:
            self._wake.set()
        return n

    def put_many(self, ts: list[Transition]) -> int:
        """Append a batch; what does not fit is dropped and counted. Returns how many fit."""
        room = self._cap - len(self)
        if room < len(ts):
            lost = len(ts) - max(room, 0)
            self.dropped += lost
            self._on_dropped(lost)
            ts = ts[:max(room, 0)]
        if ts:
            self._buf.extend(ts)
            self._idle.clear()
            if len(self._buf) >= self._batch:
                self._wake.set()
        return len(ts)

    def __len__(self) -> int:
        return len(self._buf) + sum(len(b) for b in list(self._batches)) + self._held_elsewhere()

    def _held_elsewhere(self) -> int:
        """Transitions a subclass still holds after ``_write`` (e.g. not yet on a replica)."""
        return 0

    def _settle(self) -> None:
        """Hook at the start of every drain: a subclass retries what it still holds."""

    def _count_written(self, n: int) -> None:
        if n:
            self.written += n
            self._on_written(n)

    def _expand_batches(self) -> None:
        while self._batches:
            self._buf.extend(self._batches.popleft().expand())

    # background ---------------------------------------------------------------------
    def start(self) -> TransitionSink:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._retry_s:  # sink down: back off (the buffer keeps filling, bounded)
                self._stop.wait(self._retry_s)
            else:
                self._wake.wait(self._interval)
            self._wake.clear()
            if not self._stop.is_set():
                self._drain()

    def _drain(self, final: bool = False) -> None:
        """Write the buffer in batches. A failed batch goes back to the front of the buffer
        and is retried after an exponential backoff (0.05 s doubling to 1 s), so a sink outage
        loses nothing up to the buffer bound. ``final`` (shutdown): one attempt, then what
        cannot be written is dropped and counted."""
        self._expand_batches()
        self._settle()
        while self._buf:
            batch = []
            while self._buf and len(batch) < self._batch:
                batch.append(self._buf.popleft())
            try:
                done = self._write(batch)
            except Exception as e:
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                if final:
                    lost = len(batch) + len(self._buf)
                    self._buf.clear()
                    log.warning("transition sink %s failed at shutdown (%s); dropping %d",
                                self.name, e, lost)
                    self.dropped += lost
                    self._on_dropped(lost)
                    break
                self._buf.extendleft(reversed(batch))  # keep order; retried after the backoff
                if self._retry_s == 0.0:
                    log.warning("transition sink %s failed (%s); buffering (%d held, bound %d)",
                                self.name, e, len(self._buf), self._cap)
                self._retry_s = min(1.0, max(0.05, 2 * self._retry_s))
                return
            if self._retry_s:
                log.warning("transition sink %s is back", self.name)
                self._retry_s = 0.0
            self._count_written(len(batch) if done is None else done)
        if len(self) == 0:
            self._idle.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the buffer is written (tests, shutdown)."""
        if self._thread is None:
            self._drain()
            return len(self) == 0
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self) == 0 and self._idle.is_set():
                return True
            self._wake.set()
            time.sleep(0.005)
        return False

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._drain(final=True)

    def _write(self, batch: list[Transition]) -> int | None:
        """Write ``batch``; None when all of it is written, else how many are (the subclass
        holds the rest and counts them through ``_count_written`` once they are). Raising puts
        the whole batch back."""
        raise NotImplementedError


class MemorySink(TransitionSink):
    """Keeps the newest ``keep`` transitions in memory (embedded demo, tests)."""

    name = "memory"

    def __init__(self, keep: int = 100_000, **kw):
        super().__init__(**kw)
        self.items: deque[Transition] = deque(maxlen=keep)

    def _write(self, batch):
        self.items.extend(batch)


class NullSink(TransitionSink):
    name = "none"

    def _write(self, batch):
        pass


class FileSink(TransitionSink):
    """Appends one JSON object per line (the :func:`encode` fields, decoded types)."""

    name = "file"

    def __init__(self, path: str, **kw):
        super().__init__(**kw)
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _write(self, batch):
        self._fh.write("".join(json.dumps({**t._asdict(), "cell": cell_number(t.cell_id)})
                               + "\n" for t in batch))
        self._fh.flush()

    def close(self) -> None:
        super().close()
        self._fh.close()


# KEYS[1] stream; ARGV[1] maxlen; ARGV[2..] one encoded transition each
_XADD_MANY_LUA = """
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[i])
end
return #ARGV - 1
"""


class _Unconfirmed:
    """Transitions of one shard written to its master but not yet confirmed on a replica."""

    __slots__ = ("node", "items", "next_try", "delay", "short")

    def __init__(self) -> None:
        self.node: str | None = None  # the master they were written to (None: unknown)
        self.items: list[Transition] = []
        self.next_try = 0.0
        self.delay = 0.0
        self.short = False  # a WAIT came short or a write failed since the last confirmation

    def join(self, node: str | None, items: list[Transition]) -> None:
        """Add ``items``, written to ``node``. Items written to different masters make the
        node unknown: the next settle then sends them all again (duplicates are harmless)."""
        if not self.items:
            self.node = node
        elif self.node != node:
            self.node = None
        self.items.extend(items)


class RedisStreamSink(TransitionSink):
    """``XADD`` per transition into the cell's shard (``slicetwin.platform.stream_shards``), a
    whole shard's part of a batch per Lua call.

    With ``wait_replicas`` > 0 (the default on a Redis Cluster) each call is followed by
    ``WAIT wait_replicas wait_ms`` on the same connection, and a transition counts as written
    only once a replica confirmed it. Until then the sink holds it (counted in the bounded
    buffer): while the shard's master is the one that took the write, a later ``WAIT`` (after
    a tiny write that moves the connection's offset) confirms it; if the shard moved to another
    master (a failover lost the write, or might have), the transitions are sent again. So no
    transition is lost across a failover; a re-sent one may appear twice in the stream, and the
    trainer keeps one per (cell, window).

    Transitions the cell memory's commit already appended (``controller/cells.py``) come in
    through :meth:`put_written` / :meth:`put_written_batch` with the master their shard had at
    the commit: they join the same confirmation (a tiny write plus ``WAIT`` on that master,
    from the writer thread, never on the request path) and are sent again only if the shard
    moved to another master before a replica confirmed them."""

    name = "redis"

    def __init__(self, url: str, stream: str, maxlen: int = 1_000_000, shards: int = 0,
                 wait_replicas: int | None = None, wait_ms: int = 200, on_resent=None, **kw):
        super().__init__(**kw)
        self._on_resent = on_resent or (lambda n: None)

        self.stream = stream
        self._r = connect(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        cluster = is_cluster(self._r)
        self.keys = shard_keys(stream, resolve_shards(shards, cluster))
        self.maxlen = max(1, maxlen // len(self.keys))  # per shard
        self.wait_replicas = (1 if cluster else 0) if wait_replicas is None else wait_replicas
        self.wait_ms = wait_ms
        self._script = self._r.register_script(_XADD_MANY_LUA)
        self._held = [_Unconfirmed() for _ in self.keys]
        # from commits, until the writer thread takes them: (shard | None, node(s), items, n)
        self._written: deque = deque()
        self._n_written = 0  # transitions in ``_written`` (O(1) for ``len``; under the lock)
        self._written_lock = threading.Lock()
        self.resent = 0  # transitions sent again after their shard's master changed
        self.unconfirmed_waits = 0  # WAITs that timed out short of ``wait_replicas``
        self.untracked = 0  # commits' transitions not tracked for confirmation (buffer full)

    @property
    def healthy(self) -> bool:
        """False while writes fail or a replica did not confirm some (transitions appended by
        commits and waiting for their first confirmation are not a failure)."""
        return super().healthy and not any(h.items and h.short for h in self._held)

    def _held_elsewhere(self) -> int:
        return sum(len(h.items) for h in self._held) + self._n_written

    @property
    def confirms_written(self) -> bool:
        """True when transitions written by the cell memory's commit must still be confirmed
        by a replica here (``put_written``)."""
        return self.wait_replicas > 0

    def _node_or_none(self, key: str) -> str | None:
        try:
            return self._node(key)
        except Exception:  # noqa: BLE001 - no master for the slot right now: sent again
            return None

    def put_written(self, t: Transition) -> None:
        """``t`` is already in its shard (appended by the commit): confirm it on a replica,
        sent again only if the shard's master changes first (request path: one slot-map
        lookup)."""
        shard = shard_of(t.cell_id, len(self.keys))
        self._queue_written(shard, self._node_or_none(self.keys[shard]), [t], 1)

    def put_written_batch(self, tb: TransitionBatch) -> None:
        """``put_written`` for a column batch (expanded by the writer thread)."""
        nodes = tuple(self._node_or_none(k) for k in self.keys)
        self._queue_written(None, nodes, tb, len(tb))

    def _queue_written(self, shard: int | None, node, items, n: int) -> None:
        if not self.confirms_written:  # nothing to confirm: written with the commit
            self._count_written(n)
            return
        if len(self) + n > self._cap:  # no room to track them: in the stream, unconfirmed
            self.untracked += n
            self._count_written(n)
            return
        with self._written_lock:
            self._written.append((shard, node, items, n))
            self._n_written += n
        self._idle.clear()

    def _take_written(self) -> None:
        """Move the commits' transitions into the per-shard confirmation (writer thread)."""
        n_keys = len(self.keys)
        while self._written:
            shard, node, items, n = self._written[0]
            if shard is not None:
                self._held[shard].join(node, items)
            else:
                parts: dict[int, list[Transition]] = {}
                for t in items.expand():
                    parts.setdefault(shard_of(t.cell_id, n_keys), []).append(t)
                for i, part in parts.items():
                    self._held[i].join(node[i], part)
            with self._written_lock:  # after joining: always counted in ``len(self)``
                self._written.popleft()
                self._n_written -= n

    @property
    def unconfirmed(self) -> int:
        """Transitions written (or maybe written) but not yet confirmed on a replica."""
        return self._held_elsewhere()

    def _node(self, key: str) -> str:
        return self._r.get_node_from_key(key).name if is_cluster(self._r) else "single"

    def _send(self, shard: int, items: list[Transition], confirm_only: bool = False) -> bool:
        """Write ``items`` to their shard (or, ``confirm_only``, just move the connection's
        offset) and WAIT; True when confirmed. Unconfirmed items are kept in ``_held``."""
        key, h = self.keys[shard], self._held[shard]
        try:
            node = self._node(key)
        except Exception:  # noqa: BLE001 - no master for the slot right now (failing over)
            node = None
        if confirm_only:  # in the shard's slot (an unsharded stream: its whole name is the tag)
            mark = f"{key}:confirm" if slot_tag(key) != key else f"{key}:{{{key}}}:confirm"

            def write(p):
                p.set(mark, "1", px=60_000)
        else:
            payload = [self.maxlen, *map(compact_json, items)]

            def write(p):
                self._script(keys=[key], args=payload, client=p)
        want = 0 if (h.items and not confirm_only) else self.wait_replicas
        _, acked = write_and_wait(self._r, key, write, want, self.wait_ms)
        if not confirm_only:
            if h.items:  # the shard is waiting for a replica: these join the wait
                h.items.extend(items)
                h.node = h.node if h.node == node else None
                return False
            if acked is None or acked >= want:
                return True
            h.node, h.items, h.short = node, list(items), True
        elif acked is not None and acked >= want:
            return True
        self.unconfirmed_waits += 1
        return False

    def _settle(self) -> None:
        """Retry every shard still holding transitions (backoff per shard)."""
        self._take_written()
        now = time.monotonic()
        for i, h in enumerate(self._held):
            if not h.items or now < h.next_try:
                continue
            try:
                node = self._node(self.keys[i])
            except Exception:  # noqa: BLE001 - still failing over
                node = None
            items = h.items
            try:
                if node is not None and node == h.node:
                    ok = self._send(i, [], confirm_only=True)
                else:  # the master changed (or is unknown): the write may be lost, send again
                    h.items, h.node = [], None
                    self.resent += len(items)
                    self._on_resent(len(items))
                    ok = self._send(i, items)
            except Exception as e:  # noqa: BLE001 - counted, retried after the backoff
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                if h.items is not items:  # the re-send failed: hold them again, node unknown
                    h.items, h.node = items + h.items, None
                ok = False
            if ok:
                h.items, h.node, h.delay, h.short = [], None, 0.0, False
                self._count_written(len(items))
            else:
                h.short = True
                h.delay = min(1.0, max(0.05, 2 * h.delay))
                h.next_try = time.monotonic() + h.delay

    def _write(self, batch):
        parts: dict[int, list[Transition]] = {}
        n = len(self.keys)
        for t in batch:
            parts.setdefault(shard_of(t.cell_id, n), []).append(t)
        done, failed, error = 0, [], None
        for shard, items in parts.items():
            try:
                if self._send(shard, items):
                    done += len(items)
            except Exception as e:  # noqa: BLE001 - see below
                error = e
                failed.append((shard, items))
        if error is None:
            return done
        if len(failed) == len(parts):
            raise error  # nothing went: the whole batch goes back to the buffer (backoff)
        self.failures += 1  # some shards failed: they hold their part until _settle re-sends
        self.last_error = f"{type(error).__name__}: {error}"
        for shard, items in failed:
            h = self._held[shard]
            h.items.extend(items)
            h.node, h.short = None, True  # unknown whether the write ran: sent again
        return done

    def close(self) -> None:
        super().close()
        left = self._held_elsewhere()
        if left:
            log.warning("transition sink closing with %d transitions written but not confirmed "
                        "on a replica", left)
        self._r.close()
