"""Per-cell memory: the last window, state and action of every cell.

Each report closes the previous transition of its cell. ``commit`` checks the window order and
stores the new memory in one step (atomically across cells of a batch); it raises
:class:`WindowConflict` for a duplicate or backward window, so such a report never becomes a
transition and never overwrites newer memory. ``local`` keeps memory in-process; ``redis`` keeps it
under the key ``slicetwin.platform.cell_keys`` names (on a single Redis ``{prefix}cells:{<id>}``;
on a Redis Cluster in the slot of the cell's transitions stream shard, so cells spread over the
masters as the shards do: one Lua call per request or batch on a single Redis, one per stream
shard of a batch on a cluster), so several controller replicas behind a load balancer share it;
``controller.cell_cache.ShadowedCellStore`` wraps the Redis store with a local cache that
answers while Redis is unreachable and re-syncs afterwards.

``record`` / ``record_many`` are ``commit`` / ``commit_many`` plus a hold handle (``None`` here:
the decision's transition goes straight to the sink); the shadowed store returns a handle while
it serves from its cache, and the transition is held until the cell's memory is back in Redis.

**Transitions closed in the commit.** Given the stream's shard keys (``streams``), the Redis
store also appends the transition a report closes to its cell's shard *in the same Lua call*
that commits the cell's memory (``closes``: :class:`Close`, the report's half of the entry).
Memory and transition are then stored together or not at all, so a replica killed right after
answering loses no transition (through the sink's in-process buffer it lost the last ~20 ms of
them), and a window accepted twice is impossible by construction. On a cluster this works
because the cell's key carries its shard's hash tag (same slot). The store's
``closes_transitions`` tells the engine which path its transitions take; where a replica must
confirm each stream write (``SLICETWIN_SINK_WAIT_REPLICAS`` > 0, the cluster default) the
engine also hands them to the sink, which only confirms them (``RedisStreamSink.put_written``).
"""

from __future__ import annotations

import json
import os
import threading
from typing import NamedTuple

from slicetwin.platform.cell_keys import CellKeys, cell_keys
from slicetwin.platform.redis_client import connect, eval_each, is_cluster
from slicetwin.platform.redis_errors import is_store_failure


class CellMemory(NamedTuple):
    window: int
    state: list  # normalised state of that window
    action: int  # action answered for that window (applied during the next one)
    policy_version: str
    fallback: bool
    explored: bool


class Close(NamedTuple):
    """The report's half of the transition it may close (``transition_wire`` field order):
    ``head`` = ``["<cell_id>",<window>,`` and ``middle`` = ``reward,utility,next_state,arrived,
    sla_met,se``; the previous memory gives ``state``, ``action`` (unless ``reported`` >= 0, the
    allocation that actually ran), ``policy_version``, ``fallback`` and ``explored``."""

    head: str
    middle: str
    ts: str
    reported: int = -1


class Stored(NamedTuple):
    """A re-sync verdict: the held memory is now in Redis. ``own_window`` is the window of this
    replica's own earlier write found there (a commit that landed but whose reply was lost), or
    -1: with transitions closed in the commit, those up to it are already in the stream."""

    own_window: int = -1


class WindowConflict(Exception):
    """``kind`` is ``duplicate_window`` or ``window_backwards``; ``index`` the batch position."""

    def __init__(self, kind: str, cell_id: str, window: int, last: int, index: int = 0):
        self.kind, self.cell_id, self.window, self.last, self.index = kind, cell_id, window, last, index
        what = "was already answered" if kind == "duplicate_window" else "goes backwards"
        super().__init__(f"cell {cell_id!r}: window {window} {what} (last window {last}); "
                         "not recorded")

    @property
    def status(self) -> int:
        return 409 if self.kind == "duplicate_window" else 422


def is_store_error(e: BaseException) -> bool:
    """A failure to reach or use the cell store (``slicetwin.platform.redis_errors``)."""
    return is_store_failure(e)


def is_outage(e: BaseException) -> bool:
    """A store error that says Redis cannot serve (unreachable, timed out, loading, read-only
    replica, out of memory, no permission), not one about a single key's data (WRONGTYPE):
    the shadowed store answers from its cache for the former and reports the latter."""
    return is_store_error(e) and not str(e).startswith("WRONGTYPE")


def check_order(cell_id: str, window: int, last: int | None, index: int) -> None:
    """Raise :class:`WindowConflict` unless ``window`` comes after ``last``."""
    if last is not None and window <= last:
        kind = "duplicate_window" if window == last else "window_backwards"
        raise WindowConflict(kind, cell_id, window, last, index)


