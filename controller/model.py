"""The policy in service: an ONNX student, hot-swapped safely (``slicetwin.registry.hotswap``).

A new model is validated beside the old one by ``OnnxPolicy`` (contract checks, a smoke
inference, the utility weights it was trained for) before the swap. ``policy`` is a plain
attribute that the decision path reads once per request.
"""

from __future__ import annotations

from slicetwin.core.actions import ActionCodec
from slicetwin.core.utility import UtilityConfig
from slicetwin.registry.hotswap import HotSwap, Rejected, Served
from slicetwin.registry.store import Registry, Watcher
from slicetwin.runtime.onnx_policy import ModelRejected, OnnxPolicy


class ModelHolder(HotSwap[OnnxPolicy]):
    kind = "policy"

    def __init__(self, codec: ActionCodec, metrics=None, utility: UtilityConfig | None = None):
        super().__init__()
        self.codec = codec
        # the weights this controller serves: a model trained for others is refused (reason
        # "utility"); None checks nothing
        self.utility = utility
        self.metrics = metrics
        self.policy: OnnxPolicy | None = None
        self.on_swap.append(self._serve)
        if metrics is not None:
            self.on_reject.append(lambda reason: metrics.rejected.labels(reason).inc())

    def build(self, blob: bytes, version: str | None, record_metrics: dict | None) -> OnnxPolicy:
        try:
            return OnnxPolicy(blob, version=version, expect_codec=self.codec,
                              expect_utility=self.utility)
        except ModelRejected as e:
            raise Rejected(e.reason, str(e)) from e

    def version_of(self, model: OnnxPolicy, blob: bytes | None) -> str:
        return model.version

    def _serve(self, served: Served[OnnxPolicy]) -> None:
        first = self.policy is None
        self.policy = served.model
        m = self.metrics
        if m is not None:
            if not first:
                m.swaps.inc()
            m.model_loaded.set(1)
            m.policy_info.info({"version": served.version, "origin": served.origin,
                                "sha256": served.model.info.sha256})

    @property
    def origin(self) -> str:
        return self.current.origin if self.current is not None else "none"

    @property
    def loaded_at(self) -> float | None:
        return self.current.loaded_at if self.current is not None else None

    def load_bytes(self, blob: bytes, version: str | None, origin: str) -> bool:
        """Validate and swap in ``blob``; False (and the old model keeps serving) on failure."""
        try:
            self.load(blob, version, origin)
        except Rejected:
            return False
        return True

    def load_from_registry(self, registry: Registry, version: str | None = None) -> bool:
        was = self.version
        ok = super().load_from_registry(registry, version)
        if ok and self.version != was and self.metrics is not None:
            self.metrics.model_unsigned.set(0)  # registry models are signed by their record
        return ok

    def watch(self, registry: Registry) -> Watcher:
        return self.follow(registry)
