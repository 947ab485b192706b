"""Model registry: versioned, signed model blobs with a movable ``current`` pointer and events.

Two backends with one interface: :class:`RedisRegistry` (design.md section 4 layout) and
:class:`MemoryRegistry` (the embedded demo, tests). Kinds are ``policy`` (ONNX bytes) and ``twin``
(a state_dict or any bytes the twin service understands).

Redis layout, under a configurable prefix (default ``slicetwin:``)::

    models:{kind}:{version}   hash: onnx|state_dict (bytes), sha256, signature, created_at,
                              metrics (JSON), parent, size
    models:{kind}:current     string: the version in service (moved atomically by a Lua script)
    models:{kind}:history     list: earlier values of current, newest first (for rollback)
    models:{kind}:versions    sorted set: version -> created_at (epoch s), for listing
    models:events             pub/sub channel: {"kind", "version", "action", "previous"}

Integrity: ``signature`` = HMAC-SHA256(key, "slicetwin-model-v1\\n{kind}\\n{version}\\n{sha256}"),
so a blob can neither be altered nor moved to another version/kind without the shared key.
:meth:`Registry.fetch` verifies sha256 and signature before returning bytes; callers serve only
what ``fetch`` returned. Promotion and rollback run as one Lua script each (check the version
exists, move ``current``, keep history, publish the event), so replicas never see a half move.
A :class:`Watcher` re-reads ``current`` on every (re)connect, so missed events are recovered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

log = logging.getLogger(__name__)

KINDS = ("policy", "twin")
BLOB_FIELD = {"policy": "onnx", "twin": "state_dict"}
DEFAULT_PREFIX = "slicetwin:"
DEV_HMAC_KEY = "slicetwin-dev-key-change-me"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-+]{0,127}$")
_RESERVED = {"current", "history", "versions", "events"}


class RegistryError(Exception):
    """Base class: anything the registry refuses."""


class NotFound(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


class IntegrityError(RegistryError):
    """sha256 or HMAC signature does not verify: the blob must not be served."""


@dataclass
class ModelRecord:
    kind: str
    version: str
    sha256: str
    signature: str
    created_at: str
    metrics: dict = field(default_factory=dict)
    parent: str | None = None
    size: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelEvent:
    kind: str
    version: str | None
    action: str = "promote"
    previous: str | None = None


# ----------------------------------------------------------------------------- signing

def _key_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


def sign(key: str | bytes, kind: str, version: str, sha256: str) -> str:
    msg = f"slicetwin-model-v1\n{kind}\n{version}\n{sha256}".encode()
    return hmac.new(_key_bytes(key), msg, hashlib.sha256).hexdigest()


def verify_blob(key: str | bytes, record: ModelRecord, blob: bytes) -> None:
    """Raise IntegrityError unless ``blob`` matches the record's sha256 and signature."""
    sha = hashlib.sha256(blob).hexdigest()
    if not hmac.compare_digest(sha, record.sha256):
        raise IntegrityError(f"{record.kind} {record.version}: sha256 mismatch "
                             f"(stored {record.sha256[:12]}..., blob {sha[:12]}...)")
    good = sign(key, record.kind, record.version, record.sha256)
    if not hmac.compare_digest(good, record.signature or ""):
        raise IntegrityError(f"{record.kind} {record.version}: HMAC signature does not verify "
                             "(wrong key or tampered record)")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")


def _check_version(version: str) -> None:
    if not _VERSION_RE.match(version) or version in _RESERVED:
        raise RegistryError(f"invalid version name {version!r} (letters, digits, . _ - +; "
                            f"not one of {sorted(_RESERVED)})")


def _now() -> tuple[str, float]:
    t = time.time()
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds"), t


def new_version(kind: str) -> str:
    """A sortable default version name, e.g. ``policy-20261125T031500123``."""
    return f"{kind}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')[:-3]}"


# ----------------------------------------------------------------------------- interface

