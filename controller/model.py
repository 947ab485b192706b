"""Model holder: the policy in service, loaded and hot-swapped safely.

Triton-style swap: a new model is fetched (sha256 + HMAC verified by the registry), built and
validated beside the old one (``OnnxPolicy`` runs the contract checks and a smoke inference), and
only then is the ``policy`` reference replaced (one attribute store, atomic under the GIL). A
request reads the reference once at its start, so in-flight requests finish on the model they
started with. Any failure leaves the old model serving and is counted by reason.
"""

from __future__ import annotations

import logging
import threading
import time

from slicetwin.actions import ActionCodec
from slicetwin.onnx_policy import ModelRejected, OnnxPolicy
from slicetwin.promotion import PromotionRefused
from slicetwin.registry import IntegrityError, NotFound, Registry, RegistryError, Watcher
from slicetwin.utility import UtilityConfig

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, codec: ActionCodec, metrics=None, utility: UtilityConfig | None = None):
        self.codec = codec
        # the weights this controller serves: a model trained for others is refused (reason
        # "utility"); None checks nothing
        self.utility = utility
        self.metrics = metrics
        self.policy: OnnxPolicy | None = None
        self.origin: str = "none"
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self.rejected = 0
        self._lock = threading.Lock()  # serialises loads (not requests)
        self._watcher: Watcher | None = None

    @property
    def version(self) -> str | None:
        p = self.policy
        return p.version if p is not None else None

    def _reject(self, reason: str, message: str) -> None:
        self.rejected += 1
        self.last_error = message
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()
        log.warning("model refused (%s): %s", reason, message)

    def load_bytes(self, blob: bytes, version: str | None, origin: str) -> bool:
        """Validate and swap in ``blob``; False (and the old model keeps serving) on failure."""
        with self._lock:
            try:
                new = OnnxPolicy(blob, version=version, expect_codec=self.codec,
                                 expect_utility=self.utility)
            except ModelRejected as e:
                self._reject(e.reason, str(e))
                return False
            old = self.policy
            self.policy = new  # the atomic swap
            self.origin, self.loaded_at, self.last_error = origin, time.time(), None
            if old is not None:
                self.swaps += 1
            if self.metrics is not None:
                if old is not None:
                    self.metrics.swaps.inc()
                self.metrics.model_loaded.set(1)
                self.metrics.policy_info.info({"version": new.version, "origin": origin,
                                               "sha256": new.info.sha256})
            log.info("policy %s in service (from %s)", new.version, origin)
            return True

    def load_from_registry(self, registry: Registry, version: str | None = None) -> bool:
        """Serve what the newest valid promotion record names (``version`` is only a hint from
        the watcher: the record decides, never ``current``)."""
        if version is not None and version == self.version:
            return True  # already serving it (e.g. re-sync after reconnect)
        try:
            rec, blob, _ = registry.fetch_served("policy")
        except PromotionRefused as e:
            self._reject(e.reason, str(e))
            return False
        except IntegrityError as e:
            self._reject("signature", str(e))
            return False
        except NotFound as e:
            self._reject("not_found", str(e))
            return False
        except (RegistryError, OSError, ConnectionError) as e:
            self._reject("registry", str(e))
            return False
        except Exception as e:  # redis errors and the like: never kill the watcher
            self._reject("registry", f"{type(e).__name__}: {e}")
            return False
        if rec.version == self.version:
            return True
        ok = self.load_bytes(blob, rec.version, f"registry:{rec.version}")
        if ok and self.metrics is not None:
            self.metrics.model_unsigned.set(0)
        return ok

    def watch(self, registry: Registry) -> Watcher:
        """Follow ``policy`` promotions/rollbacks (the callback runs off the event loop)."""

        def on_change(version: str | None) -> None:
            if version is not None:
                self.load_from_registry(registry, version)

        self._watcher = registry.watch("policy", on_change)
        return self._watcher

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
