"""Thin routers: parse -> validate into numpy -> ``twin.predict`` -> schema. Dependencies
(the model holder, metrics, settings) are injected from ``app.state``."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request

from slicetwin.twin.wire import pack, unpack
from twin_service.metrics import TwinMetrics
from twin_service.model import LoadedTwin, TwinHolder, model_info
from twin_service.schemas import (
    BatchRequest,
    BatchResponse,
    ModelInfo,
    PackedArray,
    StepRequest,
    StepResponse,
)
from twin_service.settings import TwinServiceSettings

router = APIRouter()


def get_holder(request: Request) -> TwinHolder:
    return request.app.state.holder


def get_metrics(request: Request) -> TwinMetrics:
    return request.app.state.metrics


def get_settings(request: Request) -> TwinServiceSettings:
    return request.app.state.settings


def loaded_twin(holder: TwinHolder = Depends(get_holder)) -> LoadedTwin:
    cur = holder.current
    if cur is None:
        raise HTTPException(503, "no twin model loaded yet (set SLICETWIN_TWIN_MODEL or publish "
                                 "a 'twin' model to the registry)")
    return cur


def _bad(msg: str) -> HTTPException:
    return HTTPException(422, msg)


def _array(value, name: str, dtype) -> np.ndarray:
    try:
        if isinstance(value, PackedArray):
            return unpack(value.dtype, value.shape, value.data).astype(dtype, copy=False)
        return np.asarray(value, dtype=dtype)
    except (ValueError, OverflowError) as e:  # ragged lists, bad packing, int beyond int64
        raise _bad(f"{name}: {e}") from e


def _validate(states: np.ndarray, actions: np.ndarray, past: np.ndarray | None,
              twin, settings: TwinServiceSettings) -> tuple[np.ndarray, np.ndarray]:
    """(B, L, 3) states, (B,) actions, (B, L-1) past actions -> predict() inputs, or a 4xx."""
    if states.ndim != 3 or states.shape[1] == 0:
        if states.ndim == 3 or (states.ndim == 2 and states.shape[-1] == 0) or states.size == 0:
            raise _bad("history is empty: each rollout needs at least its current state")
        raise _bad(f"states must be a (B, L, 3) array of history windows, got shape "
                   f"{list(states.shape)}")
    b, length, width = states.shape
    if width != 3:
        raise _bad(f"wrong state width: each state has 3 entries (volte, video, urllc), got {width}")
    if b > settings.max_batch:
        raise _bad(f"batch of {b} rollouts exceeds max_batch {settings.max_batch}")
    if length > settings.max_history:
        raise _bad(f"history of {length} windows exceeds max_history {settings.max_history}")
    if not np.isfinite(states).all():
        raise _bad("states contain NaN or infinity")
    if actions.shape != (b,):
        raise _bad(f"actions must have one entry per rollout: expected ({b},), got "
                   f"{list(actions.shape)}")
    n = twin.n_actions
    bad = (actions < 0) | (actions >= n)
    if bad.any():
        raise _bad(f"unknown action index {int(actions[bad][0])}: valid indices are 0..{n - 1}")
    if past is None:
        past = np.full((b, length - 1), -1, np.int64)
    elif past.shape != (b, length - 1):
        raise _bad(f"past_actions must have shape ({b}, {length - 1}) (one per earlier state), "
                   f"got {list(past.shape)}")
    elif ((past < -1) | (past >= n)).any():
        raise _bad(f"unknown action index in past_actions: valid indices are 0..{n - 1} "
                   "(-1 = unknown)")
    return states, np.concatenate([past, actions[:, None]], axis=1)


def _predict(cur: LoadedTwin, states, acts, t, seed, sample, metrics: TwinMetrics) -> dict:
    try:
        out = cur.model.predict(states, acts, t=t, seed=seed, sample=sample)
    except (ValueError, OverflowError) as e:  # e.g. t or seed beyond what numpy takes
        raise _bad(str(e)) from e
    metrics.steps.inc(len(states))
    metrics.batch_rows.observe(len(states))
    return out


@router.post("/v1/twin/step", response_model=StepResponse)
async def step(req: StepRequest, cur: LoadedTwin = Depends(loaded_twin),
               metrics: TwinMetrics = Depends(get_metrics),
               settings: TwinServiceSettings = Depends(get_settings)) -> StepResponse:
    """One rollout, one window: history window of states + action -> next state and reward."""
    states = _array([req.states], "states", np.float32)
    past = None if req.past_actions is None else _array([req.past_actions], "past_actions",
                                                         np.int64)
    states, acts = _validate(states, _array([req.action], "action", np.int64), past, cur.model,
                             settings)
    out = _predict(cur, states, acts, req.t, req.seed, req.sample, metrics)
    return StepResponse(
        model_version=cur.version, next_state=out["next_state"][0].tolist(),
        reward=float(out["reward"][0]), utility=float(out["utility"][0]),
        uncertainty=float(out["uncertainty"][0]),
        kpis={"arrived": out["arrived"][0].tolist(), "sla_met": out["sla_met"][0].tolist(),
              "ssr": out["ssr"][0].tolist(), "se": float(out["se"][0])})


@router.post("/v1/twin/step:batch", response_model=BatchResponse)
async def step_batch(req: BatchRequest, cur: LoadedTwin = Depends(loaded_twin),
                     metrics: TwinMetrics = Depends(get_metrics),
                     settings: TwinServiceSettings = Depends(get_settings)) -> BatchResponse:
    """Many rollouts per request; send ``PackedArray`` fields and ``encoding: packed`` for speed."""
    states = _array(req.states, "states", np.float32)
    actions = _array(req.actions, "actions", np.int64)
    past = None if req.past_actions is None else _array(req.past_actions, "past_actions",
                                                        np.int64)
    if states.ndim == 1 and states.size == 0:
        raise _bad("states is empty: send at least one rollout")
    states, acts = _validate(states, actions, past, cur.model, settings)
    out = _predict(cur, states, acts, req.t, req.seed, req.sample, metrics)
    enc = pack if req.encoding == "packed" else (lambda a: a.tolist())
    keys = ("next_state", "reward", "utility", "uncertainty", "arrived", "sla_met", "ssr", "se")
    return BatchResponse(model_version=cur.version, n=len(states),
                         **{k: enc(out[k]) for k in keys})


@router.get("/v1/twin/model", response_model=ModelInfo)
async def model(cur: LoadedTwin = Depends(loaded_twin)) -> ModelInfo:
    """Served model: version, shapes, held-out fit metrics (calibration error)."""
    return ModelInfo(**model_info(cur))
