"""The operator's utility weights as settings: one set of validators for every service.

Each service declares its own ``utility_alpha`` / ``utility_beta`` fields (names and aliases
differ); inheriting ``UtilityWeightsSettings`` instead of ``BaseSettings`` gives them the shared
parsing (empty = default, beta as "1,4,6" or a JSON list, validated) and the ``utility``
property.
"""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings

from slicetwin.core.utility import UtilityConfig, check_alpha, check_beta

DEFAULT_UTILITY = UtilityConfig()  # the one set of defaults (slicetwin.core.utility)


class UtilityWeightsSettings(BaseSettings):
    @field_validator("utility_alpha", mode="before", check_fields=False)
    @classmethod
    def _alpha_empty_is_default(cls, v):
        return DEFAULT_UTILITY.alpha if isinstance(v, str) and not v.strip() else v

    @field_validator("utility_alpha", check_fields=False)
    @classmethod
    def _alpha(cls, v):
        return check_alpha(v)

    @field_validator("utility_beta", mode="before", check_fields=False)
    @classmethod
    def _beta(cls, v):
        return DEFAULT_UTILITY.beta if isinstance(v, str) and not v.strip() else check_beta(v)

    @property
    def utility(self) -> UtilityConfig:
        return UtilityConfig(alpha=self.utility_alpha, beta=self.utility_beta)