class Registry:
    """Common logic; backends implement the ``_`` storage primitives."""

    def __init__(self, hmac_key: str | bytes = DEV_HMAC_KEY):
        if not hmac_key:
            raise RegistryError("an HMAC key is required")
        self._key = _key_bytes(hmac_key)

    # public API -------------------------------------------------------------
    def publish(self, kind: str, blob: bytes, version: str | None = None,
                metrics: dict | None = None, parent: str | None = None,
                promote: bool = False) -> ModelRecord:
        """Store a new immutable version (signed); optionally make it current."""
        _check_kind(kind)
        version = version or new_version(kind)
        _check_version(version)
        if not blob:
            raise RegistryError("refusing to publish an empty blob")
        sha = hashlib.sha256(blob).hexdigest()
        created, ts = _now()
        rec = ModelRecord(kind, version, sha, sign(self._key, kind, version, sha), created,
                          dict(metrics or {}), parent, len(blob))
        json.dumps(rec.metrics)  # fail early on non-JSON metrics
        self._store(rec, bytes(blob), ts)
        if promote:
            self.promote(kind, version)
        return rec

    def fetch(self, kind: str, version: str | None = None) -> tuple[ModelRecord, bytes]:
        """Verified (record, blob) of ``version`` (default: current). Raises IntegrityError."""
        _check_kind(kind)
        version = version or self.current(kind)
        if version is None:
            raise NotFound(f"no current {kind} model")
        rec, blob = self._load(kind, version, with_blob=True)
        verify_blob(self._key, rec, blob)
        return rec, blob

    def show(self, kind: str, version: str | None = None) -> ModelRecord:
        _check_kind(kind)
        version = version or self.current(kind)
        if version is None:
            raise NotFound(f"no current {kind} model")
        return self._load(kind, version, with_blob=False)[0]

    def list(self, kind: str) -> list[ModelRecord]:
        """All versions of a kind, oldest first."""
        _check_kind(kind)
        return [self._load(kind, v, with_blob=False)[0] for v in self._versions(kind)]

    def current(self, kind: str) -> str | None:
        _check_kind(kind)
        return self._current(kind)

    def history(self, kind: str) -> list[str]:
        _check_kind(kind)
        return self._history(kind)

    def promote(self, kind: str, version: str) -> str | None:
        """Make ``version`` current (atomically); returns the previous current."""
        _check_kind(kind)
        _check_version(version)
        return self._promote(kind, version)

    def rollback(self, kind: str) -> str:
        """Move current back to the previous current; returns the version now current."""
        _check_kind(kind)
        return self._rollback(kind)

    def watch(self, kind: str, callback: Callable[[str | None], None]) -> Watcher:
        """Call ``callback(current_version)`` now and whenever ``current`` of ``kind`` moves."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    # storage primitives ------------------------------------------------------
    def _store(self, rec: ModelRecord, blob: bytes, ts: float) -> None:
        raise NotImplementedError

    def _load(self, kind: str, version: str, with_blob: bool) -> tuple[ModelRecord, bytes]:
        raise NotImplementedError

    def _versions(self, kind: str) -> list[str]:
        raise NotImplementedError

    def _current(self, kind: str) -> str | None:
        raise NotImplementedError

    def _history(self, kind: str) -> list[str]:
        raise NotImplementedError

    def _promote(self, kind: str, version: str) -> str | None:
        raise NotImplementedError

    def _rollback(self, kind: str) -> str:
        raise NotImplementedError


class Watcher:
    """Handle on a background subscription; ``stop()`` ends it."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.last_seen: str | None = None
        self.resyncs = 0  # times current was re-read after a (re)subscription

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)


# ----------------------------------------------------------------------------- in-memory

