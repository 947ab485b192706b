"""The HTTP edge both services share: one error envelope, one body limit, request timing.

Every error either service answers has the same shape::

    {"error": "<kind>", "message": "<one line for a human>",
     "detail": [{"loc": [...], "msg": "...", "type": "<kind>"}, ...]}

The middlewares are pure ASGI (no ``BaseHTTPMiddleware`` task per request). The controller's
edge fuses authentication, the body limit and timing into one layer for its decision path, but
uses the same pieces: :func:`declared_length`, :func:`limited_receive` and :func:`send_error`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

JSON_TYPE = b"application/json"


class BadContentLength(ValueError):
    pass


class BodyTooLarge(Exception):
    pass


def error_body(kind: str, message: str, loc: list | None = None,
               detail: list | None = None) -> dict:
    if detail is None:
        detail = [{"loc": loc or ["body"], "msg": message, "type": kind}]
    return {"error": kind, "message": message, "detail": detail}


def error_response(status: int, kind: str, message: str, loc: list | None = None,
                   detail: list | None = None) -> JSONResponse:
    return JSONResponse(error_body(kind, message, loc, detail), status_code=status)


def validation_response(errors: list, prefix: tuple = ("body",)) -> JSONResponse:
    """422 for pydantic errors: locations, messages and types only (never the input, which may
    not even encode: 1e400, NaN)."""
    detail = [{"loc": list(prefix) + list(e.get("loc", ())), "msg": str(e.get("msg", "invalid")),
               "type": str(e.get("type", "value_error"))} for e in errors]
    first = detail[0] if detail else {"loc": list(prefix), "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"][1:]) or "body"
    more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
    return error_response(422, "validation", f"{where}: {first['msg']}{more}", detail=detail)


def request_validation_errors(errors: list) -> list:
    """FastAPI's ``RequestValidationError.errors()`` with the leading ``body`` dropped (the
    envelope adds its own prefix)."""
    return [{**e, "loc": tuple(e["loc"][1:])} if e.get("loc", ("",))[0] == "body" else e
            for e in errors]


async def send_error(send, status: int, kind: str, message: str, headers=()) -> None:
    body = json.dumps(error_body(kind, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", JSON_TYPE), (b"content-length", b"%d" % len(body)),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def declared_length(headers) -> int | None:
    """The Content-Length of ASGI ``headers`` (None: not sent, e.g. chunked)."""
    for k, v in headers:
        if k == b"content-length":
            try:
                n = int(v)
            except ValueError:
                raise BadContentLength(f"bad Content-Length header {v[:40]!r}") from None
            if n < 0:
                raise BadContentLength(f"negative Content-Length {n}")
            return n
    return None


def limited_receive(receive, limit: int):
    """``receive`` that raises :class:`BodyTooLarge` once more than ``limit`` bytes arrived (for
    bodies without a Content-Length)."""
    seen = 0

    async def wrapped():
        nonlocal seen
        msg = await receive()
        if msg["type"] == "http.request":
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise BodyTooLarge()
        return msg

    return wrapped


async def check_body_size(scope, limit: int, send, on_refused: Callable[[str], None]) -> bool:
    """Answer 400/413 for a bad or too large declared body; True when the request may go on."""
    try:
        n = declared_length(scope["headers"])
    except BadContentLength as e:
        on_refused("bad_request")
        await send_error(send, 400, "bad_request", str(e))
        return False
    if n is not None and n > limit:
        on_refused("too_large")
        await send_error(send, 413, "too_large", f"body of {n} bytes exceeds the limit of "
                         f"{limit} bytes")
        return False
    return True


class BodyLimit:
    """413 for POST bodies over ``limit`` bytes, declared or counted as they arrive.

    A body that outgrows the limit while it streams in is answered here, and the app sees a
    client disconnect (an exception raised into the app would become FastAPI's 400 for an
    unreadable body); whatever the app sends after that is dropped."""

    def __init__(self, app, limit: int, on_refused: Callable[[str], None] = lambda kind: None):
        self.app, self.limit, self.on_refused = app, limit, on_refused

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        if not await check_body_size(scope, self.limit, send, self.on_refused):
            return None
        seen, refused = 0, False

        async def counted_receive():
            nonlocal seen, refused
            msg = await receive()
            if msg["type"] == "http.request" and not refused:
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    refused = True
                    self.on_refused("too_large")
                    await send_error(send, 413, "too_large",
                                     f"body exceeds the limit of {self.limit} bytes")
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            if not refused:
                await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise


class RequestTiming:
    """Count and time every request: ``observe(route, status, seconds)`` once per response,
    ``route`` being the matched route's template (``unmatched`` for a 404)."""

    def __init__(self, app, observe: Callable[[str, int, float], None]):
        self.app, self.observe = app, observe

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def timed_send(msg):
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.observe(route, status, time.perf_counter() - t0)


KIND_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                  405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid",
                  429: "too_many_requests", 503: "unavailable"}


def install_error_envelope(app: FastAPI, count: Callable[[str], None] = lambda kind: None) -> None:
    """Answer FastAPI's validation errors and ``HTTPException``s in the one envelope;
    ``count`` sees the validation errors (a service's error counter)."""

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError):
        count("validation")
        return validation_response(request_validation_errors(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(request: Request, exc: StarletteHTTPException):
        kind = KIND_BY_STATUS.get(exc.status_code, "http_error")
        r = error_response(exc.status_code, kind, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            r.headers[k] = v
        return r
