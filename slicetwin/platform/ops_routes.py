"""The operations routes every service has: liveness, readiness and Prometheus metrics.

A service supplies what is its own: ``readiness()`` returns a dict with a ``ready`` bool (plus any
checks it reports) and ``scrape()`` the metrics exposition. Readiness probes of dependencies go
through :func:`probe`, so a hung Redis delays a probe by at most a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

PROBE_TIMEOUT_S = 1.0


async def probe(fn: Callable[[], object], timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Run a blocking check off the event loop; False when it fails or takes over ``timeout``."""
    try:
        return bool(await asyncio.wait_for(asyncio.to_thread(fn), timeout))
    except Exception:
        return False


def ops_router(readiness: Callable[[], Awaitable[dict]], scrape: Callable[[], bytes]) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz", summary="Alive (the process answers)")
    async def healthz():
        return {"status": "ok"}

    @router.get("/readyz", summary="Ready to serve (model loaded, dependencies answer)")
    async def readyz():
        body = await readiness()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @router.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        return Response(scrape(), media_type=CONTENT_TYPE_LATEST)

    return router
