"""The served twin, hot-swapped safely (``slicetwin.registry.hotswap``).

A twin is loaded beside the old one, checked against the service's utility weights and
smoke-tested before the swap; one that fails is refused and the old one keeps serving.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from slicetwin.registry.hotswap import HotSwap, Rejected, Served
from slicetwin.twin import Twin

LoadedTwin = Served  # Served[Twin]: .model, .version, .origin, .loaded_at


def smoke_test(twin) -> None:
    """One prediction from a plausible state must be finite and shaped right."""
    states = np.ones((2, twin.history_len, 3), np.float32)
    actions = np.zeros((2, twin.history_len), np.int64)
    out = twin.predict(states, actions, t=0, seed=0)
    if out["next_state"].shape != (2, 3) or not all(np.isfinite(v).all() for v in out.values()):
        raise Rejected("smoke_test", "twin smoke test failed: non-finite or wrongly shaped "
                       "prediction")


class TwinHolder(HotSwap[Twin]):
    kind = "twin"

    def __init__(self, utility=None) -> None:
        super().__init__()
        # the operator's weights (slicetwin.core.utility.UtilityConfig): a twin that computes
        # utility with others is refused; None checks nothing
        self.utility = utility

    def build(self, blob: bytes, version: str | None, record_metrics: dict | None) -> Twin:
        try:
            twin = Twin.from_bytes(blob)
        except Exception as e:  # noqa: BLE001 - any unreadable blob is a refusal, not a crash
            raise Rejected("invalid", f"not a twin model: {type(e).__name__}: {e}") from e
        if record_metrics:
            twin.metrics = {**twin.metrics, **record_metrics}
        self.check(twin)
        return twin

    def version_of(self, model: Twin, blob: bytes | None) -> str:
        return "sha256:" + hashlib.sha256(blob or b"").hexdigest()[:12]

    def check(self, twin) -> None:
        """:class:`Rejected` when ``twin`` computes utility with other weights than the
        settings', or fails the smoke test."""
        u = getattr(twin, "utility_config", None)
        if self.utility is not None and u is not None and not u.matches(self.utility):
            raise Rejected("utility", f"twin computes utility with alpha={u.alpha:g}, "
                           f"beta={list(u.beta)}; this service uses alpha="
                           f"{self.utility.alpha:g}, beta={list(self.utility.beta)} "
                           "(SLICETWIN_UTILITY_ALPHA / SLICETWIN_UTILITY_BETA)")
        smoke_test(twin)

    def load_blob(self, blob: bytes, version: str | None = None, source: str = "bytes",
                  metrics: dict | None = None) -> Served[Twin]:
        return self.load(blob, version, source, metrics)

    def load_file(self, path: str | Path) -> Served[Twin]:
        p = Path(path)
        blob = p.read_bytes()
        return self.load(blob, "file-" + hashlib.sha256(blob).hexdigest()[:12], f"file:{p}")

    def load_twin(self, twin, version: str, source: str = "memory") -> Served[Twin]:
        try:
            self.check(twin)
        except Rejected as e:
            raise self.reject(e.reason, str(e)) from e
        return self.swap_in(twin, version, source)


def model_info(loaded: Served[Twin]) -> dict:
    tw = loaded.model
    m = tw.metrics or {}
    return {
        "version": loaded.version, "source": loaded.origin, "loaded_at": loaded.loaded_at,
        "history": tw.config.history, "ensemble": tw.config.ensemble, "n_actions": tw.n_actions,
        "n_units": tw.config.n_units, "state_dim": 3, "reward_source": tw.config.reward_source,
        "calibration_error": m.get("calibration_error"), "next_state_rmse": m.get("next_state_rmse"),
        "persistence_rmse": m.get("persistence_rmse"), "metrics": m,
        "config": json.loads(tw.config.to_json()),
        "utility": tw.utility_config.as_dict() if hasattr(tw, "utility_config") else {},
    }
