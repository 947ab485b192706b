"""Bearer-key middleware of the twin service (pure ASGI).

Every ``/v1/twin/*`` route needs the key (a rollout is CPU the caller spends on our machine,
and the model's answers describe the network); ``/healthz`` and ``/readyz`` stay open for
orchestrators, ``/metrics`` too unless ``metrics_auth``. Refusals: 401, counted by reason.
"""

from __future__ import annotations

from slicetwin.http_auth import BearerKeys, send_unauthorized

OPEN_PATHS = ("/healthz", "/readyz")


class BearerAuthMiddleware:
    def __init__(self, app, keys: list[str], metrics, metrics_auth: bool = False):
        self.app, self.keys, self.metrics = app, BearerKeys(keys), metrics
        self.metrics_auth = metrics_auth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.keys.enabled:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in OPEN_PATHS or (path == "/metrics" and not self.metrics_auth):
            return await self.app(scope, receive, send)
        reason = self.keys.refusal(scope.get("headers", ()))
        if reason is None:
            return await self.app(scope, receive, send)
        self.metrics.auth_refused.labels(reason).inc()
        await send_unauthorized(send, reason)
