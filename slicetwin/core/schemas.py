"""KPI report and allocation schemas shared by the simulator (fake gNB) and the controller.

See docs/api.md for units and O-RAN equivalents.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slicetwin.core.slices import DEFAULT_SLICES, N_SLICES, slice_index


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SliceKPI(_Strict):
    slice: str = Field(description="slice name (volte, video, urllc) or S-NSSAI (e.g. 1-000001)")
    arrived_packets: int = Field(ge=0, le=10**9)
    delivered_packets: int = Field(ge=0, le=10**9)
    sla_met_packets: int = Field(ge=0, le=10**9)
    throughput_bps: float = Field(ge=0, le=1e13)
    spectral_efficiency: float = Field(ge=0, le=1e4, description="bit/s/Hz over the whole carrier")
    latency_mean_ms: float | None = Field(default=None, ge=0, le=1e7)
    latency_p95_ms: float | None = Field(default=None, ge=0, le=1e7)

    @model_validator(mode="after")
    def _counts_consistent(self) -> SliceKPI:
        if self.sla_met_packets > self.delivered_packets:
            raise ValueError("sla_met_packets cannot exceed delivered_packets")
        return self


class SliceAllocation(_Strict):
    slice: str
    bandwidth_hz: float = Field(ge=0, le=1e10)
    prb_ratio: float = Field(ge=0, le=1)

    @field_validator("bandwidth_hz", "prb_ratio")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v


class KPIReport(_Strict):
    cell_id: str = Field(min_length=1, max_length=128)
    window: int = Field(ge=0, le=2**53 - 1, description="window counter, strictly increasing per "
                        "cell (at most 2^53 - 1: exact as a float, in Lua and in JSON)")
    window_ms: float = Field(default=200.0, gt=0, le=60_000)
    allocation: list[SliceAllocation] | None = Field(
        default=None, description="allocation in force during the window"
    )
    slices: list[SliceKPI] = Field(min_length=N_SLICES, max_length=N_SLICES)

    @field_validator("slices")
    @classmethod
    def _one_per_slice(cls, v: list[SliceKPI]) -> list[SliceKPI]:
        seen: dict[int, str] = {}
        for k in v:
            i = slice_index(k.slice)  # raises UnknownSliceError (a ValueError) with the known list
            if i in seen:
                raise ValueError(f"slice {k.slice!r} reported twice")
            seen[i] = k.slice
        missing = [s.name for j, s in enumerate(DEFAULT_SLICES) if j not in seen]
        if missing:
            raise ValueError(f"missing slices: {', '.join(missing)}")
        return sorted(v, key=lambda k: slice_index(k.slice))


class Decision(_Strict):
    """The controller's answer for one report: the allocation to apply in the next window."""

    cell_id: str
    window: int = Field(description="the report's window; the allocation applies to window + 1")
    decision_id: str
    policy_version: str = Field(description="model version, or 'fallback'")
    fallback: bool = Field(description="true when the demand-proportional fallback decided")
    explored: bool = Field(default=False, description="true when epsilon exploration decided")
    action: int | None = Field(default=None, description="action index (ActionCodec order)")
    allocation: list[SliceAllocation]
    degraded: Literal["cell_store"] | None = Field(
        default=None, description="present only when the answer was made without the shared "
        "cell memory (Redis unreachable): 'cell_store', the window order checked against this "
        "replica's cache, the transition held until Redis is back")
