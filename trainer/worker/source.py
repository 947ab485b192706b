"""Where live transitions come from: the Redis stream (consumer group) or an in-process sink.

``RedisStreamSource`` reads ``{prefix}transitions`` with ``XREADGROUP`` as one consumer of a
group. On start it first re-reads *its own* pending entries (id ``0``: delivered before a crash
or restart but never acknowledged), then new ones (``>``). The worker acknowledges (``XACK``)
only after the batch is durable in the :class:`~trainer.worker.store.DatasetStore`, so a restart
loses nothing. Entries that were trimmed from the stream while still pending come back with no
fields; they cannot be recovered and are counted in ``trimmed_pending`` (see docs: the bound).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis

from slicetwin.core.transition_wire import decode, encode

log = logging.getLogger("slicetwin.trainer")


@dataclass
class Polled:
    ids: list[str] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)  # decoded (slicetwin.core.transition_wire.decode)
    bad_ids: list[str] = field(default_factory=list)  # undecodable entries (acked, counted)
    gone_ids: list[str] = field(default_factory=list)  # trimmed while pending (acked, counted)


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class RedisStreamSource:
    def __init__(self, url: str, stream: str, group: str = "trainer", consumer: str = "trainer-1",
                 socket_timeout: float = 5.0):

        self.stream, self.group, self.consumer = stream, group, consumer
        self._r = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                       socket_connect_timeout=socket_timeout)
        self._group_ready = False
        self._pending_done = False
        self.trimmed_pending = 0
        self.bad_entries = 0

    def _ensure_group(self) -> None:
        if self._group_ready:
            return

        try:  # id 0: a new group starts from the oldest entry still in the stream
            self._r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    def poll(self, count: int = 1000, block_ms: int = 500) -> Polled:
        """Next batch: this consumer's pending entries first, then new ones."""

        self._ensure_group()
        out = Polled()
        if not self._pending_done:
            resp = self._r.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=count)
            rows = resp[0][1] if resp else []
            if not rows:
                self._pending_done = True
        if self._pending_done:
            resp = self._r.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count,
                                      block=block_ms or None)
            rows = resp[0][1] if resp else []
        for sid, fields_ in rows:
            sid = _s(sid)
            if not fields_:  # deleted/trimmed before we acknowledged it
                out.gone_ids.append(sid)
                continue
            try:
                out.entries.append(decode(fields_))
                out.ids.append(sid)
            except (KeyError, ValueError, TypeError) as e:
                log.warning("undecodable transition %s (%s); skipping it", sid, e)
                out.bad_ids.append(sid)
        self.trimmed_pending += len(out.gone_ids)
        self.bad_entries += len(out.bad_ids)
        return out

    def ack(self, ids: list[str]) -> None:
        if ids:
            self._r.xack(self.stream, self.group, *ids)

    def lag(self) -> int | None:
        """Entries not yet delivered to the group (Redis >= 7 reports it), else None."""
        try:
            for g in self._r.xinfo_groups(self.stream):
                if _s(g.get("name")) == self.group:
                    lag = g.get("lag")
                    return None if lag is None else int(lag)
        except Exception:  # noqa: BLE001 - informational only
            return None
        return None

    def reset_connection_state(self) -> None:
        """After a Redis outage: re-create the group if Redis lost it; re-read pending."""
        self._group_ready = False
        self._pending_done = False

    def close(self) -> None:
        self._r.close()


class MemorySinkSource:
    """Reads a controller ``MemorySink`` in the same process (the embedded demo, no Redis).

    Ids are the sink's running count (``0-<n>``), so the store's skip-what-is-persisted logic
    works unchanged; there is nothing to acknowledge.
    """

    def __init__(self, sink):
        self.sink = sink
        self._seen = 0
        self.trimmed_pending = 0
        self.bad_entries = 0

    def poll(self, count: int = 1000, block_ms: int = 500) -> Polled:
        deadline = time.monotonic() + block_ms / 1000
        while self.sink.written <= self._seen and time.monotonic() < deadline:
            time.sleep(0.02)
        items = list(self.sink.items)
        if self.sink.items.maxlen is None or len(items) < self.sink.items.maxlen:
            # never overflowed: positions in the deque are exact running counts
            batch = items[self._seen:self._seen + count]
            first = self._seen
            self._seen += len(batch)
            return Polled(ids=[f"0-{first + i + 1}" for i in range(len(batch))],
                          entries=[decode(encode(t)) for t in batch])
        written = self.sink.written
        pending = written - self._seen
        if pending <= 0:
            return Polled()
        avail = min(pending, len(items))
        missed = pending - avail  # fell out of the sink's bounded deque before we read them
        self.trimmed_pending += missed
        self._seen += missed
        start = len(items) - avail
        batch = items[start:start + min(count, avail)]
        first = self._seen
        self._seen += len(batch)
        return Polled(ids=[f"0-{first + i + 1}" for i in range(len(batch))],
                      entries=[decode(encode(t)) for t in batch])

    def ack(self, ids: list[str]) -> None:
        pass

    def lag(self) -> int | None:
        return max(0, self.sink.written - self._seen)

    def reset_connection_state(self) -> None:
        pass

    def close(self) -> None:
        pass
