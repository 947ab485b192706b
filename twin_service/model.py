"""The served twin: load beside the old one, smoke-test, then swap one reference.

In-flight requests keep the object they started with; a model that fails to load or to
predict is refused and the old one keeps serving (design note §4).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LoadedTwin:
    twin: object  # trainer.twin.Twin
    version: str
    source: str
    loaded_at: float = field(default_factory=time.time)


def smoke_test(twin) -> None:
    """One prediction from a plausible state must be finite and shaped right."""
    states = np.ones((2, twin.history_len, 3), np.float32)
    actions = np.zeros((2, twin.history_len), np.int64)
    out = twin.predict(states, actions, t=0, seed=0)
    if out["next_state"].shape != (2, 3) or not all(np.isfinite(v).all() for v in out.values()):
        raise ValueError("twin smoke test failed: non-finite or wrongly shaped prediction")


class TwinHolder:
    def __init__(self, utility=None) -> None:
        # the operator's weights (slicetwin.utility.UtilityConfig): a twin that computes
        # utility with others is refused; None checks nothing
        self.utility = utility
        self._current: LoadedTwin | None = None
        self._lock = threading.Lock()
        self.on_swap: list = []  # callbacks(LoadedTwin), e.g. metrics

    @property
    def current(self) -> LoadedTwin | None:
        return self._current

    def load_blob(self, blob: bytes, version: str | None = None, source: str = "bytes",
                  metrics: dict | None = None) -> LoadedTwin:
        from trainer.twin import Twin

        twin = Twin.from_bytes(blob)
        if metrics:
            twin.metrics = {**twin.metrics, **metrics}
        self.check_utility(twin)
        smoke_test(twin)
        version = version or "sha256:" + hashlib.sha256(blob).hexdigest()[:12]
        loaded = LoadedTwin(twin, str(version), source)
        with self._lock:
            self._current = loaded
        for cb in self.on_swap:
            cb(loaded)
        return loaded

    def load_file(self, path: str | Path) -> LoadedTwin:
        p = Path(path)
        blob = p.read_bytes()
        version = "file-" + hashlib.sha256(blob).hexdigest()[:12]
        return self.load_blob(blob, version, source=f"file:{p}")

    def check_utility(self, twin) -> None:
        """ValueError when ``twin`` computes utility with other weights than the settings'."""
        u = getattr(twin, "utility_config", None)
        if self.utility is None or u is None or u.matches(self.utility):
            return
        raise ValueError(f"twin computes utility with alpha={u.alpha:g}, beta={list(u.beta)}; "
                         f"this service uses alpha={self.utility.alpha:g}, beta="
                         f"{list(self.utility.beta)} (SLICETWIN_UTILITY_ALPHA / "
                         f"SLICETWIN_UTILITY_BETA)")

    def load_twin(self, twin, version: str, source: str = "memory") -> LoadedTwin:
        self.check_utility(twin)
        smoke_test(twin)
        loaded = LoadedTwin(twin, version, source)
        with self._lock:
            self._current = loaded
        for cb in self.on_swap:
            cb(loaded)
        return loaded


def model_info(loaded: LoadedTwin) -> dict:
    tw = loaded.twin
    m = tw.metrics or {}
    return {
        "version": loaded.version, "source": loaded.source, "loaded_at": loaded.loaded_at,
        "history": tw.config.history, "ensemble": tw.config.ensemble, "n_actions": tw.n_actions,
        "n_units": tw.config.n_units, "state_dim": 3, "reward_source": tw.config.reward_source,
        "calibration_error": m.get("calibration_error"), "next_state_rmse": m.get("next_state_rmse"),
        "persistence_rmse": m.get("persistence_rmse"), "metrics": m,
        "config": json.loads(tw.config.to_json()),
        "utility": tw.utility_config.as_dict() if hasattr(tw, "utility_config") else {},
    }
