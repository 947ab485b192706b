"""Pydantic schemas at the HTTP edge of the twin service.

States are the normalised per-slice arrivals of ``slicetwin.core.state`` (order VoLTE, video, URLLC).
A history window lists states oldest first with the current state last; ``past_actions`` are
the actions applied after each earlier state (-1 where unknown), and ``action`` the allocation
to apply now (index into the action codec).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PackedArray(BaseModel):
    """A numpy array as base64 of its little-endian C-order bytes (see slicetwin.twin.wire)."""

    model_config = ConfigDict(extra="forbid")
    dtype: Literal["float32", "float64", "int32", "int64"]
    shape: list[int]
    data: str


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    states: list[list[float]] = Field(..., description="history window (L, 3), current state last")
    action: int = Field(..., description="action index applied now")
    past_actions: list[int] | None = Field(None, description="(L-1) actions after each past state")
    t: int = Field(0, ge=0, description="step index for the reward shaper's rising threshold")
    seed: int | None = Field(None, ge=0, description="sampling seed (reproducible draws)")
    sample: bool | None = Field(None, description="sample (true) or ensemble mean (false)")


class StepKPIs(BaseModel):
    arrived: list[float]
    sla_met: list[float]
    ssr: list[float]
    se: float


class StepResponse(BaseModel):
    model_version: str
    next_state: list[float]
    reward: float
    utility: float
    uncertainty: float
    kpis: StepKPIs


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    states: list[list[list[float]]] | PackedArray = Field(..., description="(B, L, 3) windows")
    actions: list[int] | PackedArray = Field(..., description="(B,) actions applied now")
    past_actions: list[list[int]] | PackedArray | None = Field(None, description="(B, L-1)")
    t: int = Field(0, ge=0)
    seed: int | None = Field(None, ge=0)
    sample: bool | None = None
    encoding: Literal["json", "packed"] = Field("json", description="encoding of the answer")


class BatchResponse(BaseModel):
    model_version: str
    n: int
    next_state: list[list[float]] | PackedArray
    reward: list[float] | PackedArray
    utility: list[float] | PackedArray
    uncertainty: list[float] | PackedArray
    arrived: list[list[float]] | PackedArray
    sla_met: list[list[float]] | PackedArray
    ssr: list[list[float]] | PackedArray
    se: list[float] | PackedArray


class ModelInfo(BaseModel):
    version: str
    source: str
    loaded_at: float
    history: int
    ensemble: int
    n_actions: int
    n_units: int
    state_dim: int
    reward_source: str
    calibration_error: float | None = Field(None, description="held-out interval calibration "
                                            "error of the next-state distribution (0 = perfect)")
    next_state_rmse: float | None = None
    persistence_rmse: float | None = None
    metrics: dict
    config: dict
    utility: dict = Field(default_factory=dict, description="the twin's utility weights "
                          "{alpha, beta}: the service's settings (a twin for others is refused)")
