"""Where live transitions come from: the Redis stream's shards (consumer groups) or an
in-process sink.

``RedisStreamSource`` reads every shard of ``{prefix}transitions``
(``slicetwin.platform.stream_shards``) with ``XREADGROUP`` as one consumer of a group per shard.
On start, and after any Redis error (a restart, a failover), it first re-claims pending entries:
entries of any consumer idle longer than ``claim_idle_ms`` (``XAUTOCLAIM``: a trainer that died
under another name) and then *its own* pending entries (id ``0``: delivered before a crash or
restart but never acknowledged); then it reads new ones (``>``). The worker acknowledges
(``XACK``) only after the batch is durable in the :class:`~trainer.worker.store.DatasetStore`,
so a restart loses nothing. Entries that were trimmed from the stream while still pending come
back with no fields; they cannot be recovered and are counted in ``trimmed_pending`` (see docs:
the bound).

Ids: with one shard, the stream id (``1700000000000-3``); with several, the id and the shard
(``1700000000000-3@2``), so an id names one entry of the whole stream. On a single Redis one
blocking ``XREADGROUP`` reads all shards; on a cluster (shards live on several masters) one
pipelined, non-blocking read per master, then a short sleep when all were empty.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis

from slicetwin.core.transition_wire import decode, encode
from slicetwin.platform.redis_client import connect, is_cluster
from slicetwin.platform.stream_shards import resolve_shards, shard_keys

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
                 socket_timeout: float = 5.0, shards: int = 0, claim_idle_ms: int = 60_000):

        self.stream, self.group, self.consumer = stream, group, consumer
        self._r = connect(url, socket_timeout=socket_timeout,
                          socket_connect_timeout=socket_timeout)
        self.cluster = is_cluster(self._r)
        self.keys = shard_keys(stream, resolve_shards(shards, self.cluster))
        self.claim_idle_ms = claim_idle_ms
        self._group_ready = False
        self._pending: set[int] = set(range(len(self.keys)))  # shards still re-claiming
        self._claimed: set[int] = set()  # shards whose XAUTOCLAIM ran since the last reset
        self.trimmed_pending = 0
        self.bad_entries = 0
        self.claimed = 0  # entries taken over from other (dead) consumers

    def _id(self, shard: int, sid) -> str:
        sid = _s(sid)
        return sid if len(self.keys) == 1 else f"{sid}@{shard}"

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        for key in self.keys:
            try:  # id 0: a new group starts from the oldest entry still in the stream
                self._r.xgroup_create(key, self.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        self._group_ready = True

    def poll(self, count: int = 1000, block_ms: int = 500) -> Polled:
        """Next batch: pending entries first (re-claimed, then this consumer's), then new."""

        self._ensure_group()
        rows = self._read_pending(count) if self._pending else []
        if not rows and not self._pending:
            rows = self._read_new(count, block_ms)
        out = Polled()
        for shard, sid, fields_ in rows:
            sid = self._id(shard, sid)
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

    def _read_pending(self, count: int) -> list[tuple[int, bytes, dict]]:
        rows: list[tuple[int, bytes, dict]] = []
        for shard in sorted(self._pending):
            key = self.keys[shard]
            if shard not in self._claimed:
                self._claimed.add(shard)
                got = self._r.xautoclaim(key, self.group, self.consumer, self.claim_idle_ms,
                                         start_id="0-0", count=count)
                mine = got[1] if got else []
                self.claimed += len(mine)
                rows += [(shard, sid, f) for sid, f in mine]
                # entries trimmed while pending: XAUTOCLAIM drops them from the group's
                # pending list (any consumer's) and names them; counted as trimmed
                rows += [(shard, sid, {}) for sid in (got[2] if got and len(got) > 2 else [])]
                if rows:
                    return rows
            resp = self._r.xreadgroup(self.group, self.consumer, {key: "0"}, count=count)
            got = resp[0][1] if resp else []
            if not got:
                self._pending.discard(shard)
                continue
            return [(shard, sid, f) for sid, f in got]
        return rows

    def _read_new(self, count: int, block_ms: int) -> list[tuple[int, bytes, dict]]:
        count = max(1, count // len(self.keys))  # COUNT is per stream: keep ``count`` in all
        if not self.cluster:  # one blocking read over every shard
            resp = self._r.xreadgroup(self.group, self.consumer, {k: ">" for k in self.keys},
                                      count=count, block=block_ms or None)
            index = {k: i for i, k in enumerate(self.keys)}
            return [(index[_s(k)], sid, f) for k, got in (resp or []) for sid, f in got]
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys:
            pipe.xreadgroup(self.group, self.consumer, {key: ">"}, count=count)
        rows = [(i, sid, f) for i, resp in enumerate(pipe.execute())
                for _, got in (resp or []) for sid, f in got]
        if not rows and block_ms:
            time.sleep(min(block_ms, 100) / 1000)  # nothing anywhere: poll again shortly
        return rows

    def ack(self, ids: list[str]) -> None:
        if not ids:
            return
        if len(self.keys) == 1:
            self._r.xack(self.keys[0], self.group, *ids)
            return
        by_shard: dict[int, list[str]] = {}
        for sid in ids:
            base, _, shard = sid.partition("@")
            by_shard.setdefault(int(shard or 0), []).append(base)
        pipe = self._r.pipeline(transaction=False)
        for shard, part in by_shard.items():
            pipe.xack(self.keys[shard], self.group, *part)
        pipe.execute()

    def lag(self) -> int | None:
        """Entries not yet delivered to the group, all shards (Redis >= 7 reports it)."""
        total = 0
        try:
            for key in self.keys:
                for g in self._r.xinfo_groups(key):
                    if _s(g.get("name")) == self.group:
                        lag = g.get("lag")
                        if lag is None:
                            return None
                        total += int(lag)
        except Exception:  # noqa: BLE001 - informational only
            return None
        return total

    def reset_connection_state(self) -> None:
        """After a Redis outage or failover: re-create groups Redis lost; re-claim pending."""
        self._group_ready = False
        self._pending = set(range(len(self.keys)))
        self._claimed = set()

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
