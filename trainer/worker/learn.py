"""One learning cycle's steps on the live dataset (Algorithm 1's outer loop, one iteration).

fit twin -> agent 2 trains in the twin -> θ1 ← ζθ1 + (1 − ζ)θ2 -> agent 1 fine-tunes off-policy on
live transitions -> distil agent 1 into the 16-16 student -> ONNX bytes. Each function does one
step and returns its figures; the worker sequences them, publishes and gates.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from slicetwin.core.actions import ActionCodec
from slicetwin.core.transitions import Transitions
from slicetwin.sim.config import SimConfig
from slicetwin.twin import Twin, TwinConfig
from trainer.agents import DQNAgent, make_agent
from trainer.agents.envs import TwinEnv
from trainer.agents.loop import EnvStep, Learner
from trainer.algorithm1 import twin_rollouts
from trainer.distill import DistillConfig, distill, pool_states
from trainer.export_onnx import to_onnx
from trainer.plan_distill import PlanDistillConfig, collect_planner_tables, fit_student
from trainer.replay import ReplayBuffer
from trainer.twin_plan import TwinPlanConfig, fit_to_twin, plan_rows
from trainer.worker.settings import WorkerSettings

log = logging.getLogger("slicetwin.trainer")

LIVE_T = 10**9  # shaper step index of live data: the controller's windows are wall-clock
#   numbers, so its reward threshold is always gamma_max; the twin must shape the same way


class LiveData:
    """What ``TwinEnv`` needs from a real environment: recorded transitions and a step index."""

    def __init__(self, data: Transitions):
        self._data = data
        self.interactions = LIVE_T

    def transitions(self, last: int | None = None) -> Transitions:
        return self._data


class _SignalTwinEnv(TwinEnv):
    """TwinEnv whose reward is the predicted utility when the worker learns from utility."""

    def __init__(self, *a, use_utility: bool, **kw):
        super().__init__(*a, **kw)
        self.use_utility = use_utility

    def _env_step(self, out: Any) -> EnvStep:
        step = super()._env_step(out)  # step() and branch() both come through here
        if self.use_utility:
            step.reward = np.asarray(step.utility, np.float32)
        return step


def n_actions_of(s: WorkerSettings) -> int:
    return ActionCodec(total_bandwidth_hz=s.total_bandwidth_hz, n_units=s.n_units).n_actions


def new_agent(s: WorkerSettings, seed: int) -> DQNAgent:
    codec = {"n_units": s.n_units} if s.agent == "factored-ddqn" else {}  # its tables index units
    return make_agent(s.agent, 3, n_actions_of(s), seed=seed, hidden=tuple(s.agent_hidden),
                      gamma=s.gamma, batch_size=s.batch_size, learning_starts=s.batch_size,
                      state_norm=s.state_norm,
                      target_update_every=100, **codec)


def signal(data: Transitions, s: WorkerSettings) -> np.ndarray:
    return (data.utility if s.learn_from == "utility" else data.reward).astype(np.float32)


# ------------------------------------------------------------------------- twin
def fit_twin(train: Transitions, s: WorkerSettings, seed: int):
    cfg = TwinConfig(ensemble=s.twin_ensemble, lstm_hidden=s.twin_hidden, head_hidden=s.twin_hidden,
                     reward_hidden=(2 * s.twin_hidden, 2 * s.twin_hidden), epochs=s.twin_epochs,
                     patience=8, max_fit_seconds=s.twin_fit_seconds, seed=seed,
                     n_units=s.n_units)
    twin = Twin(cfg, utility=s.utility)  # utility from its KPI head, with the operator's weights
    metrics = twin.fit(train)
    return twin, metrics


def twin_error(twin, data: Transitions, held_rows: np.ndarray) -> dict:
    """Held-out one-step errors (histories from the whole trace); ``score`` ranks twins:
    next-state RMSE + utility RMSE (both matter to a policy trained in the twin)."""
    m = twin.evaluate(data[held_rows], context=data, rows=held_rows)
    m["score"] = float(m["next_state_rmse"] + m["utility_rmse"])
    return m


# ------------------------------------------------------------------------- agents
def train_in_twin(agent2: DQNAgent, twin: Any, train: Transitions, s: WorkerSettings,
                  rng: np.random.Generator) -> dict:
    """Φ gradient steps of agent 2 on short ε-greedy rollouts from recorded live states, with
    ``counterfactual_actions`` extra actions tried at every twin state."""

    t0 = time.perf_counter()
    learner = Learner(agent2, rng, replay=ReplayBuffer(20_000, 3), train_every=1.0)
    env = _SignalTwinEnv(twin, LiveData(train), s.rollout_batch, rng,
                         use_utility=s.learn_from == "utility")
    done, stalls, utils = 0, 0, []
    while done < s.twin_steps:
        utils.append(twin_rollouts(agent2, env, learner.replay, s.rollout_length, s.twin_eps,
                                   s.counterfactual_actions))
        owed = s.rollout_batch * s.rollout_length
        k = learner.train(min(owed, s.twin_steps - done))
        stalls = stalls + 1 if k == 0 else 0
        if stalls > 50:
            raise RuntimeError("agent 2 never reached learning_starts in the twin")
        done += k
    return {"twin_grad_steps": done, "twin_transitions": env.steps,
            "twin_rollout_utility": float(np.mean(utils)) if utils else float("nan"),
            "seconds": round(time.perf_counter() - t0, 3)}


def finetune_live(agent1: DQNAgent, train: Transitions, s: WorkerSettings,
                  rng: np.random.Generator) -> dict:
    """Off-policy (DQN/DDQN targets) steps of agent 1 on the recorded live transitions."""
    t0 = time.perf_counter()
    if s.finetune_steps == 0 or len(train) < s.batch_size:
        return {"live_grad_steps": 0, "seconds": 0.0}
    buf = ReplayBuffer(len(train), 3)
    buf.add(train.state, train.action, signal(train, s), train.next_state)
    learner = Learner(agent1, rng, replay=buf)
    learner.train(s.finetune_steps)
    return {"live_grad_steps": s.finetune_steps, "loss": learner.last_info.get("loss"),
            "seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------------- student
def distil_and_export(agent1: DQNAgent, train: Transitions, s: WorkerSettings, version: str,
                      seed: int, metrics: dict | None = None) -> tuple[bytes, dict]:
    """Distil agent 1's greedy policy into the student and export it as ONNX bytes."""

    t0 = time.perf_counter()
    states = pool_states(train)
    if len(states) > s.distill_states:
        rows = np.random.default_rng(seed).choice(len(states), s.distill_states, replace=False)
        states = states[rows]
    res = distill(agent1.q, states, DistillConfig(hidden=s.student_hidden, rounds=s.distill_rounds,
                                                  eval_every=s.distill_rounds, seed=seed))
    figures = {"agreement": round(res.agreement, 4), "q_regret": round(res.q_regret, 5),
               "seconds": round(time.perf_counter() - t0, 3)}
    model = to_onnx(res.student, n_units=s.n_units, total_bandwidth_hz=s.total_bandwidth_hz,
                    version=version, metrics={**(metrics or {}), "agreement": figures["agreement"]},
                    utility=s.utility)
    return model.SerializeToString(), figures


