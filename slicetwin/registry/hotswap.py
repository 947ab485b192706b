"""The model in service, hot-swapped safely: the controller's policy and the twin service's twin.

A new model is built and checked beside the old one; only then is one reference replaced (an
attribute store, atomic under the GIL). A request reads the reference once, so in-flight
requests finish on the model they started with. Any failure leaves the old model serving and is
counted by reason. Registry loads serve what the newest valid *signed promotion record* names,
never a bare ``current``, and the watcher re-reads the records on every reconnect, so a missed
event is recovered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from slicetwin.registry.promotion import PromotionRefused
from slicetwin.registry.store import IntegrityError, NotFound, Registry, Watcher

log = logging.getLogger(__name__)

M = TypeVar("M")


class Rejected(ValueError):
    """A model that was not swapped in; ``reason`` labels the refusal counter."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Served(Generic[M]):
    model: M
    version: str
    origin: str  # "file:<path>", "registry:<version>", "init", "memory", ...
    loaded_at: float = field(default_factory=time.time)


def registry_refusal(e: Exception) -> Rejected:
    """The refusal reason of a failed registry fetch."""
    if isinstance(e, PromotionRefused):
        return Rejected(e.reason, str(e))
    if isinstance(e, IntegrityError):
        return Rejected("signature", str(e))
    if isinstance(e, NotFound):
        return Rejected("not_found", str(e))
    return Rejected("registry", f"{type(e).__name__}: {e}")


class HotSwap(Generic[M]):
    """Holds the served model of one registry ``kind``; subclasses say how a blob becomes a
    checked model (``build``, raising :class:`Rejected`)."""

    kind = "policy"

    def __init__(self) -> None:
        self.current: Served[M] | None = None
        self.swaps = 0
        self.rejected = 0
        self.last_error: str | None = None
        self.on_swap: list[Callable[[Served[M]], None]] = []
        self.on_reject: list[Callable[[str], None]] = []
        self._lock = threading.Lock()  # serialises loads, never requests
        self._watcher: Watcher | None = None

    # ------------------------------------------------------------------ the maths of a subclass
    def build(self, blob: bytes, version: str | None, record_metrics: dict | None) -> M:
        raise NotImplementedError

    def version_of(self, model: M, blob: bytes | None) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ swapping
    @property
    def version(self) -> str | None:
        cur = self.current
        return cur.version if cur is not None else None

    def reject(self, reason: str, message: str) -> Rejected:
        self.rejected += 1
        self.last_error = message
        for cb in self.on_reject:
            cb(reason)
        log.warning("%s refused (%s): %s", self.kind, reason, message)
        return Rejected(reason, message)

    def swap_in(self, model: M, version: str, origin: str) -> Served[M]:
        """Serve an already checked ``model``."""
        served = Served(model, version, origin)
        with self._lock:
            old, self.current = self.current, served
            self.last_error = None
            if old is not None:
                self.swaps += 1
        for cb in self.on_swap:
            cb(served)
        log.info("%s %s in service (from %s)", self.kind, version, origin)
        return served

    def load(self, blob: bytes, version: str | None, origin: str,
             record_metrics: dict | None = None) -> Served[M]:
        """Build, check and serve ``blob``; raises :class:`Rejected` (counted) and the old model
        keeps serving."""
        try:
            model = self.build(blob, version, record_metrics)
        except Rejected as e:
            raise self.reject(e.reason, str(e)) from e
        return self.swap_in(model, version or self.version_of(model, blob), origin)

    def load_from_registry(self, registry: Registry, version: str | None = None) -> bool:
        """Serve what the newest valid promotion record names (``version`` is only a hint from
        the watcher: the record decides). False, counted, when refused."""
        if version is not None and version == self.version:
            return True  # already serving it (a re-sync after a reconnect)
        try:
            rec, blob, _ = registry.fetch_served(self.kind)
        except Exception as e:  # never kill the watcher: the old model keeps serving
            r = registry_refusal(e)
            self.reject(r.reason, str(r))
            return False
        if rec.version == self.version:
            return True
        try:
            self.load(blob, rec.version, f"registry:{rec.version}", rec.metrics)
        except Rejected:
            return False
        return True

    def follow(self, registry: Registry) -> Watcher:
        """Follow promotions and rollbacks of ``kind`` (the callback runs off the event loop)."""

        def on_change(version: str | None) -> None:
            if version is not None:
                self.load_from_registry(registry, version)

        self._watcher = registry.watch(self.kind, on_change)
        return self._watcher

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
