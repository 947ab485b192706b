"""Follow ``twin`` promotions and rollbacks in the model registry (``TwinHolder.follow``), and
count every registry load by result."""

from __future__ import annotations

import asyncio

from slicetwin.registry.store import RedisRegistry


class RegistryWatcher:
    def __init__(self, holder, registry, metrics):
        self.holder, self.registry, self.metrics = holder, registry, metrics
        self._watch = None

    @property
    def last_error(self) -> str | None:
        return self.holder.last_error

    def load(self, version: str | None = None) -> bool:
        """Serve what the newest valid promotion record names; False (counted) if refused."""
        was = self.holder.version
        ok = self.holder.load_from_registry(self.registry, version)
        if not ok:
            self.metrics.reloads.labels("error").inc()
        elif self.holder.version != was:
            self.metrics.reloads.labels("ok").inc()
        return ok

    def _on_change(self, version: str | None) -> None:
        if version is not None:
            self.load(version)

    async def start(self) -> None:
        self._watch = self.registry.watch(self.holder.kind, self._on_change)
        if self.registry.authorised(self.holder.kind) is not None and self.holder.current is None:
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
        # verify only: the twin service never holds the promotion private key
        registry = RedisRegistry(settings.redis_url, settings.hmac_key.get_secret_value(),
                                 settings.registry_prefix,
                                 **settings.registry_verify_keys())
    return RegistryWatcher(holder, registry, metrics)
