"""Secure defaults: development mode and the start-up check that refuses public secrets.

Every secret has a *public* development value (the HMAC key, the promotion key pair) or none
(the API keys), so that ``slicetwin demo`` and the tests run with zero configuration. Outside
development mode (``SLICETWIN_ENV=dev``, which the demo sets for itself) a service refuses to
start with such a value: :class:`SecureSettings` (the base of every service's settings, the
FastAPI full-stack template's pattern) checks the secrets each service names in
``required_secrets``. The error says how to make keys (``slicetwin keys init``).
"""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from slicetwin.core.signing import (
    DEV_HMAC_KEY,
    DEV_PROMOTION_KEY,
    DEV_PROMOTION_PUBLIC_KEY,
    parse_public_keys,
)
from slicetwin.platform.redis_client import cluster_nodes, is_cluster_url, is_redis_url

ENV_VAR = "SLICETWIN_ENV"
DEV_VALUES = ("dev", "development")
MIN_SECRET_CHARS = 16
PUBLIC_SECRETS = frozenset({DEV_HMAC_KEY, DEV_PROMOTION_KEY, DEV_PROMOTION_PUBLIC_KEY})
KEYS_HINT = ("Create fresh keys with `slicetwin keys init` (writes .env for docker compose; "
             "`set -a; . ./.env; set +a` loads it into a shell), or set SLICETWIN_ENV=dev for "
             "local development only.")


def is_dev(value: str | None = None) -> bool:
    """Development mode: ``SLICETWIN_ENV`` (or ``value``) is dev/development."""
    v = os.environ.get(ENV_VAR, "") if value is None else value
    return v.strip().lower() in DEV_VALUES


def _plain(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, SecretStr):
        v = v.get_secret_value()
    return str(v)


def secret_problems(items: list[tuple[str, object, bool]]) -> list[str]:
    """``(variable, value, required)`` -> one line per secret that must not be used outside
    development: unset (when required), a public development value, or too short."""
    out = []
    for name, value, required in items:
        v = _plain(value)
        if not v:
            if required:
                out.append(f"{name} is not set")
            continue
        parts = [p.strip() for p in v.split(",")] if "PUBLIC_KEY" in name else [v]
        if any(p in PUBLIC_SECRETS for p in parts):
            out.append(f"{name} is the public development key")
        elif "PUBLIC_KEY" not in name and len(v) < MIN_SECRET_CHARS:
            out.append(f"{name} is shorter than {MIN_SECRET_CHARS} characters")
    return out


def refuse_message(service: str, problems: list[str]) -> str:
    return (f"{service} refuses to start outside development mode:\n  "
            + "\n  ".join(problems) + "\n" + KEYS_HINT)


class SecureSettings(BaseSettings):
    """Base of the services' settings: ``env`` and the refusal of public secrets.

    Subclasses implement ``required_secrets()`` -> ``[(VARIABLE, value, required), ...]``.
    """

    model_config = SettingsConfigDict(populate_by_name=True)

    env: str = Field("production", validation_alias=AliasChoices(ENV_VAR),
                     description="dev: allow the public development keys and no API key "
                     "(the demo, tests); anything else is production")

    @property
    def dev(self) -> bool:
        return is_dev(self.env)

    def required_secrets(self) -> list[tuple[str, object, bool]]:
        return []

    @model_validator(mode="after")
    def _refuse_public_secrets(self):
        if not self.dev:
            problems = secret_problems(self.required_secrets())
            if problems:
                raise ValueError(refuse_message(type(self).__name__, problems))
        return self


class ServedModelSecrets(BaseSettings):
    """The secrets of a service that serves promoted models behind a bearer key (controller,
    twin service): its API key (and the previous one during a rotation) always, the registry's
    HMAC and promotion public keys when it reads models from Redis. ``API_KEY_VAR`` names the
    service's key variable. Put it before ``SecureSettings`` in the bases."""

    API_KEY_VAR: ClassVar[str] = "SLICETWIN_API_KEY"

    def required_secrets(self) -> list[tuple[str, object, bool]]:
        out = [(self.API_KEY_VAR, self.api_key, True),
               (f"{self.API_KEY_VAR}_PREVIOUS", self.api_key_previous, False)]
        if self.redis_url:
            out += [("SLICETWIN_HMAC_KEY", self.hmac_key, True),
                    ("SLICETWIN_HMAC_KEY_PREVIOUS", self.hmac_key_previous, False),
                    ("SLICETWIN_PROMOTION_PUBLIC_KEY", self.promotion_public_key, True)]
        return out

    @property
    def api_keys(self) -> list[str]:
        """Accepted bearer keys, current first (empty: no authentication, dev only)."""
        return [k.get_secret_value() for k in (self.api_key, self.api_key_previous) if k]


