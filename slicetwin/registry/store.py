"""Model registry: versioned, signed model blobs with a movable ``current`` pointer and events.

Two backends with one interface: :class:`RedisRegistry` (layout in docs/registry.md) and
:class:`MemoryRegistry` (the embedded demo, tests). Kinds are ``policy`` (ONNX bytes) and ``twin``
(a state_dict or any bytes the twin service understands).

Redis layout, under a configurable prefix (default ``slicetwin:``); every key carries the hash
tag ``{models}``, so the scripts below touch one slot of a Redis Cluster::

    {models}:{kind}:{version}   hash: onnx|state_dict (bytes), sha256, signature, created_at,
                                metrics (JSON), parent, size
    {models}:{kind}:current     string: the version in service (moved atomically by a Lua script)
    {models}:{kind}:history     list: earlier values of current, newest first (for rollback)
    {models}:{kind}:versions    sorted set: version -> created_at (epoch s), for listing
    {models}:{kind}:promotions  list: signed promotion records (newest first, capped)
    {models}:events             pub/sub channel: {"kind", "version", "action", "previous"}

(e.g. ``slicetwin:{models}:policy:current``). Releases before the cluster support used the same
names without the braces; ``slicetwin models migrate`` renames such keys (docs/registry.md).

Integrity: ``signature`` = HMAC-SHA256(key, "slicetwin-model-v1\\n{kind}\\n{version}\\n{sha256}"),
so a blob can neither be altered nor moved to another version/kind without the shared key.
:meth:`Registry.fetch` verifies sha256 and signature before returning bytes; callers serve only
what ``fetch`` returned. Promotion and rollback run as one Lua script each (check the version
exists, move ``current``, keep history, append the signed promotion record, publish the event),
so replicas never see a half move.

Authorisation (``slicetwin.registry.promotion``): promotion and rollback need the promotion *private*
key; services hold public keys only and serve what the newest valid signed record names
(:meth:`Registry.fetch_served`), never ``current``, so writing Redis directly cannot make a
model servable. A :class:`Watcher` re-reads the records on every (re)connect and event, so
missed events are recovered and forged events change nothing.
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

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from slicetwin.core.signing import (
    DEV_HMAC_KEY,
    DEV_PROMOTION_KEY,
    Signer,
    Verifier,
    parse_public_keys,
)
from slicetwin.platform.redis_client import connect, is_cluster, is_redis_url, write_and_wait
from slicetwin.platform.redis_errors import REDIS_FAILURES
from slicetwin.registry.promotion import (
    PromotionGuard,
    PromotionRecord,
    PromotionRefused,
    make_record,
    read_record,
)

log = logging.getLogger(__name__)

KINDS = ("policy", "twin")
BLOB_FIELD = {"policy": "onnx", "twin": "state_dict"}
DEFAULT_PREFIX = "slicetwin:"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-+]{0,127}$")
_RESERVED = {"current", "history", "versions", "events", "promotions"}
PROMOTION_LOG_CAP = 50  # signed records kept per kind (the newest valid one is served)


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


def verify_blob(key: str | bytes, record: ModelRecord, blob: bytes,
                previous: tuple[bytes, ...] = ()) -> None:
    """Raise IntegrityError unless ``blob`` matches the record's sha256 and signature (made
    with ``key`` or, during a key rotation, one of the ``previous`` keys)."""
    sha = hashlib.sha256(blob).hexdigest()
    if not hmac.compare_digest(sha, record.sha256):
        raise IntegrityError(f"{record.kind} {record.version}: sha256 mismatch "
                             f"(stored {record.sha256[:12]}..., blob {sha[:12]}...)")
    ok = False
    for k in (key, *previous):
        good = sign(k, record.kind, record.version, record.sha256)
        ok |= hmac.compare_digest(good, record.signature or "")
    if not ok:
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
    """Common logic; backends implement the ``_`` storage primitives.

    ``promotion_key``: the Ed25519 private key (hex) that signs promotions and rollbacks (the
    trainer and the operator CLI); None for services, which only verify. Records verify against
    ``promotion_public_keys`` (default: the public key of ``promotion_key``). Both default to
    the public development pair, which services refuse outside ``SLICETWIN_ENV=dev``.
    ``previous_hmac_keys`` are still accepted when verifying blobs (rotation window).
    """

    def __init__(self, hmac_key: str | bytes = DEV_HMAC_KEY, *,
                 promotion_key: str | None = DEV_PROMOTION_KEY,
                 promotion_public_keys=None, previous_hmac_keys=()):
        if not hmac_key:
            raise RegistryError("an HMAC key is required")
        self._key = _key_bytes(hmac_key)
        self._prev_keys = tuple(_key_bytes(k) for k in previous_hmac_keys if k)
        self._signer = Signer(promotion_key) if promotion_key else None
        pubs = parse_public_keys(promotion_public_keys) if promotion_public_keys else ()
        if not pubs:
            if self._signer is None:
                raise RegistryError("a registry needs the promotion public key(s) to verify "
                                    "promotions (or the private key to sign them)")
            pubs = (self._signer.public_key,)
        self._verifier = Verifier(pubs)
        self.guard = PromotionGuard()  # the record this process serves per kind (no replays)
        # envelope -> verified record (None: invalid); records are immutable, so each is
        # verified once, and a promotion costs one signature check, not one per stored record
        self._checked: dict[tuple[str, str], PromotionRecord | None] = {}
        self._checked_lock = threading.Lock()

    def _newest(self, envelopes: list[str], kind: str) -> PromotionRecord | None:
        """The newest valid record among ``envelopes`` (invalid ones are skipped)."""
        best = None
        for env in envelopes:
            with self._checked_lock:
                hit = self._checked.get((kind, env), False)
            if hit is False:
                try:
                    hit = read_record(self._verifier, env, kind)
                except PromotionRefused:
                    hit = None
                with self._checked_lock:
                    if len(self._checked) > 4 * PROMOTION_LOG_CAP:
                        self._checked.clear()
                    self._checked[(kind, env)] = hit
            if hit is not None and (best is None or hit.time > best.time):
                best = hit
        return best

    # public API -------------------------------------------------------------
    def publish(self, kind: str, blob: bytes, version: str | None = None,
                metrics: dict | None = None, parent: str | None = None,
                promote: bool = False, verdict: str = "passed",
                gate: dict | None = None) -> ModelRecord:
        """Store a new immutable version (signed); optionally promote it (a signed record with
        ``verdict`` and the ``gate`` figures; needs the promotion key)."""
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
            self.promote(kind, version, verdict=verdict, gate=gate)
        return rec

    def fetch(self, kind: str, version: str | None = None) -> tuple[ModelRecord, bytes]:
        """Verified (record, blob) of ``version`` (default: current). Raises IntegrityError."""
        _check_kind(kind)
        version = version or self.current(kind)
        if version is None:
            raise NotFound(f"no current {kind} model")
        rec, blob = self._load(kind, version, with_blob=True)
        verify_blob(self._key, rec, blob, self._prev_keys)
        return rec, blob

    def promotions(self, kind: str) -> list[str]:
        """Stored promotion records (signed envelopes, newest first; not yet verified)."""
        _check_kind(kind)
        return self._promotions(kind)

    def authorised(self, kind: str) -> PromotionRecord | None:
        """The newest promotion record that verifies (None: nothing may be served)."""
        _check_kind(kind)
        return self._newest(self._promotions(kind), kind)

    def fetch_served(self, kind: str) -> tuple[ModelRecord, bytes, PromotionRecord]:
        """What a service may serve: the blob the newest valid promotion record names, checked
        against the record's sha256, and not older than the record already served here.
        Raises NotFound, IntegrityError or PromotionRefused (``reason`` replay, ...)."""
        prom = self.authorised(kind)
        if prom is None:
            raise NotFound(f"no {kind} model with a valid promotion record")
        self.guard.check(prom)
        rec, blob = self.fetch(kind, prom.version)
        if not hmac.compare_digest(rec.sha256, prom.sha256):
            raise IntegrityError(f"{kind} {prom.version}: blob sha256 differs from the one "
                                 "its promotion record approved")
        self.guard.accept(prom)
        return rec, blob, prom

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

    def _need_signer(self, what: str) -> Signer:
        if self._signer is None:
            raise RegistryError(f"{what} needs the promotion key (SLICETWIN_PROMOTION_KEY); "
                                "only the trainer and the operator hold it")
        return self._signer

    def promote(self, kind: str, version: str, verdict: str = "passed",
                gate: dict | None = None) -> str | None:
        """Make ``version`` current with a signed promotion record (atomically); returns the
        previous current."""
        _check_kind(kind)
        _check_version(version)
        signer = self._need_signer("promotion")
        rec = self._load(kind, version, with_blob=False)[0]
        env = make_record(signer, kind, version, rec.sha256, "promote", verdict, gate)
        return self._promote(kind, version, env)

    def rollback(self, kind: str, verdict: str = "operator") -> str:
        """Move current back to the previous current with a signed rollback record (newer than
        every earlier one, so services follow it); returns the version now current."""
        _check_kind(kind)
        signer = self._need_signer("rollback")
        cur = self._current(kind)
        for i, v in enumerate(self._history(kind)):
            if v == cur:
                continue
            try:
                rec = self._load(kind, v, with_blob=False)[0]
            except NotFound:
                continue
            env = make_record(signer, kind, v, rec.sha256, "rollback", verdict,
                              {"from": cur})
            return self._rollback(kind, cur, i, v, env)
        raise RegistryError(f"no earlier {kind} version to roll back to")

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

    def _promotions(self, kind: str) -> list[str]:
        raise NotImplementedError

    def _promote(self, kind: str, version: str, record: str) -> str | None:
        raise NotImplementedError

    def _rollback(self, kind: str, expected: str | None, index: int, target: str,
                  record: str) -> str:
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

    def __init__(self, hmac_key: str | bytes = DEV_HMAC_KEY, **keys):
        super().__init__(hmac_key, **keys)
        self._lock = threading.RLock()
        self._log: dict[str, list[str]] = {k: [] for k in KINDS}
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

    def _promotions(self, kind):
        with self._lock:
            return list(self._log[kind])

    def _add_record(self, kind: str, record: str) -> None:
        self._log[kind].insert(0, record)
        del self._log[kind][PROMOTION_LOG_CAP:]

    def _promote(self, kind, version, record):
        with self._lock:
            if (kind, version) not in self._records:
                raise NotFound(f"{kind} version {version!r} not found")
            prev = self._cur.get(kind)
            if prev is not None and prev != version:
                self._hist[kind].insert(0, prev)
            self._cur[kind] = version
            self._add_record(kind, record)
        self._emit(kind, version)
        return prev

    def _rollback(self, kind, expected, index, target, record):
        with self._lock:
            hist = self._hist[kind]
            if self._cur.get(kind) != expected or index >= len(hist) or hist[index] != target:
                raise RegistryError(f"{kind}: current moved during the rollback; try again")
            del hist[:index + 1]
            self._cur[kind] = target
            self._add_record(kind, record)
        self._emit(kind, target)
        return target

    def _emit(self, kind: str, version: str) -> None:
        rec = self.authorised(kind)  # subscribers hear what may be served, never a bare pointer
        version = rec.version if rec is not None else None
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
        rec = self.authorised(kind)
        cur = rec.version if rec is not None else None
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

MODELS_TAG = "{models}"  # the hash tag of every registry key: one slot on a Redis Cluster
WATCH_POLL_S = 0.25  # how often a watcher on a Redis Cluster re-reads the newest record

# KEYS: record, versions   ARGV: sha256, version, created (epoch s), then field, value, ...
_STORE_LUA = """
if redis.call('HSETNX', KEYS[1], 'sha256', ARGV[1]) == 0 then
  return redis.error_reply('EXISTS')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"""

# KEYS: current, history, record, channel, promotions   ARGV: version, kind, signed record, cap
_PROMOTE_LUA = """
if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('NOTFOUND') end
local prev = redis.call('GET', KEYS[1])
if prev and prev ~= ARGV[1] then redis.call('LPUSH', KEYS[2], prev) end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[5], ARGV[3])
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', KEYS[4], cjson.encode({kind=ARGV[2], version=ARGV[1], action='promote',
                                             previous=prev or cjson.null}))