class _Recording:
    """``record`` / ``record_many`` for stores that never hold transitions."""

    closes_transitions = False  # transitions go to the sink

    def record(self, cell_id: str, mem: CellMemory, close: Close | None = None
               ) -> tuple[CellMemory | None, None]:
        return self.commit(cell_id, mem), None

    def record_many(self, items: list[tuple[str, CellMemory]],
                    closes: list[Close] | None = None) -> tuple[list[CellMemory | None], None]:
        return self.commit_many(items), None


class LocalCellStore(_Recording):
    name = "local"

    def __init__(self) -> None:
        self._m: dict[str, CellMemory] = {}
        self._explored: dict[str, int] = {}
        self._lock = threading.Lock()

    def peek(self, cell_id: str) -> CellMemory | None:
        return self._m.get(cell_id)

    def commit(self, cell_id: str, mem: CellMemory) -> CellMemory | None:
        with self._lock:
            prev = self._m.get(cell_id)
            check_order(cell_id, mem.window, prev.window if prev else None, 0)
            self._m[cell_id] = mem
            return prev

    def commit_many(self, items: list[tuple[str, CellMemory]]) -> list[CellMemory | None]:
        with self._lock:
            prevs = []
            for i, (cid, mem) in enumerate(items):
                prev = self._m.get(cid)
                check_order(cid, mem.window, prev.window if prev else None, i)
                prevs.append(prev)
            for cid, mem in items:
                self._m[cid] = mem
            return prevs

    def take_exploration(self, cell_id: str, budget: int) -> bool:
        """Spend one unit of the cell's exploration budget; False when spent."""
        with self._lock:
            n = self._explored.get(cell_id, 0)
            if n >= budget:
                return False
            self._explored[cell_id] = n + 1
            return True

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


# KEYS: cell keys; ARGV: ttl, owner, then (window, payload) per key. All-or-nothing. ``by`` names
# the replica that wrote the memory (its re-sync recognises its own write after a lost reply).
_COMMIT_LUA = """
local n = #KEYS
for i = 1, n do
  local w = redis.call('HGET', KEYS[i], 'window')
  if w and tonumber(w) >= tonumber(ARGV[2 * i + 1]) then
    return {'CONFLICT', tostring(i), w}
  end
end
local prevs = {'OK'}
for i = 1, n do
  prevs[i + 1] = redis.call('HGET', KEYS[i], 'data') or ''
  redis.call('HSET', KEYS[i], 'window', ARGV[2 * i + 1], 'data', ARGV[2 * i + 2], 'by', ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return prevs
"""

# The same commit, and for each key whose previous window is the one just before the new one, the
# transition it closes appended to the cell's stream shard. KEYS: n cell keys, then the n cells'
# shard keys; ARGV: ttl, owner, maxlen, then (window, payload, head, middle, ts, reported) per key. The previous memory's
# payload is ``[window, [state], action, rest]`` (``RedisCellStore._dump``); its parts are spliced
# into the entry as text, so floats keep every digit (cjson only if the text is not in that form).
_COMMIT_CLOSE_LUA = """
local n = #KEYS / 2
for i = 1, n do
  local w = redis.call('HGET', KEYS[i], 'window')
  if w and tonumber(w) >= tonumber(ARGV[6 * i - 2]) then
    return {'CONFLICT', tostring(i), w}
  end
end
local prevs = {'OK'}
for i = 1, n do
  local j = 6 * i - 2
  local old = redis.call('HMGET', KEYS[i], 'window', 'data')
  local data = old[2] or ''
  prevs[i + 1] = data
  if old[1] and tonumber(old[1]) + 1 == tonumber(ARGV[j]) and data ~= '' then
    local state, action, rest = string.match(data, '^%[%-?%d+, (%b[]), (%-?%d+), (.+)%]$')
    if not state then
      local d = cjson.decode(data)
      state, action = cjson.encode(d[2]), tostring(d[3])
      rest = cjson.encode(d[4]) .. ',' .. tostring(d[5]) .. ',' .. tostring(d[6])
    end
    if tonumber(ARGV[j + 5]) >= 0 then action = ARGV[j + 5] end
    redis.call('XADD', KEYS[n + i], 'MAXLEN', '~', ARGV[3], '*', 't',
               ARGV[j + 2] .. state .. ',' .. action .. ',' .. ARGV[j + 3] .. ',' .. rest
               .. ',' .. ARGV[j + 4] .. ']')
  end
  redis.call('HSET', KEYS[i], 'window', ARGV[j], 'data', ARGV[j + 1], 'by', ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return prevs
"""

