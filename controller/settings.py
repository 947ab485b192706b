"""Controller settings, read from ``SLICETWIN_*`` environment variables (pydantic-settings).

Every field below can be set as ``SLICETWIN_<FIELD NAME IN CAPS>``; e.g. ``SLICETWIN_REDIS_URL``,
``SLICETWIN_API_KEY``, ``SLICETWIN_EXPLORE_EPSILON``. Defaults give a self-contained controller:
no Redis, a freshly initialised student (or the demand-proportional fallback). Outside
``SLICETWIN_ENV=dev`` it needs an API key and, with Redis, non-public registry keys
(``slicetwin.platform.security``; ``slicetwin keys init`` makes them).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from slicetwin.core.cold_start_settings import ColdStartSettings
from slicetwin.core.utility import RewardShaper, UtilityConfig
from slicetwin.core.utility_settings import UtilityWeightsSettings
from slicetwin.platform.security import SecureSettings, ServedModelSecrets, registry_connection

# the one set of defaults (slicetwin.core.utility), never re-typed here
_UTILITY, _SHAPER = UtilityConfig(), RewardShaper()


class ControllerSettings(UtilityWeightsSettings, ServedModelSecrets, SecureSettings,
                         registry_connection(verify=True), ColdStartSettings):
    model_config = SettingsConfigDict(env_prefix="SLICETWIN_", extra="ignore")

    # --- model
    model_source: Literal["auto", "registry", "file", "init", "none"] = Field(
        "auto", description="auto: the registry's promoted policy if any, else model_path, else "
        "the cold start (cold_start: the safe heuristic, or a random student); init: a random "
        "student; none: the heuristic until a registry event brings a model")
    model_path: str | None = Field(None, description="ONNX policy file (model_source file/auto); "
                                   "needs its detached signature <file>.sig (slicetwin models "
                                   "sign) unless allow_unsigned")
    allow_unsigned: bool = Field(False, description="serve an unsigned model_path anyway "
                                 "(logged, and slicetwin_model_unsigned = 1)")
    init_seed: int = Field(0, description="seed of the fresh student (model_source init)")
    # --- action space (must match the model's metadata)
    total_bandwidth_hz: float = Field(20e6, gt=0)
    n_units: int = Field(100, gt=0, description="100 units = 200 kHz; 20 = 1 MHz")
    min_units: int = Field(1, ge=0)
    # --- Redis / registry: redis_url, registry_prefix, hmac_key(_previous),
    # promotion_public_key (slicetwin.platform.security.registry_connection)
    cell_store: Literal["auto", "local", "redis"] = Field(
        "auto", description="per-cell memory: redis (stateless replicas) or local (in-process); "
        "auto = redis when redis_url is set")
    cell_ttl_s: int = Field(3600, gt=0, description="cell memory expiry in Redis")
    cell_store_timeout_s: float = Field(0.25, gt=0, le=10, description="connect and reply "
                                        "timeout of the Redis cell store: the longest a decision "
                                        "waits before it is answered from the local cache")
    cell_store_probe_s: float = Field(0.5, gt=0, le=60, description="while Redis is "
                                      "unreachable, how often it is probed (and the held cell "
                                      "memory pushed back when it answers)")
    cell_hold_buffer: int = Field(100_000, gt=0, description="transitions held while Redis is "
                                  "unreachable, until their cell's memory is re-synced; "
                                  "overflow is dropped and counted")
    # --- transitions sink
    transitions_sink: Literal["auto", "redis", "memory", "file", "none"] = "auto"
    transitions_file: str | None = Field(None, description="JSON-lines file (sink file)")
    transitions_stream: str = Field("transitions", description="stream key (after the prefix)")
    transitions_maxlen: int = Field(1_000_000, gt=0, description="XADD MAXLEN ~ cap")
    sink_buffer: int = Field(100_000, gt=0, description="bounded in-memory buffer; overflow is "
                             "dropped and counted, never blocks a request")
    sink_flush_interval_s: float = Field(0.02, gt=0)
    transitions_in_commit: bool = Field(True, description="with cell_store=redis and "
                                        "transitions_sink=redis, append each transition to the "
                                        "stream in the same Lua call that commits the cell's "
                                        "memory (a replica killed after answering loses none); "
                                        "false: through the sink's in-process buffer")
    sink_wait_replicas: int | None = Field(None, ge=0, description="replicas that must confirm "
                                           "each stream write (WAIT) before it counts as "
                                           "written (empty: 1 on a Redis Cluster, 0 on a "
                                           "single Redis)")
    sink_wait_ms: int = Field(200, gt=0, description="how long one WAIT waits for them")
    # --- exploration (off by default; for Algorithm 1's agent-1 phase on live traffic)
    explore_epsilon: float = Field(0.0, ge=0.0, le=1.0)
    explore_budget_per_cell: int = Field(100, ge=0, description="max explored decisions per cell")
    explore_seed: int | None = None
    explore_radius_units: int = Field(10, ge=0, description="an explored decision moves at most "
                                      "this many units between two slices of the served split "
                                      "(bounds the utility exploration may cost); 0: any action")
    # --- utility and reward (slicetwin.core.utility: the simulator's, twin's and trainer's too)
    utility_alpha: float = Field(_UTILITY.alpha, description="SE weight alpha of the utility "
                                 "alpha*SE + sum beta*SSR (finite, >= 0)")
    utility_beta: Annotated[tuple[float, ...], NoDecode] = Field(
        _UTILITY.beta, description="SLA weights beta per slice (VoLTE, video, URLLC): "
        "'1,4,6' or '[1, 4, 6]'; finite, >= 0, positive sum. A promoted model trained for "
        "other weights is refused")
    reward_gamma_min: float = Field(_SHAPER.gamma_min, description="RewardShaper threshold "
                                    "gamma_t = min(gamma_min + sigma * t, gamma_max), t = the "
                                    "report's window number")
    reward_gamma_max: float = _SHAPER.gamma_max
    reward_sigma: float = _SHAPER.sigma
    # --- security and limits
    api_key: SecretStr | None = Field(None, description="bearer key required on every POST "
                                      "(required outside SLICETWIN_ENV=dev)")
    api_key_previous: SecretStr | None = Field(None, description="also accepted (rotation "
                                               "window)")
    metrics_auth: bool = Field(False, description="require the bearer key on GET /metrics too")
    max_body_bytes: int = Field(4_000_000, gt=0, description="larger bodies get 413")
    max_batch: int = Field(20_000, gt=0, description="max reports per batch request")
    # --- O-RAN rendering
    plmn_id: str = Field("00101", description="PLMN identity (MCC+MNC) in RRMPolicyRatio members")
    rrm_max_headroom_pct: int = Field(0, ge=0, le=100, description="rRMPolicyMaxRatio = "
                                      "dedicated + this head-room (capped at 100)")
    # --- server
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "warning"
    coalesce_writes: bool = Field(True, description="send a response's head and body in one "
                                  "socket write (controller/server.py); false: stock uvicorn")
    gc_gen0_threshold: int = Field(100_000, ge=0, description="gen-0 threshold of Python's "
                                   "cyclic GC in the controller process (0: Python's 700); "
                                   "a batch allocates thousands of objects, and at 700 the "
                                   "collector took ~40 % of a batch decision's CPU")
    gil_switch_interval_s: float = Field(0.001, gt=0, description="sys.setswitchinterval of "
                                         "the controller process (Python default 0.005)")

    @field_validator("model_path", "transitions_file", "api_key", "api_key_previous",
                     "sink_wait_replicas",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        return None if v == "" else v



    @model_validator(mode="after")
    def _shaper_ok(self):
        try:
            self.reward_shaper  # noqa: B018 - validates
        except ValueError as e:
            raise ValueError(f"reward_gamma_min / reward_gamma_max / reward_sigma: {e}") from None
        return self

    @property
    def reward_shaper(self) -> RewardShaper:
        return RewardShaper(gamma_min=self.reward_gamma_min, gamma_max=self.reward_gamma_max,
                            sigma=self.reward_sigma)