return prev
"""

# KEYS: current, history, channel, promotions
# ARGV: kind, expected current ('' = none), history index, target, signed record, cap
_ROLLBACK_LUA = """
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[2] then return redis.error_reply('CONFLICT') end
local idx = tonumber(ARGV[3])
if redis.call('LINDEX', KEYS[2], idx) ~= ARGV[4] then return redis.error_reply('CONFLICT') end
redis.call('LTRIM', KEYS[2], idx + 1, -1)
redis.call('SET', KEYS[1], ARGV[4])
redis.call('LPUSH', KEYS[4], ARGV[5])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[6]) - 1)
redis.call('PUBLISH', KEYS[3], cjson.encode({kind=ARGV[1], version=ARGV[4], action='rollback',
                                             previous=cur or cjson.null}))
return ARGV[4]
"""


def check_prefix(prefix: str) -> str:
    """A key prefix must not hold braces: the hash tag after it decides the slot."""
    if "{" in prefix or "}" in prefix:
        raise RegistryError(f"registry prefix {prefix!r} must not contain '{{' or '}}' (keys "
                            "carry their own hash tags)")
    return prefix


def legacy_key(prefix: str, kind: str, what: str) -> str:
    """The key of the layout before hash tags (``slicetwin models migrate`` renames them)."""
    return f"{prefix}models:{kind}:{what}"


class RedisRegistry(Registry):
    """Registry on a single Redis or a Redis Cluster (``redis+cluster://``): the same scripts,
    all keys in the ``{models}`` slot. ``watch`` follows pub/sub on a single Redis and polls the
    newest promotion record on a cluster (pub/sub there is tied to one node)."""

    def __init__(self, url: str, hmac_key: str | bytes = DEV_HMAC_KEY,
                 prefix: str = DEFAULT_PREFIX, socket_timeout: float = 5.0,
                 wait_replicas: int | None = None, wait_ms: int = 1000, **keys):
        super().__init__(hmac_key, **keys)

        self.url, self.prefix = url, check_prefix(prefix)
        self._r = connect(url, socket_timeout=socket_timeout,
                          socket_connect_timeout=socket_timeout)
        self.cluster = is_cluster(self._r)
        # writes wait for a replica on a cluster (a failover must not lose a promotion);
        # a single Redis has none unless configured
        self.wait_replicas = (1 if self.cluster else 0) if wait_replicas is None else wait_replicas
        self.wait_ms = wait_ms
        self._store_script = self._r.register_script(_STORE_LUA)
        self._promote_script = self._r.register_script(_PROMOTE_LUA)
        self._rollback_script = self._r.register_script(_ROLLBACK_LUA)
        self._legacy_warned = False

    # keys
    def _k(self, kind: str, what: str) -> str:
        return f"{self.prefix}{MODELS_TAG}:{kind}:{what}"

    @property
    def channel(self) -> str:
        return f"{self.prefix}{MODELS_TAG}:events"

    def _store(self, rec, blob, ts):
        key = self._k(rec.kind, rec.version)
        mapping = {BLOB_FIELD[rec.kind]: blob, "sha256": rec.sha256, "signature": rec.signature,
                   "created_at": rec.created_at, "metrics": json.dumps(rec.metrics),
                   "parent": rec.parent or "", "size": str(rec.size)}
        flat = [x for kv in mapping.items() for x in kv]
        # HSETNX on sha256 first makes publishing a version twice an error, never an overwrite
        try:
            self._write(key, self._store_script, [key, self._k(rec.kind, "versions")],
                        [rec.sha256, rec.version, ts, *flat])
        except redis.ResponseError as e:
            if "EXISTS" in str(e):
                raise RegistryError(f"{rec.kind} version {rec.version!r} already exists") from None
            raise

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

    def _write(self, key: str, script, keys: list, args: list):
        """Run a registry script on the master of the ``{models}`` slot; on a cluster, wait
        until a replica has it, so a failover right after a promotion keeps it."""
        out, acked = write_and_wait(self._r, key,
                                    lambda p: script(keys=keys, args=args, client=p),
                                    self.wait_replicas, self.wait_ms)
        if acked is not None and acked < self.wait_replicas:
            log.warning("registry write to %s confirmed by %d of %d replicas within %d ms: a "
                        "failover now could lose it", key, acked, self.wait_replicas,
                        self.wait_ms)
        return out[0]

    def _versions(self, kind):
        return [v.decode() for v in self._r.zrange(self._k(kind, "versions"), 0, -1)]

    def _current(self, kind):
        v = self._r.get(self._k(kind, "current"))
        return v.decode() if v is not None else None

    def _history(self, kind):
        return [v.decode() for v in self._r.lrange(self._k(kind, "history"), 0, -1)]

    def _promotions(self, kind, conn=None):
        out = [v.decode() for v in (conn or self._r).lrange(
            self._k(kind, "promotions"), 0, PROMOTION_LOG_CAP - 1)]
        if not out:
            self._warn_legacy(kind, conn or self._r)
        return out

    def _warn_legacy(self, kind: str, conn) -> None:
        """Once per process: promotions kept under the old key names are not read."""
        if self._legacy_warned:
            return
        self._legacy_warned = True
        try:
            old = conn.exists(legacy_key(self.prefix, kind, "promotions"))
        except REDIS_FAILURES:
            return
        if old:
            log.error("the registry holds %s promotions under the old key layout (%s); they "
                      "are not served until renamed: run `slicetwin models migrate`",
                      kind, legacy_key(self.prefix, kind, "promotions"))

    def _promote(self, kind, version, record):
        try:
            prev = self._write(self._k(kind, "current"), self._promote_script,
                               [self._k(kind, "current"), self._k(kind, "history"),
                                self._k(kind, version), self.channel,
                                self._k(kind, "promotions")],
                               [version, kind, record, PROMOTION_LOG_CAP])
        except redis.ResponseError as e:
            if "NOTFOUND" in str(e):
                raise NotFound(f"{kind} version {version!r} not found") from None
            raise
        return prev.decode() if isinstance(prev, bytes) else prev

    def _rollback(self, kind, expected, index, target, record):
        try:
            v = self._write(self._k(kind, "current"), self._rollback_script,
                            [self._k(kind, "current"), self._k(kind, "history"), self.channel,
                             self._k(kind, "promotions")],
                            [kind, expected or "", index, target, record, PROMOTION_LOG_CAP])
        except redis.ResponseError as e:
            if "CONFLICT" in str(e):
                raise RegistryError(f"{kind}: current moved during the rollback; "
                                    "try again") from None
            raise
        return v.decode() if isinstance(v, bytes) else v

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._r.close()

    def watch(self, kind, callback, retry_s: float = 0.5,
              poll_s: float = WATCH_POLL_S) -> Watcher:
        """Background thread: re-read the newest valid promotion record on every (re)connect
        and every event (single Redis: pub/sub; cluster: the head of the promotions list,
        polled every ``poll_s``).

        ``callback`` runs in the watcher thread with the version the newest valid promotion
        record names (events only trigger a re-read: a forged event or a moved ``current``
        changes nothing); it is called only when that version differs from the last one seen.
        """
        _check_kind(kind)

        w = Watcher()

        def deliver(version: str | None) -> None:
            if version != w.last_seen:
                w.last_seen = version
                try:
                    callback(version)
                except Exception:
                    log.exception("registry watch callback failed")

        def resync(conn) -> None:
            rec = self._newest(self._promotions(kind, conn), kind)
            deliver(rec.version if rec is not None else None)

        run = self._poll_loop if self.cluster else self._pubsub_loop
        w.thread = threading.Thread(target=run, args=(w, kind, resync, retry_s, poll_s),
                                    name=f"registry-watch-{kind}", daemon=True)
        w.thread.start()
        return w

    def _pubsub_loop(self, w: Watcher, kind: str, resync, retry_s: float, _poll_s) -> None:
        while not w._stop.is_set():
            # no silent client-side retries: a lost connection must surface here so that
            # current is re-read (redis-py would otherwise reconnect and resubscribe quietly)
            conn = connect(self.url, socket_timeout=None, socket_connect_timeout=2.0,
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
                        # so re-sync from the records
                        w.resyncs += 1
                        w.connected.set()
                        resync(conn)
                        continue
                    if msg.get("type") != "message":
                        continue
                    try:
                        ev = json.loads(msg["data"])
                    except (ValueError, TypeError):
                        log.warning("ignoring malformed registry event %r", msg["data"])
                        continue
                    if isinstance(ev, dict) and ev.get("kind") == kind:
                        resync(conn)
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

    def _poll_loop(self, w: Watcher, kind: str, resync, retry_s: float, poll_s: float) -> None:
        """Cluster: the promotions list's head changes with every promotion and rollback, so one
        LINDEX per ``poll_s`` notices each; a failover only delays it."""
        key = self._k(kind, "promotions")
        conn = connect(self.url, socket_timeout=2.0, socket_connect_timeout=2.0)
        head = None
        try:
            while not w._stop.is_set():
                try:
                    now = conn.lindex(key, 0)
                    if not w.connected.is_set():
                        w.resyncs += 1
                        w.connected.set()
                        resync(conn)
                    elif now != head:
                        resync(conn)
                    head = now
                except REDIS_FAILURES as e:
                    if w.connected.is_set():
                        log.warning("registry watch lost the cluster (%s); retrying", e)
                    w.connected.clear()
                    w._stop.wait(retry_s)
                    continue
                w._stop.wait(poll_s)
        finally:
            conn.close()


def migrate_layout(url: str, prefix: str = DEFAULT_PREFIX) -> dict[str, list[str]]:
    """Rename registry keys of the layout before hash tags (``{prefix}models:...``) to the
    tagged one (``{prefix}{models}:...``) on a single Redis. A key whose new name exists already
    is left alone and reported under ``kept``. Run once, with the services stopped."""
    check_prefix(prefix)
    r = connect(url)
    if is_cluster(r):
        r.close()
        raise RegistryError("migrate runs on the single Redis that holds the old layout (a "
                            "cluster never had it)")
    out: dict[str, list[str]] = {"renamed": [], "kept": []}
    try:
        old = f"{prefix}models:"
        for raw in r.scan_iter(match=old.replace("[", "\\[") + "*", count=500):
            key = raw.decode()
            new = f"{prefix}{MODELS_TAG}:{key[len(old):]}"
            (out["renamed"] if r.renamenx(key, new) else out["kept"]).append(key)
    finally:
        r.close()
    return out


def open_registry(url: str | None = None, hmac_key: str | bytes = DEV_HMAC_KEY,
                  prefix: str = DEFAULT_PREFIX, **keys) -> Registry:
    """``redis://...`` or ``redis+cluster://...`` -> RedisRegistry; None/"" /"memory" -> a new
    MemoryRegistry."""
    if is_redis_url(url):
        return RedisRegistry(url, hmac_key, prefix, **keys)
    if url in (None, "", "memory"):
        return MemoryRegistry(hmac_key, **keys)
    raise RegistryError(f"unsupported registry URL {url!r} (redis://..., "
                        "redis+cluster://host:port[,host:port] or 'memory')")
