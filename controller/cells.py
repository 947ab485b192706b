"""Per-cell memory: the last window, state and action of every cell.

Each report closes the previous transition of its cell. ``commit`` checks the window order and
stores the new memory in one step (atomically across cells of a batch); it raises
:class:`WindowConflict` for a duplicate or backward window, so such a report never becomes a
transition and never overwrites newer memory. ``local`` keeps memory in-process; ``redis`` keeps it
under ``{prefix}cells:{cell_id}`` (one Lua call per request or per batch), so several controller
replicas behind a load balancer share it.
"""

from __future__ import annotations

import json
import threading
from typing import NamedTuple

import redis


class CellMemory(NamedTuple):
    window: int
    state: list  # normalised state of that window
    action: int  # action answered for that window (applied during the next one)
    policy_version: str
    fallback: bool
    explored: bool


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


def _check(cell_id: str, window: int, last: int | None, index: int) -> None:
    if last is not None and window <= last:
        kind = "duplicate_window" if window == last else "window_backwards"
        raise WindowConflict(kind, cell_id, window, last, index)


class LocalCellStore:
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
            _check(cell_id, mem.window, prev.window if prev else None, 0)
            self._m[cell_id] = mem
            return prev

    def commit_many(self, items: list[tuple[str, CellMemory]]) -> list[CellMemory | None]:
        with self._lock:
            prevs = []
            for i, (cid, mem) in enumerate(items):
                prev = self._m.get(cid)
                _check(cid, mem.window, prev.window if prev else None, i)
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


# KEYS: cell keys; ARGV: ttl, then (window, payload) per key. All-or-nothing.
_COMMIT_LUA = """
local n = #KEYS
for i = 1, n do
  local w = redis.call('HGET', KEYS[i], 'window')
  if w and tonumber(w) >= tonumber(ARGV[2 * i]) then
    return {'CONFLICT', tostring(i), w}
  end
end
local prevs = {'OK'}
for i = 1, n do
  prevs[i + 1] = redis.call('HGET', KEYS[i], 'data') or ''
  redis.call('HSET', KEYS[i], 'window', ARGV[2 * i], 'data', ARGV[2 * i + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return prevs
"""


class RedisCellStore:
    name = "redis"

    def __init__(self, url: str, prefix: str = "slicetwin:", ttl_s: int = 3600):

        self.prefix, self.ttl = prefix, ttl_s
        self._r = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._r.register_script(_COMMIT_LUA)

    def _key(self, cell_id: str) -> str:
        return f"{self.prefix}cells:{cell_id}"

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

    def commit(self, cell_id: str, mem: CellMemory) -> CellMemory | None:
        return self.commit_many([(cell_id, mem)])[0]

    def commit_many(self, items: list[tuple[str, CellMemory]]) -> list[CellMemory | None]:
        args: list = [self.ttl]
        for _, m in items:
            args += [m.window, self._dump(m)]
        res = self._script(keys=[self._key(c) for c, _ in items], args=args)
        if res[0] == b"CONFLICT":
            i = int(res[1]) - 1
            cid, m = items[i]
            _check(cid, m.window, int(res[2]), i)
        return [self._load(r) for r in res[1:]]

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
