"""The controller's edge: one pure-ASGI middleware in front of the app.

It does what the platform's edge pieces do (bearer key, body limit, request timing, the one
error envelope), fused into a single layer for the decision path, and it dispatches the
decision POSTs straight to their handlers (``controller.handlers``), skipping the router and
FastAPI's request machinery on the hot path.
"""

from __future__ import annotations

import time

from controller.metrics import ENDPOINTS, ControllerMetrics
from controller.settings import ControllerSettings
from slicetwin.platform.http import (
    JSON_TYPE,
    BadContentLength,
    BodyTooLarge,
    declared_length,
    limited_receive,
    send_error,
)
from slicetwin.platform.http_auth import BearerKeys, unauthorized_message


class Edge:
    def __init__(self, app, metrics: ControllerMetrics, settings: ControllerSettings,
                 fast: dict | None = None):
        self.app, self.m = app, metrics
        self.limit = settings.max_body_bytes
        self.keys = BearerKeys(settings.api_keys)
        self.metrics_auth = settings.metrics_auth and self.keys.enabled
        self.fast = fast or {}
        self._count_children: dict[tuple[str, int], object] = {}

    def _requests_child(self, endpoint: str, status: int):
        c = self._count_children.get((endpoint, status))
        if c is None:
            c = self._count_children[(endpoint, status)] = self.m.requests.labels(
                endpoint, str(status))
        return c

    async def _refuse(self, send, reason: str) -> None:
        self.m.auth_refused.labels(reason).inc()
        await self._reply(send, 401, "unauthorized", unauthorized_message(reason),
                          [(b"www-authenticate", b"Bearer")])

    async def _reply(self, send, status: int, kind: str, message: str, headers=()) -> None:
        self.m.errors.labels(kind).inc()
        await send_error(send, status, kind, message, headers)

    @staticmethod
    async def _dispatch(handler, receive, send) -> None:
        """Read the whole body, run ``handler`` on it, send its answer."""
        msg = await receive()
        if msg["type"] != "http.request":
            return  # client went away
        body = msg.get("body", b"")
        if msg.get("more_body", False):
            parts = [body]
            while True:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                parts.append(msg.get("body", b""))
                if not msg.get("more_body", False):
                    break
            body = b"".join(parts)
        r = handler(body)
        if isinstance(r, bytes):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", JSON_TYPE),
                                    (b"content-length", b"%d" % len(r))]})
            await send({"type": "http.response.body", "body": r})
        else:
            await send({"type": "http.response.start", "status": r.status_code,
                        "headers": r.raw_headers})
            await send({"type": "http.response.body", "body": r.body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else None
        status_box = [500]

        async def send_wrapped(msg):
            if msg["type"] == "http.response.start":
                status_box[0] = msg["status"]
            await send(msg)
            if endpoint is not None and msg["type"] == "http.response.body" and not msg.get(
                    "more_body"):
                self.m.latency_children[endpoint].observe(time.perf_counter() - t0)
                self._requests_child(endpoint, status_box[0]).inc()

        if scope["method"] == "POST":
            return await self._post(scope, receive, send_wrapped, path)
        if self.metrics_auth and path == "/metrics":
            reason = self.keys.refusal(scope["headers"])
            if reason is not None:
                return await self._refuse(send_wrapped, reason)
        return await self.app(scope, receive, send_wrapped)

    async def _post(self, scope, receive, send, path: str):
        headers = scope["headers"]
        if self.keys.enabled:
            reason = self.keys.refusal(headers)
            if reason is not None:
                return await self._refuse(send, reason)
        try:
            n = declared_length(headers)
        except BadContentLength as e:
            return await self._reply(send, 400, "bad_request", str(e))
        if n is not None and n > self.limit:
            return await self._reply(send, 413, "too_large", f"body of {n} bytes exceeds the "
                                     f"limit of {self.limit} bytes")
        if n is None:  # chunked: count as it arrives
            receive = limited_receive(receive, self.limit)
        handler = self.fast.get(path)
        try:
            if handler is not None:
                return await self._dispatch(handler, receive, send)
            return await self.app(scope, receive, send)
        except BodyTooLarge:
            return await self._reply(send, 413, "too_large",
                                     f"body exceeds the limit of {self.limit} bytes")
