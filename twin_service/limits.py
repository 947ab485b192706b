"""Request body size limit as pure ASGI middleware (no per-request BaseHTTPMiddleware cost)."""

from __future__ import annotations

import json


class BodyLimitMiddleware:
    """Answer 413 for bodies over ``limit`` bytes, whether or not Content-Length is sent."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    return await self._reply(send, 400, "bad Content-Length header")
                if n > self.limit:
                    return await self._reply(send, 413, f"body of {n} bytes exceeds {self.limit}")
        seen = 0
        refused = False  # we answered 413 ourselves; whatever the app sends after is dropped

        async def counted_receive():
            nonlocal seen, refused
            msg = await receive()
            if msg["type"] == "http.request" and not refused:
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    refused = True
                    await self._reply(send, 413, f"body exceeds {self.limit} bytes")
                    return {"type": "http.disconnect"}  # the app stops reading and gives up
            return msg

        async def guarded_send(msg):
            if not refused:
                await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    @staticmethod
    async def _reply(send, status: int, msg: str) -> None:
        body = json.dumps({"detail": msg}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