class MemoryRegistry(Registry):
    """Same interface in one process (embedded demo, tests). Thread-safe."""

    def __init__(self, hmac_key: str | bytes = DEV_HMAC_KEY):
        super().__init__(hmac_key)
        self._lock = threading.RLock()
        self._records: dict[tuple[str, str], tuple[ModelRecord, bytes, float]] = {}
        self._cur: dict[str, str] = {}
        self._hist: dict[str, list[str]] = {k: [] for k in KINDS}
        self._subs: list[tuple[str, Callable[[str | None], None]]] = []

    def _store(self, rec, blob, ts):
        with self._lock:
            if (rec.kind, rec.version) in self._records:
                raise RegistryError(f"{rec.kind} version {rec.version!r} already exists")
            self._records[(rec.kind, rec.version)] = (rec, blob, ts)

    def _load(self, kind, version, with_blob):
        with self._lock:
            try:
                rec, blob, _ = self._records[(kind, version)]
            except KeyError:
                raise NotFound(f"{kind} version {version!r} not found") from None
            return ModelRecord(**rec.to_dict()), (blob if with_blob else b"")

    def _versions(self, kind):
        with self._lock:
            items = [(ts, v) for (k, v), (_, _, ts) in self._records.items() if k == kind]
        return [v for _, v in sorted(items)]

    def _current(self, kind):
        return self._cur.get(kind)

    def _history(self, kind):
        return list(self._hist[kind])

    def _promote(self, kind, version):
        with self._lock:
            if (kind, version) not in self._records:
                raise NotFound(f"{kind} version {version!r} not found")
            prev = self._cur.get(kind)
            if prev is not None and prev != version:
                self._hist[kind].insert(0, prev)
            self._cur[kind] = version
        self._emit(kind, version)
        return prev

    def _rollback(self, kind):
        with self._lock:
            cur = self._cur.get(kind)
            while self._hist[kind]:
                v = self._hist[kind].pop(0)
                if v != cur and (kind, v) in self._records:
                    self._cur[kind] = v
                    break
            else:
                raise RegistryError(f"no earlier {kind} version to roll back to")
        self._emit(kind, v)
        return v

    def _emit(self, kind: str, version: str) -> None:
        for k, cb in list(self._subs):
            if k == kind:
                try:
                    cb(version)
                except Exception:  # a subscriber's failure must not break promotion
                    log.exception("registry subscriber failed")

    def watch(self, kind, callback):
        _check_kind(kind)
        w = Watcher()
        entry = (kind, callback)
        with self._lock:
            self._subs.append(entry)
            cur = self._cur.get(kind)
        w.connected.set()
        orig_stop = w.stop

        def stop(timeout: float = 2.0) -> None:
            with self._lock:
                if entry in self._subs:
                    self._subs.remove(entry)
            orig_stop(timeout)

        w.stop = stop  # type: ignore[method-assign]
        callback(cur)
        return w


# ----------------------------------------------------------------------------- Redis

# KEYS: current, history, record, channel   ARGV: version, kind
_PROMOTE_LUA = """
if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('NOTFOUND') end
local prev = redis.call('GET', KEYS[1])
if prev and prev ~= ARGV[1] then redis.call('LPUSH', KEYS[2], prev) end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[4], cjson.encode({kind=ARGV[2], version=ARGV[1], action='promote',
                                             previous=prev or cjson.null}))
return prev
"""

# KEYS: current, history, channel   ARGV: kind, record key prefix
_ROLLBACK_LUA = """
local cur = redis.call('GET', KEYS[1])
while true do
  local v = redis.call('LPOP', KEYS[2])
  if not v then return redis.error_reply('NOHISTORY') end
  if v ~= cur and redis.call('EXISTS', ARGV[2] .. v) == 1 then
    redis.call('SET', KEYS[1], v)
    redis.call('PUBLISH', KEYS[3], cjson.encode({kind=ARGV[1], version=v, action='rollback',
                                                 previous=cur or cjson.null}))
    return v
  end
end
"""


