"""``HttpTwin``: the twin protocol (reset / step / predict / fit) over the twin service.

Rollout bookkeeping is the in-process twin's (``TwinRollouts``); each step is one
``POST /v1/twin/step:batch`` with packed arrays and a per-step seed drawn from the rollout RNG,
so for the same weights and seed the rollouts equal the in-process twin's. Algorithm 1 runs
unchanged against either.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import numpy as np

from slicetwin.twin import Twin, TwinConfig
from slicetwin.twin.rollout import TwinRollouts
from slicetwin.twin.wire import pack, unpack


class TwinServiceError(RuntimeError):
    pass


def registry_publisher(registry) -> Callable:
    """``publish`` for ``HttpTwin``: sign and store the twin in the registry and promote it,
    which makes every twin service watching the registry swap to it."""

    def publish(twin, metrics: dict) -> str:
        rec = registry.publish("twin", twin.to_bytes(), metrics=metrics, promote=True)
        return rec.version

    return publish


class HttpTwin(TwinRollouts):
    """Remote twin. ``publish(twin, metrics) -> version`` makes ``fit`` work: it fits a local
    twin, hands it to ``publish`` (e.g. registry publish + promote) and waits until the service
    serves that version."""

    def __init__(self, base_url: str, seed: int = 0, timeout: float = 30.0,
                 publish: Callable | None = None, twin_config=None,
                 client: httpx.Client | None = None, api_key: str | None = None):
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                              headers=headers)
        self._publish = publish
        self._twin_config = twin_config
        self._init_rollouts(seed)
        self.refresh()

    # ------------------------------------------------------------------ service info
    def refresh(self) -> dict:
        r = self._client.get("/v1/twin/model")
        self._raise(r)
        self.info = r.json()
        self.history_len = int(self.info["history"])
        self.n_actions = int(self.info["n_actions"])
        self.version = self.info["version"]
        return self.info

    @property
    def metrics(self) -> dict:
        return self.info.get("metrics", {})

    @staticmethod
    def _raise(r: httpx.Response) -> None:
        if r.status_code < 400:
            return
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        if 400 <= r.status_code < 500 and r.status_code != 404:
            raise ValueError(f"twin service refused the request ({r.status_code}): {detail}")
        raise TwinServiceError(f"twin service error {r.status_code}: {detail}")

    # ------------------------------------------------------------------ protocol
    def predict(self, states: np.ndarray, actions: np.ndarray, t: int | np.ndarray = 0,
                seed: int | None = None, sample: bool | None = None) -> dict[str, np.ndarray]:
        states = np.asarray(states, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.int64)
        if actions.ndim != 2 or actions.shape[1] < 1:
            raise ValueError(f"actions must have shape (B, L), got {actions.shape}")
        body = {"states": pack(states), "actions": pack(actions[:, -1]),
                "past_actions": pack(actions[:, :-1]), "t": int(np.asarray(t).max()),
                "seed": seed, "sample": sample, "encoding": "packed"}
        r = self._client.post("/v1/twin/step:batch", json=body)
        self._raise(r)
        raw = r.json()
        self.version = raw["model_version"]
        out = {k: unpack(**v) for k, v in raw.items() if isinstance(v, dict)}
        return {k: np.array(v) for k, v in out.items()}

    def fit(self, data, progress: bool = False) -> dict:
        if self._publish is None:
            raise NotImplementedError(
                "HttpTwin.fit needs publish=callable(twin, metrics) -> version (e.g. registry "
                "publish + promote); the service itself only serves the promoted twin")

        twin = Twin(self._twin_config or TwinConfig(**{k: v for k, v in self.info["config"].items()
                                                         if k in TwinConfig.__dataclass_fields__}))
        metrics = twin.fit(data, progress=progress)
        version = str(self._publish(twin, metrics))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.refresh()["version"] == version:
                return metrics
            time.sleep(0.05)
        raise TwinServiceError(f"service did not switch to twin version {version} within 30 s")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTwin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
