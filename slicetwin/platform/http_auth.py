"""Bearer-key check for the services' pure-ASGI middlewares (constant time, rotation-aware).

Refusals are answered 401 with ``WWW-Authenticate: Bearer`` and a JSON body; the caller counts
them (``reason``: ``missing`` or ``wrong``) so an operator sees credential trouble on /metrics.
"""

from __future__ import annotations

import hmac
import json


class BearerKeys:
    """The accepted keys (current and, during a rotation, the previous one)."""

    def __init__(self, keys: list[str]):
        self.expected = [f"Bearer {k}".encode() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self.expected)

    def refusal(self, headers) -> str | None:
        """None when ``headers`` (ASGI pairs) carry an accepted key, else ``missing``/``wrong``."""
        got = None
        for k, v in headers:
            if k == b"authorization":
                got = v
                break
        if got is None:
            return "missing"
        ok = False
        for e in self.expected:  # every key compared, in constant time each
            ok |= hmac.compare_digest(got, e)
        return None if ok else "wrong"


def unauthorized_message(reason: str) -> str:
    return ("missing bearer API key (send 'Authorization: Bearer <key>')" if reason == "missing"
            else "wrong bearer API key")


def unauthorized_body(reason: str) -> bytes:
    msg = unauthorized_message(reason)
    return json.dumps({"error": "unauthorized", "message": msg,
                       "detail": [{"loc": ["header", "authorization"], "msg": msg,
                                   "type": "unauthorized"}]}).encode()


async def send_unauthorized(send, reason: str) -> None:
    body = unauthorized_body(reason)
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(body)),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """Pure ASGI middleware: every path but ``open_paths`` (and ``/metrics`` unless
    ``metrics_auth``) needs an accepted bearer key; refusals are 401s, counted by reason."""

    def __init__(self, app, keys: list[str], on_refused=lambda reason: None,
                 open_paths: tuple[str, ...] = ("/healthz", "/readyz"),
                 metrics_auth: bool = False):
        self.app, self.keys, self.on_refused = app, BearerKeys(keys), on_refused
        self.open_paths, self.metrics_auth = open_paths, metrics_auth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.keys.enabled:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in self.open_paths or (path == "/metrics" and not self.metrics_auth):
            return await self.app(scope, receive, send)
        reason = self.keys.refusal(scope.get("headers", ()))
        if reason is None:
            return await self.app(scope, receive, send)
        self.on_refused(reason)
        await send_unauthorized(send, reason)