# ------------------------------------------------------------------------- planner teacher
class PlannerLabels:
    """The planner's labels of every cycle so far (``teacher=planner``): each cycle adds
    ``plan_cells`` x ``plan_windows`` from a new training-range seed, so later candidates fit
    more of them, up to the newest ``plan_max_labels`` (older cycles are dropped whole)."""

    def __init__(self, s: WorkerSettings):
        self.sim = SimConfig.from_profile(s.sim_profile, utility=s.utility)
        codec = self.sim.codec
        if (codec.n_units, codec.total_bandwidth_hz) != (s.n_units, s.total_bandwidth_hz):
            raise ValueError(f"sim_profile {s.sim_profile!r} has {codec.n_units} units over "
                             f"{codec.total_bandwidth_hz:g} Hz, the trainer {s.n_units} over "
                             f"{s.total_bandwidth_hz:g} Hz")
        self.states: list[np.ndarray] = []
        self.tables: list[np.ndarray] = []

    def add(self, s: WorkerSettings, seed: int) -> float:
        t0 = time.perf_counter()
        cfg = PlanDistillConfig(cells=s.plan_cells, windows=s.plan_windows, seed=seed)
        st, tab = collect_planner_tables(self.sim, cfg, seed)
        self.states.append(st)
        self.tables.append(tab)
        while len(self.states) > 1 and len(self) > s.plan_max_labels:
            del self.states[0], self.tables[0]
        return time.perf_counter() - t0

    def __len__(self) -> int:
        return sum(len(x) for x in self.states)


def plan_and_export(labels: PlannerLabels, s: WorkerSettings, version: str, seed: int
                    ) -> tuple[bytes, dict]:
    """Fit the student to the planner's labels (``trainer.plan_distill``) and export it."""
    t0 = time.perf_counter()
    cfg = PlanDistillConfig(hidden=s.student_hidden, steps=s.plan_steps, seed=seed)
    model, train_mse, hold_mse = fit_student(np.concatenate(labels.states),
                                             np.concatenate(labels.tables), labels.sim.codec, cfg)
    figures = {"teacher": "planner", "labels": len(labels), "train_mse": round(train_mse, 6),
               "holdout_mse": round(hold_mse, 6), "agreement": None,
               "seconds": round(time.perf_counter() - t0, 3)}
    onnx_model = to_onnx(model.to_student(), n_units=s.n_units,
                         total_bandwidth_hz=s.total_bandwidth_hz, version=version,
                         metrics={"teacher": "planner", "labels": len(labels)},
                         utility=s.utility)
    return onnx_model.SerializeToString(), figures


# ------------------------------------------------------------------------- twin teacher
def twin_plan_and_export(twin: Twin, train: Transitions, s: WorkerSettings, version: str,
                         seed: int, init=None) -> tuple[bytes, dict, Any]:
    """``teacher=twin``: the twin rates every split at ``twin_plan_rows`` live states (half the
    newest, half drawn from the rest; ``trainer.twin_plan``) and the student is fitted to the
    ratings' per-slice tables, continuing from ``init`` (the last cycle's) when given. Needs only
    live data and the twin: no simulator. Returns (ONNX bytes, figures, the fitted model)."""
    t0 = time.perf_counter()
    codec = ActionCodec(total_bandwidth_hz=s.total_bandwidth_hz, n_units=s.n_units)
    rows = plan_rows(len(train), TwinPlanConfig(plan_rows=s.twin_plan_rows),
                     np.random.default_rng(seed))
    cfg = PlanDistillConfig(hidden=s.student_hidden, steps=s.plan_steps, seed=seed)
    fit = fit_to_twin(twin, train, rows, codec, cfg, init=init)
    model = fit.model
    figures = {"teacher": "twin", "labels": len(rows), "train_mse": round(fit.train_mse, 6),
               "holdout_mse": round(fit.holdout_mse, 6), "agreement": None,
               "plan_seconds": round(fit.plan_s, 3), "seconds": round(time.perf_counter() - t0, 3)}
    onnx_model = to_onnx(model.to_student(), n_units=s.n_units,
                         total_bandwidth_hz=s.total_bandwidth_hz, version=version,
                         metrics={"teacher": "twin", "labels": len(rows)}, utility=s.utility)
    return onnx_model.SerializeToString(), figures, model
