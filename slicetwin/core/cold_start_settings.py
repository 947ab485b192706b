"""The cold-start setting the controller and the trainer share (``SLICETWIN_COLD_START``,
``SLICETWIN_STATIC_SPLIT``): what is served until a trained policy has passed the gate, and
so what the first candidate must beat."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

from slicetwin.core.fallback import parse_split


class ColdStartSettings(BaseSettings):
    cold_start: Literal["proportional", "static", "init"] = Field(
        "proportional", description="served before any trained policy passed the gate: "
        "proportional = the demand-proportional heuristic, static = static_split, init = a "
        "freshly initialised (random) student (the demo, to show learning from scratch)")
    static_split: str | None = Field(None, description="cold_start=static: weights per slice "
                                     "(volte, video, urllc), e.g. 0.3,0.6,0.1")

    @field_validator("static_split", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        return None if v == "" else v

    @model_validator(mode="after")
    def _split_ok(self):
        if self.cold_start == "static":
            if not self.static_split:
                raise ValueError("cold_start=static needs static_split (e.g. 0.3,0.6,0.1)")
            w = parse_split(self.static_split)
            if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
                raise ValueError(f"static_split {self.static_split!r}: three non-negative "
                                 "weights (volte, video, urllc) with a positive sum")
        return self