def verify_keys(hmac_previous: SecretStr | None, public_keys: str) -> dict:
    """Registry keyword arguments of a service that verifies but never signs."""
    prev = _plain(hmac_previous)
    return {"promotion_key": None, "promotion_public_keys": public_keys,
            "previous_hmac_keys": tuple(p for p in (prev or "").split(",") if p)}


def registry_connection(service_prefix: str = "", verify: bool = False,
                        redis_url_names: tuple[str, ...] = ()) -> type[BaseSettings]:
    """The settings of a service's Redis registry connection, declared once for every service.

    Each field reads ``SLICETWIN_<NAME>``, so one environment configures the whole system; a
    service with its own prefix (the twin service's ``SLICETWIN_TWIN_``) reads
    ``<prefix><NAME>`` first. Keyword arguments use the field names. ``verify`` adds the promotion public keys of a service that serves
    promoted models (it never signs)."""

    def names(field: str, *extra: str) -> AliasChoices:
        own = [service_prefix + field.upper()] if service_prefix else []
        return AliasChoices(*own, "SLICETWIN_" + field.upper(), *extra)

    class RegistryConnection(BaseSettings):
        model_config = SettingsConfigDict(populate_by_name=True)

        redis_url: str | None = Field(
            None, validation_alias=names("redis_url", *redis_url_names),
            description="redis://host:port/db of the model registry (and, for the controller "
            "and trainer, the transitions stream and shared cell memory); "
            "redis+cluster://host:port[,host:port] for a Redis Cluster")
        registry_prefix: str = Field("slicetwin:", validation_alias=names("registry_prefix"))
        transition_shards: int = Field(
            0, ge=0, validation_alias=names("transition_shards"),
            description="shards of the transitions stream, by cell (0: 1 on a single Redis, "
            "6 on a Redis Cluster); the controller and the trainer must agree")
        hmac_key: SecretStr = Field(SecretStr(DEV_HMAC_KEY), validation_alias=names("hmac_key"),
                                    description="shared HMAC-SHA256 key of the model registry")
        hmac_key_previous: SecretStr | None = Field(
            None, validation_alias=names("hmac_key_previous"),
            description="also accepted when verifying blobs (key rotation window)")

        @field_validator("redis_url", "hmac_key_previous", mode="before")
        @classmethod
        def _empty_is_none(cls, v):
            return None if v == "" else v

        @field_validator("redis_url")
        @classmethod
        def _redis_url(cls, v):
            if v is not None and not is_redis_url(v):
                raise ValueError("want redis://host:port/db, rediss://, unix:// or "
                                 "redis+cluster://host:port[,host:port]")
            if v is not None and is_cluster_url(v):
                cluster_nodes(v)  # ValueError naming the bad node
            return v

        @field_validator("registry_prefix")
        @classmethod
        def _prefix(cls, v):
            if "{" in v or "}" in v:
                raise ValueError("must not contain '{' or '}' (keys carry their own hash tags)")
            return v

        def registry_verify_keys(self) -> dict:
            """Registry keyword arguments of a service that verifies but never signs."""
            return verify_keys(self.hmac_key_previous,
                               getattr(self, "promotion_public_key", ""))

    if not verify:
        return RegistryConnection

    class VerifyingRegistryConnection(RegistryConnection):
        promotion_public_key: str = Field(
            DEV_PROMOTION_PUBLIC_KEY, validation_alias=names("promotion_public_key"),
            description="Ed25519 public key(s), hex, comma-separated during a rotation: a model "
            "is served only under a promotion record signed by one of them")

        @field_validator("promotion_public_key")
        @classmethod
        def _public_keys(cls, v):
            parse_public_keys(v)  # ValueError naming the bad key
            return v

    return VerifyingRegistryConnection


__all__ = ["DEV_HMAC_KEY", "DEV_PROMOTION_KEY", "DEV_PROMOTION_PUBLIC_KEY", "KEYS_HINT",
           "registry_connection", "SecureSettings", "is_dev", "secret_problems", "verify_keys"]
