"""Promotion records: the signed statement that a model version may be served.

The registry's ``current`` pointer is a plain Redis string anyone with write access could move;
services therefore serve what the newest *valid promotion record* names, never ``current``. A
record covers kind, version, the blob's sha256, the action (promote or rollback), the gate's
verdict and the signing time, and is signed with the promotion key (Ed25519, held by the
trainer and the operator CLI only; see ``slicetwin.core.signing``).

Order: a service remembers the time of the record it serves (:class:`PromotionGuard`) and
refuses older ones, so replaying an old promotion cannot roll it back; a rollback is a *new*
record (newer time) naming the older version.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

from slicetwin.core.signing import SignatureError, Signer, Verifier

SCHEMA = "slicetwin-promotion-v1"
ACTIONS = ("promote", "rollback")
# verdicts a service accepts: the gate passed it, or an operator decided (CLI, with the key)
SERVABLE_VERDICTS = ("passed", "operator")


class PromotionRefused(Exception):
    """A record that must not be served: bad signature, wrong verdict, older than served."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PromotionRecord:
    kind: str
    version: str
    sha256: str
    action: str
    verdict: str
    time: float
    gate: dict = field(default_factory=dict)
    key_id: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def make_record(signer: Signer, kind: str, version: str, sha256: str, action: str = "promote",
                verdict: str = "passed", gate: dict | None = None,
                at: float | None = None) -> str:
    """The signed envelope (JSON text) of one promotion or rollback."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}")
    payload = {"schema": SCHEMA, "kind": kind, "version": version, "sha256": sha256,
               "action": action, "verdict": verdict, "gate": dict(gate or {}),
               "time": round(time.time() if at is None else at, 6)}
    return signer.sign(payload)


def read_record(verifier: Verifier, envelope: str | bytes, kind: str) -> PromotionRecord:
    """Verify an envelope for ``kind``; PromotionRefused (reason signature/verdict/kind)."""
    try:
        p = verifier.verify(envelope, SCHEMA)
    except SignatureError as e:
        raise PromotionRefused("signature", f"promotion record refused: {e}") from None
    try:
        rec = PromotionRecord(kind=str(p["kind"]), version=str(p["version"]),
                              sha256=str(p["sha256"]), action=str(p["action"]),
                              verdict=str(p["verdict"]), time=float(p["time"]),
                              gate=dict(p.get("gate") or {}))
    except (KeyError, TypeError, ValueError):
        raise PromotionRefused("signature", "promotion record refused: missing fields") from None
    if rec.kind != kind:
        raise PromotionRefused("kind", f"promotion record is for {rec.kind!r}, not {kind!r}")
    if rec.action not in ACTIONS:
        raise PromotionRefused("verdict", f"unknown promotion action {rec.action!r}")
    if rec.verdict not in SERVABLE_VERDICTS:
        raise PromotionRefused("verdict", f"{kind} {rec.version}: verdict {rec.verdict!r} is "
                               "not servable")
    return rec


class PromotionGuard:
    """The time of the record each kind is served under; older records are replays."""

    def __init__(self) -> None:
        self._served: dict[str, PromotionRecord] = {}
        self._lock = threading.Lock()

    def check(self, rec: PromotionRecord) -> None:
        with self._lock:
            cur = self._served.get(rec.kind)
        if cur is None or rec.time > cur.time or (rec.time == cur.time
                                                  and rec.version == cur.version):
            return
        raise PromotionRefused("replay", f"{rec.kind} {rec.version}: promotion record of "
                               f"{rec.time:.3f} is older than the one served ({cur.version} of "
                               f"{cur.time:.3f}); only a newer signed rollback moves back")

    def accept(self, rec: PromotionRecord) -> None:
        self.check(rec)
        with self._lock:
            self._served[rec.kind] = rec

    def served(self, kind: str) -> PromotionRecord | None:
        with self._lock:
            return self._served.get(kind)
