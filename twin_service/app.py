"""FastAPI app factory for the twin service."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from slicetwin.model_files import check_file
from slicetwin.signing import Verifier
from twin_service.auth import BearerAuthMiddleware
from twin_service.limits import BodyLimitMiddleware
from twin_service.metrics import MetricsMiddleware, TwinMetrics
from twin_service.model import TwinHolder
from twin_service.routes import router
from twin_service.settings import TwinServiceSettings

log = logging.getLogger("slicetwin.twin_service")


def create_app(settings: TwinServiceSettings | None = None, holder: TwinHolder | None = None,
               registry=None) -> FastAPI:
    """Build the app. ``holder`` may come pre-loaded (tests, the embedded demo); otherwise the
    model file of the settings is loaded at start-up. A registry watcher follows ``twin``
    promotions on ``registry`` (e.g. the demo's in-memory one) or, when a Redis URL is
    configured, on the Redis registry."""
    settings = settings or TwinServiceSettings()
    holder = holder or TwinHolder(utility=settings.utility)
    if holder.utility is None:  # a caller's holder: later loads are checked too
        holder.utility = settings.utility
    metrics = TwinMetrics()
    holder.on_swap.append(metrics.on_swap)
    if holder.current is not None:
        metrics.on_swap(holder.current)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        if settings.model and holder.current is None:
            try:
                blob = Path(settings.model).read_bytes()
                signed = check_file(settings.model, blob, Verifier(
                    settings.promotion_public_key.split(",")), "twin", settings.allow_unsigned)
                holder.load_file(settings.model)
                metrics.model_unsigned.set(0 if signed else 1)
                metrics.reloads.labels("ok").inc()
            except Exception:
                metrics.reloads.labels("error").inc()
                raise
        w = None
        if registry is not None or settings.redis_url:
            from twin_service.reload import make_registry_watcher

            w = make_registry_watcher(holder, settings, metrics, registry)
        app.state.watcher = w
        if w is not None:
            await w.start()
        try:
            yield
        finally:
            if w is not None:
                await w.stop()

    app = FastAPI(title="SliceTwin twin service", version="1", lifespan=lifespan)
    app.state.settings, app.state.holder, app.state.metrics = settings, holder, metrics
    app.state.watcher = None
    app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the offending input, which fails to encode for 1e400/NaN
        # (a 500); keep location, message and type only
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid")),
                   "type": str(e.get("type", "value_error"))} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    # outermost: an unauthenticated body is never read
    app.add_middleware(BearerAuthMiddleware, keys=settings.api_keys, metrics=metrics,
                       metrics_auth=settings.metrics_auth)
    return app
