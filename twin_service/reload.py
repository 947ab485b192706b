"""Follow ``twin`` promotions/rollbacks in the model registry and swap the served twin.

The registry (``slicetwin.registry``) serves only what the newest valid *signed promotion
record* names (never a bare ``current``), and verifies sha256 and HMAC before handing out a
blob; the holder then loads it beside the old model and smoke-tests it, so a bad model is
refused and the old one keeps serving. The watcher re-reads the records on every (re)connect,
so a missed event is recovered.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("slicetwin.twin_service")


class RegistryWatcher:
    def __init__(self, holder, registry, metrics, kind: str = "twin"):
        self.holder, self.registry, self.metrics, self.kind = holder, registry, metrics, kind
        self._watch = None
        self.last_error: str | None = None

    def load(self, version: str | None = None) -> bool:
        """Fetch (verified) and serve ``version`` (default: current). False if refused."""
        cur = self.holder.current
        if version is not None and cur is not None and cur.version == version:
            return True  # already serving it (re-sync after a reconnect)
        try:
            rec, blob, _ = self.registry.fetch_served(self.kind)
            if cur is not None and cur.version == rec.version:
                return True
            self.holder.load_blob(blob, rec.version, source=f"registry:{rec.version}",
                                  metrics=rec.metrics)
        except Exception as e:  # noqa: BLE001 - never kill the watcher; keep the old model
            self.last_error = f"{type(e).__name__}: {e}"
            self.metrics.reloads.labels("error").inc()
            log.warning("twin %s refused: %s", version, self.last_error)
            return False
        self.metrics.reloads.labels("ok").inc()
        log.info("serving twin %s", rec.version)
        return True

    def _on_change(self, version: str | None) -> None:
        if version is not None:
            self.load(version)

    async def start(self) -> None:
        self._watch = self.registry.watch(self.kind, self._on_change)
        if self.registry.authorised(self.kind) is not None and self.holder.current is None:
            await asyncio.to_thread(self.load, None)

    async def stop(self) -> None:
        if self._watch is not None:
            await asyncio.to_thread(self._watch.stop)

    async def ping(self) -> bool:
        ping = getattr(self.registry, "ping", None)
        return True if ping is None else bool(await asyncio.to_thread(ping))


def make_registry_watcher(holder, settings, metrics, registry=None) -> RegistryWatcher:
    """Watcher on ``registry`` or, by default, the Redis registry of the settings."""
    if registry is None:
        from slicetwin.registry import RedisRegistry
        from slicetwin.security import verify_keys

        # verify only: the twin service never holds the promotion private key
        registry = RedisRegistry(settings.redis_url, settings.hmac_key.get_secret_value(),
                                 settings.registry_prefix,
                                 **verify_keys(settings.hmac_key_previous,
                                               settings.promotion_public_key))
    return RegistryWatcher(holder, registry, metrics)
