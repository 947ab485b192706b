"""FastAPI app factory for the twin service: the platform's edge and ops routes around its own
routes (``twin_service.routes``) and model holder."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import generate_latest

from slicetwin.core.signing import Verifier
from slicetwin.platform.http import BodyLimit, RequestTiming, install_error_envelope
from slicetwin.platform.http_auth import BearerAuth
from slicetwin.platform.ops_routes import ops_router
from slicetwin.registry.model_files import check_file
from twin_service.metrics import TwinMetrics
from twin_service.model import TwinHolder
from twin_service.reload import make_registry_watcher
from twin_service.routes import router
from twin_service.settings import TwinServiceSettings

log = logging.getLogger("slicetwin.twin_service")


def _set_torch_threads(n: int) -> None:
    import torch  # lazy: torch, the service's one heavy dependency, on start-up only

    torch.set_num_threads(n)


def _load_model_file(holder: TwinHolder, settings: TwinServiceSettings,
                     metrics: TwinMetrics) -> None:
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
            _set_torch_threads(settings.torch_threads)
        if settings.model and holder.current is None:
            _load_model_file(holder, settings, metrics)
        w = None
        if registry is not None or settings.redis_url:
            w = make_registry_watcher(holder, settings, metrics, registry)
        app.state.watcher = w
        if w is not None:
            await w.start()
        try:
            yield
        finally:
            if w is not None:
                await w.stop()

    async def readiness() -> dict:
        """Ready when a model is loaded and, with a registry configured, Redis answers."""
        checks = {"model_loaded": holder.current is not None}
        if app.state.watcher is not None:
            checks["registry"] = await app.state.watcher.ping()
        return {"ready": all(checks.values()), "checks": checks,
                "model_version": holder.version}

    app = FastAPI(title="SliceTwin twin service", version="1", lifespan=lifespan)
    app.state.settings, app.state.holder, app.state.metrics = settings, holder, metrics
    app.state.watcher = None
    app.include_router(router)
    app.include_router(ops_router(readiness, lambda: generate_latest(metrics.registry)))

    install_error_envelope(app)
    app.add_middleware(RequestTiming, observe=metrics.observe)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # outermost: an unauthenticated body is never read
    app.add_middleware(BearerAuth, keys=settings.api_keys,
                       on_refused=lambda reason: metrics.auth_refused.labels(reason).inc(),
                       open_paths=("/healthz", "/readyz"), metrics_auth=settings.metrics_auth)
    return app
