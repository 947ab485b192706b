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


def unauthorized_body(reason: str) -> bytes:
    msg = ("missing bearer API key (send 'Authorization: Bearer <key>')" if reason == "missing"
           else "wrong bearer API key")
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
