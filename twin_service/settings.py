"""Twin service settings, from environment variables (pydantic-settings)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TwinServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLICETWIN_TWIN_", extra="ignore")

    model: str | None = Field(None, description="twin model file (Twin.save) loaded at start; "
                              "env SLICETWIN_TWIN_MODEL")
    redis_url: str | None = Field(None, validation_alias=AliasChoices(
        "SLICETWIN_TWIN_REDIS_URL", "REDIS_URL"), description="registry Redis; env REDIS_URL")
    registry_prefix: str = Field("slicetwin:", validation_alias=AliasChoices(
        "SLICETWIN_TWIN_REGISTRY_PREFIX", "SLICETWIN_REGISTRY_PREFIX"))
    max_batch: int = Field(65536, ge=1, description="largest rollouts count per batch request")
    max_history: int = Field(64, ge=1, description="longest history window accepted")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps the default")