# Re-sync of memories accepted while Redis was unreachable, one verdict per key (not
# all-or-nothing). KEYS: cell keys; ARGV: ttl, owner, then (first, window, payload) per key, where
# ``first`` is the lowest window this replica accepted on its own. The memory is stored only if
# no other replica accepted a window >= first meanwhile (the key's window is below ``first``, or
# this replica wrote it) and it would not move the window backwards; otherwise the newer memory
# in Redis stays and is returned: {0, window, data}. Stored: {1, own}, where ``own`` is the window
# of this replica's own write found there (a commit whose reply was lost), or '' if none.
_PUSH_LUA = """
local out = {}
for i = 1, #KEYS do
  local j = 3 * i
  local cur = redis.pcall('HMGET', KEYS[i], 'window', 'by', 'data')
  if cur['err'] then  -- not a cell hash (WRONGTYPE): refused, never blocks the others
    out[i] = {0, '', ''}
  else
    local w = tonumber(cur[1])
    local mine = cur[2] == ARGV[2]
    if w and ((w >= tonumber(ARGV[j]) and not mine) or w > tonumber(ARGV[j + 1])) then
      out[i] = {0, cur[1], cur[3] or ''}
    else
      redis.call('HSET', KEYS[i], 'window', ARGV[j + 1], 'data', ARGV[j + 2], 'by', ARGV[2])
      redis.call('EXPIRE', KEYS[i], ARGV[1])
      if mine and w then out[i] = {1, cur[1]} else out[i] = {1, ''} end
    end
  end
end
return out
"""


