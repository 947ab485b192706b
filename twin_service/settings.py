"""Twin service settings, from environment variables (pydantic-settings).

Own variables use the ``SLICETWIN_TWIN_`` prefix; the registry connection also reads the names
the controller uses (``SLICETWIN_REDIS_URL`` / ``REDIS_URL``, ``SLICETWIN_HMAC_KEY``,
``SLICETWIN_PROMOTION_PUBLIC_KEY``, ``SLICETWIN_REGISTRY_PREFIX``) so one environment configures
the whole system. Outside ``SLICETWIN_ENV=dev`` it needs ``SLICETWIN_TWIN_API_KEY`` and, with
Redis, non-public registry keys (``slicetwin.platform.security``).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from slicetwin.core.utility import UtilityConfig
from slicetwin.core.utility_settings import UtilityWeightsSettings
from slicetwin.platform.security import SecureSettings, ServedModelSecrets, registry_connection

_UTILITY = UtilityConfig()  # the one set of defaults (slicetwin.core.utility)


class TwinServiceSettings(UtilityWeightsSettings, ServedModelSecrets, SecureSettings,
                          registry_connection("SLICETWIN_TWIN_", verify=True,
                                              redis_url_names=("REDIS_URL",))):
    model_config = SettingsConfigDict(env_prefix="SLICETWIN_TWIN_", extra="ignore",
                                      populate_by_name=True)
    API_KEY_VAR: ClassVar[str] = "SLICETWIN_TWIN_API_KEY"

    model: str | None = Field(None, description="twin model file (Twin.save) loaded at start; "
                              "env SLICETWIN_TWIN_MODEL; needs <file>.sig unless allow_unsigned")
    allow_unsigned: bool = Field(False, description="load an unsigned model file anyway "
                                 "(logged, and slicetwin_twin_model_unsigned = 1)")
    api_key: SecretStr | None = Field(None, description="bearer key required on /v1/twin/* "
                                      "(env SLICETWIN_TWIN_API_KEY; required outside dev)")
    api_key_previous: SecretStr | None = Field(None, description="also accepted (rotation)")
    metrics_auth: bool = Field(False, description="require the bearer key on GET /metrics too")
    max_body_bytes: int = Field(8 * 2**20, gt=0, description="larger request bodies get 413 "
                                "(8 MiB: a packed batch of 4,096 rollouts x 64 windows)")
    max_batch: int = Field(8192, ge=1, description="largest rollouts count per batch request")
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

    @field_validator("api_key", "api_key_previous", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        return None if v == "" else v


