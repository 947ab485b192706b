"""The controller's documented routes. The decision POSTs are answered by the edge's direct
dispatch (``controller.edge``); these routes carry their OpenAPI documentation and answer the
same way when called through the router (e.g. a test client mounted without the edge)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from controller.handlers import DecisionHandlers
from controller.kpm import KpmReport
from controller.parts import Parts
from controller.schemas import COLUMNAR_ADAPTER
from slicetwin.core.schemas import Decision, KPIReport


class BatchRequest(BaseModel):
    reports: list[KPIReport] = Field(min_length=1)


class BatchResponse(BaseModel):
    decisions: list[Decision]


def get_handlers(request: Request) -> DecisionHandlers:
    return request.app.state.handlers


def get_parts(request: Request) -> Parts:
    return request.app.state.parts


HandlersDep = Annotated[DecisionHandlers, Depends(get_handlers)]
PartsDep = Annotated[Parts, Depends(get_parts)]


def _doc_body(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def _answer(r: bytes | Response) -> Response:
    return Response(r, media_type="application/json") if isinstance(r, bytes) else r


decisions = APIRouter(tags=["decisions"])


@decisions.post("/v1/reports", summary="One KPI report -> allocation for the next window",
                responses={200: {"model": Decision}, 409: {"description": "duplicate window"},
                           422: {"description": "invalid report"}},
                openapi_extra=_doc_body(KPIReport))
async def post_report(request: Request, handlers: HandlersDep):
    return _answer(handlers.report(await request.body()))


@decisions.post("/v1/reports:batch", summary="Many cells' reports -> allocations, in order",
                responses={200: {"model": BatchResponse}}, openapi_extra=_doc_body(BatchRequest))
async def post_batch(request: Request, handlers: HandlersDep):
    return _answer(handlers.batch(await request.body()))


@decisions.post("/v1/reports:columns", summary="Many cells' reports as columns -> decisions as "
                "columns (the high-throughput form of the batch endpoint)",
                openapi_extra={"requestBody": {"required": True, "content": {
                    "application/json": {"schema": COLUMNAR_ADAPTER.json_schema()}}}})
async def post_columns(request: Request, handlers: HandlersDep):
    return _answer(handlers.columns(await request.body()))


@decisions.post("/v1/e2/kpm", summary="E2SM-KPM-style report -> RRMPolicyRatio per S-NSSAI",
                openapi_extra=_doc_body(KpmReport), tags=["o-ran"])
async def post_kpm(request: Request, handlers: HandlersDep):
    return _answer(handlers.kpm(await request.body()))


policy = APIRouter(tags=["ops"])


@policy.get("/v1/policy", summary="The policy in service")
async def get_policy(parts: PartsDep):
    holder, p = parts.holder, parts.holder.policy
    return {"version": holder.version, "origin": holder.origin, "loaded_at": holder.loaded_at,
            "swaps": holder.swaps, "rejected": holder.rejected, "last_error": holder.last_error,
            "n_actions": p.n_actions if p else parts.codec.n_actions,
            "sha256": p.info.sha256 if p else None,
            "metadata": p.info.metadata if p else {},
            "utility": parts.settings.utility.as_dict(),
            "reward": parts.settings.reward_shaper.as_dict()}


def documented_schemas(app) -> None:
    """Put the request models' schemas in the OpenAPI document (the routes read raw bytes)."""
    base = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = base()
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (KPIReport, BatchRequest, KpmReport):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for k, v in js.pop("$defs", {}).items():
                    comps.setdefault(k, v)
                comps[model.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