class RedisRegistry(Registry):
    def __init__(self, url: str, hmac_key: str | bytes = DEV_HMAC_KEY,
                 prefix: str = DEFAULT_PREFIX, socket_timeout: float = 5.0):
        super().__init__(hmac_key)
        import redis

        self.url, self.prefix = url, prefix
        self._r = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                       socket_connect_timeout=socket_timeout)
        self._promote_script = self._r.register_script(_PROMOTE_LUA)
        self._rollback_script = self._r.register_script(_ROLLBACK_LUA)

    # keys
    def _k(self, kind: str, what: str) -> str:
        return f"{self.prefix}models:{kind}:{what}"

    @property
    def channel(self) -> str:
        return f"{self.prefix}models:events"

    def _store(self, rec, blob, ts):
        key = self._k(rec.kind, rec.version)
        mapping = {BLOB_FIELD[rec.kind]: blob, "sha256": rec.sha256, "signature": rec.signature,
                   "created_at": rec.created_at, "metrics": json.dumps(rec.metrics),
                   "parent": rec.parent or "", "size": str(rec.size)}
        # HSETNX on sha256 first makes publishing a version twice an error, never an overwrite
        if not self._r.hsetnx(key, "sha256", rec.sha256):
            raise RegistryError(f"{rec.kind} version {rec.version!r} already exists")
        p = self._r.pipeline(transaction=True)
        p.hset(key, mapping=mapping)
        p.zadd(self._k(rec.kind, "versions"), {rec.version: ts})
        p.execute()

    def _load(self, kind, version, with_blob):
        key = self._k(kind, version)
        names = ["sha256", "signature", "created_at", "metrics", "parent", "size"]
        if with_blob:
            names.append(BLOB_FIELD[kind])
        vals = self._r.hmget(key, names)
        if vals[0] is None:
            raise NotFound(f"{kind} version {version!r} not found")
        d = {n: v for n, v in zip(names, vals, strict=True)}
        s = lambda b: b.decode() if isinstance(b, bytes) else (b or "")  # noqa: E731
        try:
            metrics = json.loads(s(d["metrics"]) or "{}")
        except json.JSONDecodeError:
            metrics = {"_unparsable": s(d["metrics"])}
        rec = ModelRecord(kind, version, s(d["sha256"]), s(d["signature"]), s(d["created_at"]),
                          metrics, s(d["parent"]) or None, int(s(d["size"]) or 0))
        return rec, (d.get(BLOB_FIELD[kind]) or b"") if with_blob else b""

    def _versions(self, kind):
        return [v.decode() for v in self._r.zrange(self._k(kind, "versions"), 0, -1)]

    def _current(self, kind):
        v = self._r.get(self._k(kind, "current"))
        return v.decode() if v is not None else None

    def _history(self, kind):
        return [v.decode() for v in self._r.lrange(self._k(kind, "history"), 0, -1)]

    def _promote(self, kind, version):
        import redis

        try:
            prev = self._promote_script(
                keys=[self._k(kind, "current"), self._k(kind, "history"),
                      self._k(kind, version), self.channel], args=[version, kind])
        except redis.ResponseError as e:
            if "NOTFOUND" in str(e):
                raise NotFound(f"{kind} version {version!r} not found") from None
            raise
        return prev.decode() if isinstance(prev, bytes) else prev

    def _rollback(self, kind):
        import redis

        try:
            v = self._rollback_script(
                keys=[self._k(kind, "current"), self._k(kind, "history"), self.channel],
                args=[kind, self._k(kind, "")])
        except redis.ResponseError as e:
            if "NOHISTORY" in str(e):
                raise RegistryError(f"no earlier {kind} version to roll back to") from None
            raise
        return v.decode() if isinstance(v, bytes) else v

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._r.close()

    def watch(self, kind, callback, retry_s: float = 0.5) -> Watcher:
        """Background thread: subscribe, re-read ``current`` on every (re)connect, follow events.

        ``callback`` runs in the watcher thread with the new current version; it is called on
        connect even when nothing changed only if the version differs from the last one seen.
        """
        _check_kind(kind)
        import redis

        w = Watcher()

        def deliver(version: str | None) -> None:
            if version != w.last_seen:
                w.last_seen = version
                try:
                    callback(version)
                except Exception:
                    log.exception("registry watch callback failed")

        def run() -> None:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            while not w._stop.is_set():
                # no silent client-side retries: a lost connection must surface here so that
                # current is re-read (redis-py would otherwise reconnect and resubscribe quietly)
                conn = redis.Redis.from_url(self.url, socket_connect_timeout=2.0,
                                            health_check_interval=5, retry=Retry(NoBackoff(), 0))
                ps = conn.pubsub(ignore_subscribe_messages=False)
                try:
                    ps.subscribe(self.channel)
                    while not w._stop.is_set():
                        msg = ps.get_message(timeout=0.2)
                        if msg is None:
                            continue
                        if msg.get("type") == "subscribe":
                            # (re)subscribed: events published while away are not replayed,
                            # so re-sync from current
                            w.resyncs += 1
                            v = conn.get(self._k(kind, "current"))
                            w.connected.set()
                            deliver(v.decode() if v is not None else None)
                            continue
                        if msg.get("type") != "message":
                            continue
                        try:
                            ev = json.loads(msg["data"])
                        except (ValueError, TypeError):
                            log.warning("ignoring malformed registry event %r", msg["data"])
                            continue
                        if ev.get("kind") == kind:
                            deliver(ev.get("version"))
                except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                    w.connected.clear()
                    log.warning("registry watch lost Redis (%s); retrying", e)
                finally:
                    try:
                        ps.close()
                        conn.close()
                    except Exception:
                        pass
                if not w._stop.is_set() and not w.connected.is_set():
                    w._stop.wait(retry_s)  # no subscription is held while waiting

        w.thread = threading.Thread(target=run, name=f"registry-watch-{kind}", daemon=True)
        w.thread.start()
        return w


def open_registry(url: str | None = None, hmac_key: str | bytes = DEV_HMAC_KEY,
                  prefix: str = DEFAULT_PREFIX) -> Registry:
    """``redis://...`` -> RedisRegistry; None/"" /"memory" -> a new MemoryRegistry."""
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRegistry(url, hmac_key, prefix)
    if url in (None, "", "memory"):
        return MemoryRegistry(hmac_key)
    raise RegistryError(f"unsupported registry URL {url!r} (redis://... or 'memory')")
