"""Trainer worker settings: ``SLICETWIN_*`` environment variables (pydantic-settings).

I/O settings (Redis, registry, twin service, data directory) and the learning budgets of one
cycle live in one class, so ``slicetwin trainer`` and the embedded demo configure it the same
way. Defaults keep a cycle short (~15-40 s on a loaded 2-core CPU), so the closed loop shows a
hot-swap within a couple of minutes; raise the budgets for a real deployment.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from slicetwin.core.cold_start_settings import ColdStartSettings
from slicetwin.core.signing import DEV_PROMOTION_KEY, parse_public_keys, public_key_of
from slicetwin.core.utility import UtilityConfig
from slicetwin.core.utility_settings import UtilityWeightsSettings
from slicetwin.platform.security import SecureSettings, registry_connection
from slicetwin.sim.config import SimConfig

_UTILITY = UtilityConfig()  # the one set of defaults (slicetwin.core.utility)


class WorkerSettings(UtilityWeightsSettings, SecureSettings, registry_connection(),
                     ColdStartSettings):
    model_config = SettingsConfigDict(env_prefix="SLICETWIN_", extra="ignore")

    # --- I/O ------------------------------------------------------------------------------
    # redis_url, registry_prefix, hmac_key(_previous): slicetwin.platform.security
    promotion_key: SecretStr = Field(SecretStr(DEV_PROMOTION_KEY), description="Ed25519 "
                                     "private key (64 hex) that signs promotions the gate "
                                     "passed; the trainer and the operator hold it")
    promotion_public_key: str = Field("", description="extra public keys accepted when "
                                      "reading promotions (rotation window; the key's own "
                                      "public key is always accepted)")
    twin_api_key: SecretStr | None = Field(None, description="bearer key of the twin service "
                                           "(env SLICETWIN_TWIN_API_KEY)")
    transitions_stream: str = Field("transitions", description="stream key after the prefix")
    consumer_group: str = "trainer"
    consumer_name: str = Field("trainer-1", description="one name per trainer replica; a "
                               "restarted trainer must reuse its name to re-claim its pending")
    twin_url: str | None = Field(None, description="twin service; agent 2 trains through it "
                                 "when it serves the trainer's twin, else in-process")
    data_dir: str = Field("runs/trainer", description="dataset chunks, index, checkpoint")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="serve /metrics and "
                                     "/healthz on this port (None: no server)")
    metrics_host: str = Field("0.0.0.0", description="bind address of the metrics server")
    read_count: int = Field(2000, gt=0, description="max entries per XREADGROUP")
    read_block_ms: int = Field(200, ge=0)
    # --- cycle budgets --------------------------------------------------------------------
    min_transitions: int = Field(400, gt=0, description="dataset size before the first cycle")
    min_new_transitions: int = Field(200, ge=0, description="new rows between cycles")
    max_cycles: int = Field(0, ge=0, description="stop after this many cycles (0: forever)")
    train_window: int = Field(20_000, gt=0, description="newest rows used by a cycle")
    holdout_fraction: float = Field(0.15, gt=0.0, lt=0.5, description="stable split by id hash")
    seed: int = 0
    agent: str = Field("factored-ddqn", description="dqn | ddqn | dueling-ddqn | factored-ddqn "
                       "(agent 1 and agent 2); factored-ddqn, the one learner that beat the "
                       "static split on report traffic (docs/training.md, 'Factored Q')")
    agent_hidden: tuple[int, ...] = Field((128, 128), description="Q-network hidden layers; "
                                          "smaller than the paper's for short CPU cycles")
    gamma: float = Field(0.5, ge=0.0, lt=1.0, description="the task is near a contextual bandit")
    state_norm: Literal["fixed", "data"] = Field(
        "fixed", description="agents' input: the controller's state as it is (fixed per-slice "
        "scales) or standardised with the statistics of the first live data (traffic unlike "
        "the simulator's; folded into the served ONNX graph)")
    utility_alpha: float = Field(_UTILITY.alpha, description="SE weight of the utility the "
                                 "twin computes and the student is trained for (recorded in "
                                 "its ONNX metadata; must match the controller's)")
    utility_beta: Annotated[tuple[float, ...], NoDecode] = Field(
        _UTILITY.beta, description="SLA weights per slice: '1,4,6' or '[1, 4, 6]' (must match "
        "the controller's)")
    learn_from: Literal["utility", "reward"] = Field(
        "utility", description="learning signal: utility (dense) or the paper's shaped reward")
    twin_fit_seconds: float = Field(8.0, gt=0, description="wall-clock cap of one twin fit")
    twin_epochs: int = Field(60, gt=0)
    twin_ensemble: int = Field(3, gt=0)
    twin_hidden: int = Field(32, gt=0)
    twin_steps: int = Field(800, ge=0, description="Φ: agent-2 gradient steps in the twin")
    rollout_batch: int = Field(256, gt=0, description="parallel twin rollouts")
    rollout_length: int = Field(3, gt=0)
    twin_eps: float = Field(0.5, ge=0.0, le=1.0, description="ε of agent 2 in the twin")
    counterfactual_actions: int = Field(15, ge=0, description="random actions also tried at "
                                        "every twin state (labelled by the twin, not advanced)")
    zeta: float = Field(0.5, ge=0.0, le=1.0, description="θ1 ← ζθ1 + (1 − ζ)θ2")
    finetune_steps: int = Field(300, ge=0, description="agent-1 off-policy steps on live data")
    batch_size: int = Field(128, gt=0)
    distill_rounds: int = Field(1000, gt=0, description="student gradient steps (paper: 10,000); "
                                "the largest share of a cycle on CPU")
    distill_states: int = Field(4000, gt=0, description="max states the teacher labels")
    student_hidden: int = Field(16, gt=0)
    teacher: Literal["agent", "planner", "twin"] = Field(
        "agent", description="what the candidate student learns from: agent = agent 1 "
        "(Algorithm 1 on live data and the learned twin); planner = the model-known planner "
        "of sim_profile, a calibrated simulator used as the twin (trainer.plan_distill), its "
        "labels growing every cycle; needs sim_profile; twin = the learned twin rates every "
        "split at live states and the student fits its ratings (trainer.twin_plan; live data "
        "only)")
    twin_plan_rows: int = Field(128, gt=0, description="teacher=twin: live states rated per "
                                "cycle (4,851 twin predictions each: about 0.15 s per state "
                                "on this machine)")
    plan_cells: int = Field(16, gt=0, description="teacher=planner: simulator cells labelled "
                            "per cycle")
    plan_windows: int = Field(100, gt=0, description="teacher=planner: windows per cell and "
                              "cycle (16 x 100 labels: about 8 s on this machine)")
    plan_steps: int = Field(2000, gt=0, description="teacher=planner or twin: regression steps")
    plan_max_labels: int = Field(48_000, gt=0, description="teacher=planner: the newest labels "
                                 "kept (whole cycles; 48,000 x 294 floats = 56 MB)")
    n_units: int = Field(100, gt=0, description="action codec resolution (must match the "
                         "controller: 100 -> 4851 actions)")
    total_bandwidth_hz: float = Field(20e6, gt=0)
    # --- gate -----------------------------------------------------------------------------
    gate_margin: float = Field(0.005, ge=0.0, description="promote if candidate utility >= "
                               "current - margin (same held-out starts, same seeds)")
    gate_rollouts: int = Field(256, gt=0, description="held-out start states of the twin gate")
    gate_horizon: int = Field(5, gt=0, description="twin steps per gate rollout")
    sim_gate: bool | None = Field(None, description="judge candidates on held-out simulator "
                                  "seeds (tuning range); default: when sim_profile is set")
    sim_gate_cells: int = Field(32, gt=0, description="simulator cells per gate seed: with "
                                "the seeds, the pairs of the gate's paired CI (0.7 s per policy "
                                "at 32 x 40 x 4 on this machine)")
    sim_gate_windows: int = Field(40, gt=0)
    sim_gate_seeds: int = Field(4, gt=0, le=100, description="tuning-range seeds per cycle")
    sim_profile: str | None = Field(None, description="simulator profile of the cells' traffic, "
                                    "when it is one (SimConfig.from_profile: paper, diurnal, "
                                    "flash-crowd, hetero, mix=A/B/C or a schedule): the sim "
                                    "gate's traffic; the demo sets its --profile here. Unset "
                                    "(real gNBs): the gate judges on held-out real transitions")
    init_seed: int = Field(0, description="seed of the controller's fresh student: the "
                           "'current' policy the gate compares with while the registry has none")
    # --- robustness -----------------------------------------------------------------------
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(10.0, gt=0)
    checkpoint: bool = True

    @model_validator(mode="after")
    def _planner_needs_a_profile(self):
        if self.teacher == "planner" and self.sim_profile is None:
            raise ValueError("teacher=planner needs sim_profile: the planner plans with that "
                             "simulator profile (a real gNB without one: teacher=agent)")
        return self

    @field_validator("twin_url", "metrics_port", "twin_api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        return None if v == "" else v

    @field_validator("promotion_key")
    @classmethod
    def _promotion_key(cls, v):
        public_key_of(v.get_secret_value())  # a bad key fails at start, naming the variable
        return v

    @field_validator("promotion_public_key")
    @classmethod
    def _public_keys(cls, v):
        parse_public_keys(v)
        return v

    def required_secrets(self) -> list[tuple[str, object, bool]]:
        out = []
        if self.redis_url:
            out += [("SLICETWIN_HMAC_KEY", self.hmac_key, True),
                    ("SLICETWIN_HMAC_KEY_PREVIOUS", self.hmac_key_previous, False),
                    ("SLICETWIN_PROMOTION_KEY", self.promotion_key, True)]
        if self.twin_url:
            out.append(("SLICETWIN_TWIN_API_KEY", self.twin_api_key, True))
        return out

    def registry_keys(self) -> dict:
        """Keyword arguments of the trainer's registry: it signs what the gate passed."""
        priv = self.promotion_key.get_secret_value()
        prev = self.hmac_key_previous.get_secret_value() if self.hmac_key_previous else ""
        return {"promotion_key": priv,
                "promotion_public_keys": ",".join([public_key_of(priv),
                                                   *parse_public_keys(self.promotion_public_key)]),
                "previous_hmac_keys": tuple(p for p in prev.split(",") if p)}

    @model_validator(mode="after")
    def _state_norm_fits_agent(self):
        if self.state_norm == "data" and self.agent == "gan-ddqn":
            raise ValueError("state_norm=data is not available for agent gan-ddqn; use "
                             "ddqn, dqn, dueling-ddqn or factored-ddqn")
        return self

    @field_validator("sim_profile", mode="before")
    @classmethod
    def _sim_profile(cls, v):
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        SimConfig.from_profile(v)  # ValueError naming the choices
        return v

    @property
    def sim_gate_on(self) -> bool:
        """The simulator gate runs: asked for, or (by default) whenever a profile is known."""
        return self.sim_profile is not None if self.sim_gate is None else self.sim_gate

    @property
    def stream_key(self) -> str:
        return self.registry_prefix + self.transitions_stream
