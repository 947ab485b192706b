"""Twin service settings, from environment variables (pydantic-settings).

Own variables use the ``SLICETWIN_TWIN_`` prefix; the registry connection also reads the names
the controller uses (``SLICETWIN_REDIS_URL`` / ``REDIS_URL``, ``SLICETWIN_HMAC_KEY``,
``SLICETWIN_REGISTRY_PREFIX``) so one environment configures the whole system.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import NoDecode, SettingsConfigDict

from slicetwin.utility import UtilityConfig
from slicetwin.utility_settings import UtilityWeightsSettings

_UTILITY = UtilityConfig()  # the one set of defaults (slicetwin.utility)


class TwinServiceSettings(UtilityWeightsSettings):
    model_config = SettingsConfigDict(env_prefix="SLICETWIN_TWIN_", extra="ignore",
                                      populate_by_name=True)

    model: str | None = Field(None, description="twin model file (Twin.save) loaded at start; "
                              "env SLICETWIN_TWIN_MODEL")
    redis_url: str | None = Field(None, validation_alias=AliasChoices(
        "redis_url", "SLICETWIN_TWIN_REDIS_URL", "SLICETWIN_REDIS_URL", "REDIS_URL"),
        description="registry Redis; reload on 'twin' promotions when set")
    registry_prefix: str = Field("slicetwin:", validation_alias=AliasChoices(
        "registry_prefix", "SLICETWIN_TWIN_REGISTRY_PREFIX", "SLICETWIN_REGISTRY_PREFIX"))
    hmac_key: SecretStr = Field(SecretStr("slicetwin-dev-key-change-me"), validation_alias=
                                AliasChoices("hmac_key", "SLICETWIN_TWIN_HMAC_KEY",
                                             "SLICETWIN_HMAC_KEY"),
                                description="shared registry signing key")
    max_body_bytes: int = Field(64 * 2**20, gt=0, description="larger request bodies get 413")
    max_batch: int = Field(65536, ge=1, description="largest rollouts count per batch request")
    max_history: int = Field(64, ge=1, description="longest history window accepted")
    torch_threads: int = Field(1, ge=0, description="torch intra-op threads (0: torch default); "
                               "1 is fastest on a shared 2-core CPU")
    utility_alpha: float = Field(_UTILITY.alpha, validation_alias=AliasChoices(
        "utility_alpha", "SLICETWIN_TWIN_UTILITY_ALPHA", "SLICETWIN_UTILITY_ALPHA"),
        description="SE weight of the utility; a twin computing it with other weights is refused")
    utility_beta: Annotated[tuple[float, ...], NoDecode] = Field(
        _UTILITY.beta, validation_alias=AliasChoices(
            "utility_beta", "SLICETWIN_TWIN_UTILITY_BETA", "SLICETWIN_UTILITY_BETA"),
        description="SLA weights per slice, '1,4,6' or '[1, 4, 6]' (as the controller's)")