class RedisCellStore(_Recording):
    """``timeout_s`` bounds every call (connect and reply): a decision waits at most that long
    for an unreachable Redis (the shadowed store then stops asking until Redis is back).

    Keys: ``slicetwin.platform.cell_keys`` (the stream layout, ``stream`` / ``shards``, places
    a cell's memory in its stream shard's slot on a Redis Cluster). On a cluster a batch is
    committed per shard: the windows of the whole batch are read first (a conflict refuses the
    batch with nothing written), then one atomic script per shard re-checks and stores that
    shard's cells. A batch within one shard is all or nothing like on a single Redis; only a
    race with another replica between the two steps can leave other shards' cells of a batch
    committed (docs/deployment.md, "Redis Cluster").

    ``streams``: the transitions stream's shard keys (``slicetwin.platform.stream_shards``, the
    sink's); commits given ``closes`` then append the transitions they close to the cell's
    shard in the same script (module doc), on a single Redis and on a cluster alike."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "slicetwin:", ttl_s: int = 3600,
                 timeout_s: float = 1.0, streams: tuple[str, ...] | None = None,
                 maxlen: int = 1_000_000, shards: int = 0, stream: str | None = None):
        self.prefix, self.ttl = prefix, ttl_s
        self.owner = os.urandom(6).hex()  # this replica, in each memory it writes ('by')
        self._r = connect(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.cluster = is_cluster(self._r)
        if streams:
            self.keys = CellKeys(prefix, tuple(streams), self.cluster)
        else:  # no transitions in the commit: the same layout all the same
            self.keys = cell_keys(prefix, self.cluster, shards, stream)
        self.streams, self.maxlen = streams or (), maxlen  # maxlen: per shard
        self.closes_transitions = bool(self.streams)
        self._script = self._r.register_script(_COMMIT_LUA)
        self._close_script = self._r.register_script(_COMMIT_CLOSE_LUA)
        self._push = self._r.register_script(_PUSH_LUA)

    def _key(self, cell_id: str) -> str:
        return self.keys.of(cell_id)

    @staticmethod
    def _dump(m: CellMemory) -> str:
        return json.dumps([m.window, m.state, m.action, m.policy_version, m.fallback, m.explored])

    @staticmethod
    def _load(raw: bytes | str) -> CellMemory | None:
        if not raw:
            return None
        w, s, a, v, f, e = json.loads(raw)
        return CellMemory(int(w), s, int(a), v, bool(f), bool(e))

    def peek(self, cell_id: str) -> CellMemory | None:
        return self._load(self._r.hget(self._key(cell_id), "data") or b"")

    def commit(self, cell_id: str, mem: CellMemory, close: Close | None = None
               ) -> CellMemory | None:
        return self.commit_many([(cell_id, mem)], None if close is None else [close])[0]

    def commit_many(self, items: list[tuple[str, CellMemory]],
                    closes: list[Close] | None = None) -> list[CellMemory | None]:
        """Check every window and store every memory, all or nothing (per shard on a cluster:
        class doc); with ``closes`` (and ``streams``) also append the transitions they close.
        Returns the previous memories."""
        if not self.closes_transitions:
            closes = None
        if self.cluster:
            groups = self._by_shard([cid for cid, _ in items])
            if len(groups) > 1:
                return self._commit_per_shard(items, closes, groups)
        res = self._call(items, closes, range(len(items)))
        self._raise_conflict(items, res, range(len(items)))
        return [self._load(r) for r in res[1:]]

    def _read_windows(self, items: list[tuple[str, CellMemory]]) -> list:
        """The cells' current windows (bytes or None), one pipelined round trip per master."""
        pipe = self._r.pipeline(transaction=False)
        for cid, _ in items:
            pipe.hget(self._key(cid), "window")
        return pipe.execute()

    def _by_shard(self, cell_ids: list[str]) -> list[list[int]]:
        """Positions of ``cell_ids`` grouped by stream shard (one cluster slot per group)."""
        groups: dict[int, list[int]] = {}
        shard = self.keys.shard
        for i, cid in enumerate(cell_ids):
            groups.setdefault(shard(cid), []).append(i)
        return list(groups.values())

    def _call_args(self, items: list[tuple[str, CellMemory]], closes: list[Close] | None,
                   idx) -> tuple:
        """(script, keys, args) committing ``items[i] for i in idx`` in one Lua call."""
        keys = [self._key(items[i][0]) for i in idx]
        if closes is None:
            args: list = [self.ttl, self.owner]
            for i in idx:
                args += [items[i][1].window, self._dump(items[i][1])]
            return self._script, keys, args
        args = [self.ttl, self.owner, self.maxlen]
        for i in idx:
            m, c = items[i][1], closes[i]
            args += [m.window, self._dump(m), c.head, c.middle, c.ts, c.reported]
        shards = [self.streams[self.keys.shard(items[i][0])] for i in idx]
        return self._close_script, [*keys, *shards], args

    def _call(self, items, closes, idx) -> list:
        script, keys, args = self._call_args(items, closes, idx)
        return script(keys=keys, args=args)

    @staticmethod
    def _raise_conflict(items, res: list, idx) -> None:
        if res[0] == b"CONFLICT":
            i = list(idx)[int(res[1]) - 1]
            cid, m = items[i]
            check_order(cid, m.window, int(res[2]), i)

    def _commit_per_shard(self, items: list[tuple[str, CellMemory]],
                          closes: list[Close] | None, groups: list[list[int]]
                          ) -> list[CellMemory | None]:
        """Cluster, a batch over several shards: read every window (refuse the batch on a
        conflict, nothing written), then one atomic script per shard, all in one pipeline
        round trip per master."""
        for i, ((cid, m), w) in enumerate(zip(items, self._read_windows(items), strict=True)):
            check_order(cid, m.window, None if w is None else int(w), i)
        calls = [self._call_args(items, closes, idx) for idx in groups]
        script = calls[0][0]
        res = eval_each(self._r, script, [(keys, args) for _, keys, args in calls])
        prevs: list[CellMemory | None] = [None] * len(items)
        for idx, r in zip(groups, res, strict=True):
            self._raise_conflict(items, r, idx)  # another replica won a cell since the read
            for i, raw in zip(idx, r[1:], strict=True):
                prevs[i] = self._load(raw)
        return prevs

    def push_if_unmoved(self, items: list[tuple[str, int, CellMemory]]
                        ) -> list[CellMemory | None | Stored]:
        """Re-sync ``(cell_id, first, mem)`` items (see ``_PUSH_LUA``): per item
        :class:`Stored` when stored, else the memory Redis holds (newer; ``None`` if
        unreadable)."""
        def call(part: list[tuple[str, int, CellMemory]]) -> tuple[list, list]:
            args: list = [self.ttl, self.owner]
            for _, first, m in part:
                args += [first, m.window, self._dump(m)]
            return [self._key(c) for c, _, _ in part], args

        if self.cluster:  # verdicts are per cell anyway: one script per shard's slot
            order = self._by_shard([c for c, _, _ in items])
            out = eval_each(self._r, self._push, [call([items[i] for i in idx])
                                                  for idx in order])
            res: list = [None] * len(items)
            for idx, verdicts in zip(order, out, strict=True):
                for i, v in zip(idx, verdicts, strict=True):
                    res[i] = v
        else:
            keys, args = call(items)
            res = self._push(keys=keys, args=args)
        return [Stored(int(r[1]) if r[1] else -1) if int(r[0]) == 1 else self._load(r[2])
                for r in res]

    def take_exploration(self, cell_id: str, budget: int) -> bool:
        key = self._key(cell_id) + ":explored"
        p = self._r.pipeline()
        p.incr(key)
        p.expire(key, self.ttl)
        return int(p.execute()[0]) <= budget

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._r.close()
