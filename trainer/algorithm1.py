"""Algorithm 1 of the paper (digital-twin-enhanced DRL), and a stronger model-based mode.

``mode="paper"`` — exactly the paper's loop, repeated Γ times:
  1. collect real data with π1 (agent 1, ε-greedy) — counted;
  2. fit the twin on the newest ``refit_size`` real transitions;
  3. agent 2 trains Φ gradient steps on rollouts in the twin (free);
  4. θ1 ← ζ·θ1 + (1 − ζ)·θ2;
  5. agent 1 trains T steps in the real environment with ε-greedy — counted (and this data is
     what step 1 of the next iteration adds to the twin's training set);
  6. agent 2 ← copy of agent 1.

``mode="branched"`` — what makes model-based RL work in practice (MBPO, Janner et al. 2019;
MOPO, Yu et al. 2020): one agent acts in the real environment; every ``rollout_every`` real
steps it branches short rollouts (``rollout_length``) in the twin *from recorded real states*
with its current policy; model rewards are penalised by ``uncertainty_penalty`` × the ensemble
disagreement and rollouts are cut where the disagreement exceeds ``max_uncertainty``; gradient
steps draw ``real_ratio`` of each batch from real data and the rest from model data.

Only ``RealEnv.interactions`` measures real experience; twin steps are free. ``grad_steps_per_real``
in the result is what the fair "matched compute" baseline is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.agents.dqn import DQNAgent
from trainer.agents.envs import RealEnv, TwinEnv
from trainer.agents.loop import Learner, run
from trainer.replay import ReplayBuffer, sample_mixed


@dataclass
class Algorithm1Config:
    mode: str = "paper"  # "paper" (the paper's Algorithm 1) | "branched" (MBPO-like)
    iterations: int = 50  # Γ: outer iterations (one round of real data each with T = 200)
    real_steps: int = 200  # T: real interactions of agent 1 per iteration (= one paper round)
    twin_steps: int = 400  # Φ: agent 2 gradient steps in the twin per iteration
    zeta: float = 0.5  # ζ: θ1 ← ζθ1 + (1 − ζ)θ2 (0 = take agent 2, 1 = ignore it)
    initial_collect: int = 200  # real interactions with π1 before the first fit (counted)
    collect_steps: int = 0  # extra real interactions with π1 before each later fit (counted)
    refit_size: int = 4_000  # fit the twin on the newest N real transitions
    refit_every: int = 1  # iterations between twin fits
    rollout_length: int = 5  # twin steps per rollout (short: model error compounds)
    rollout_batch: int = 64  # rollouts run in parallel in the twin
    twin_eps: float = 0.3  # ε of the policy acting in the twin (exploration is free there)
    twin_train_every: float = 0.5  # twin transitions per agent-2 gradient step (paper mode)
    real_eps_decay_steps: int | None = None  # ε decay for agent 1; None: the agent's own
    collect_eps: float | None = None  # ε of the initial collection; None: agent 1's schedule
    max_interactions: int | None = None  # stop the run at this many real interactions
    twin_buffer_size: int = 20_000  # replay of model transitions
    twin_sample: bool | None = False  # twin rollouts: False = ensemble mean (less noisy
    #   targets), True = sample a member and its Gaussian (generative), None = the twin's default
    # --- branched mode ---
    rollout_every: int = 50  # real interactions between branched rollouts
    updates_per_real: float = 2.0  # gradient steps per real interaction (branched mode)
    real_ratio: float = 0.1  # share of real transitions in each batch (MBPO uses 0.05)
    real_ratio_end: float | None = None  # None: constant real_ratio; else it ramps linearly
    #   from real_ratio to this over real_ratio_ramp real interactions (trust the model while
    #   real data is scarce, then phase it out); at 1.0 branching and refits stop
    real_ratio_ramp: int = 2_000
    # --- both modes ---
    uncertainty_penalty: float = 0.0  # λ: model reward r − λ·u (MOPO)
    max_uncertainty: float = float("inf")  # cut model transitions above this disagreement
    counterfactual_actions: int = 0  # K: at every twin state also try K random actions without
    #   advancing (the same window replayed under other allocations, which only a model allows);
    #   all K labelled transitions go to the model replay, the rollout continues with the
    #   policy's own action. 0 = the paper's one action per twin step

    def __post_init__(self) -> None:
        if self.mode not in ("paper", "branched"):
            raise ValueError(f"mode must be 'paper' or 'branched', got {self.mode!r}")
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(f"zeta must be in [0, 1], got {self.zeta}")
        if min(self.iterations, self.real_steps, self.rollout_length, self.rollout_batch) <= 0:
            raise ValueError("iterations, real_steps, rollout_length, rollout_batch must be > 0")
        if self.twin_steps < 0 or self.initial_collect < 0 or self.collect_steps < 0:
            raise ValueError("twin_steps, initial_collect and collect_steps must be >= 0")
        if self.collect_eps is not None and not 0.0 <= self.collect_eps <= 1.0:
            raise ValueError(f"collect_eps must be in [0, 1], got {self.collect_eps}")
        if self.max_interactions is not None and self.max_interactions <= 0:
            raise ValueError("max_interactions must be > 0")
        if self.counterfactual_actions < 0:
            raise ValueError("counterfactual_actions must be >= 0")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {self.real_ratio}")
        if self.real_ratio_end is not None and not 0.0 <= self.real_ratio_end <= 1.0:
            raise ValueError(f"real_ratio_end must be in [0, 1], got {self.real_ratio_end}")

    def real_ratio_at(self, interactions: int) -> float:
        """Share of real transitions per batch after ``interactions`` real interactions."""
        if self.real_ratio_end is None:
            return self.real_ratio
        frac = min(max(interactions, 0) / max(self.real_ratio_ramp, 1), 1.0)
        return self.real_ratio + frac * (self.real_ratio_end - self.real_ratio)

    def grad_steps_per_real(self, agent_train_every: float) -> float:
        """Gradient steps per real interaction this config spends in total (for the fair
        'matched compute' baseline)."""
        if self.mode == "branched":
            return self.updates_per_real
        real = self.real_steps + self.collect_steps
        return (self.real_steps / agent_train_every + self.twin_steps) / real


@dataclass
class Algorithm1Result:
    real_interactions: int = 0
    real_grad_steps: int = 0  # gradient steps of agent 1 (real data, or mixed in branched mode)
    twin_grad_steps: int = 0  # gradient steps of agent 2 on twin data (paper mode)
    twin_transitions: int = 0
    fits: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"fit": 0.0, "twin": 0.0, "real": 0.0})

    def grad_steps_per_real(self) -> float:
        return (self.real_grad_steps + self.twin_grad_steps) / max(self.real_interactions, 1)


def _steps(n_interactions: int, n: int) -> int:
    if n_interactions % n:
        raise ValueError(f"{n_interactions} interactions are not a multiple of {n} cells")
    return n_interactions // n


def algorithm1(agent1: DQNAgent, real: RealEnv, twin: Any, cfg: Algorithm1Config,
               rng: np.random.Generator, on_iteration: Callable[[int], None] | None = None,
               on_blend: Callable[[DQNAgent, DQNAgent], None] | None = None) -> Algorithm1Result:
    """Run Algorithm 1 (``cfg.mode``) for ``cfg.iterations``; agent 1 is trained in place.

    ``on_iteration(i)`` is called after each iteration; ``on_blend(agent1, agent2)`` just before
    each blend (paper mode), so a caller can check θ1 ← ζθ1 + (1 − ζ)θ2.
    """
    if cfg.mode == "paper":
        return _paper(agent1, real, twin, cfg, rng, on_iteration, on_blend)
    return _branched(agent1, real, twin, cfg, rng, on_iteration)


def real_epsilon(agent_cfg: Any, cfg: Algorithm1Config) -> Callable[[int], float]:
    """Agent 1's ε in the real network after ``t`` real interactions: ``collect_eps`` during the
    initial collection (when set), then a linear decay over ``real_eps_decay_steps`` (None: the
    agent's own schedule). The experiment's same-exploration baseline uses this too."""
    decay, c = cfg.real_eps_decay_steps, agent_cfg

    def eps(t: int) -> float:
        if cfg.collect_eps is not None and t < cfg.initial_collect:
            return cfg.collect_eps
        if decay is None:
            return c.epsilon(t)
        return c.eps_start + min(t / max(decay, 1), 1.0) * (c.eps_end - c.eps_start)
    return eps


def _epsilon(agent: DQNAgent, real: RealEnv, cfg: Algorithm1Config) -> Callable[[], float]:
    sched = real_epsilon(agent.cfg, cfg)
    return lambda: sched(real.interactions)


def _budget(real: RealEnv, cfg: Algorithm1Config, n: int) -> int:
    """``n`` real interactions, cut to what ``max_interactions`` leaves."""
    if cfg.max_interactions is None:
        return n
    left = max(0, cfg.max_interactions - real.interactions)
    return n if n <= left else left - left % real.n  # whole vector steps only


def _fit(twin: Any, real: RealEnv, cfg: Algorithm1Config, res: Algorithm1Result) -> None:
    t0 = time.perf_counter()
    res.fits.append(twin.fit(real.transitions(last=cfg.refit_size)))
    res.seconds["fit"] += time.perf_counter() - t0


def _paper(agent1, real, twin, cfg, rng, on_iteration, on_blend) -> Algorithm1Result:
    res = Algorithm1Result()
    learner1 = Learner(agent1, rng)
    agent2 = agent1.clone()
    learner2 = Learner(agent2, rng, replay=ReplayBuffer(cfg.twin_buffer_size, agent1.state_dim),
                       train_every=cfg.twin_train_every)
    twin_env = TwinEnv(twin, real, cfg.rollout_batch, rng, penalty=cfg.uncertainty_penalty,
                       max_uncertainty=cfg.max_uncertainty, sample=cfg.twin_sample)
    eps = _epsilon(agent1, real, cfg)
    state = real.reset()
    for it in range(cfg.iterations):
        # 1. collect with π1 (stored in agent 1's replay; no gradient steps)
        n_collect = _budget(real, cfg, cfg.initial_collect if it == 0 else cfg.collect_steps)
        t0 = time.perf_counter()
        if n_collect:
            state, _ = run(learner1, real, state, _steps(n_collect, real.n), eps, learn=False)
        res.seconds["real"] += time.perf_counter() - t0
        # 2. fit the twin on the newest real data
        if it % cfg.refit_every == 0:
            _fit(twin, real, cfg, res)
        # 3. agent 2 trains Φ gradient steps in the twin
        t0 = time.perf_counter()
        done, stalls = 0, 0
        while done < cfg.twin_steps:
            _branch(agent2, twin_env, learner2.replay, cfg)
            owed = int(round(cfg.rollout_batch * cfg.rollout_length / cfg.twin_train_every))
            k = learner2.train(min(max(owed, 1), cfg.twin_steps - done))
            stalls = stalls + 1 if k == 0 else 0
            if stalls > 1000:
                raise RuntimeError("agent 2 never reached learning_starts in the twin")
            done += k
        res.twin_grad_steps += done
        res.seconds["twin"] += time.perf_counter() - t0
        # 4. θ1 ← ζθ1 + (1 − ζ)θ2
        if on_blend is not None:
            on_blend(agent1, agent2)
        agent1.blend_from(agent2, cfg.zeta)
        # 5. agent 1 trains T steps in the real environment, ε-greedy
        t0 = time.perf_counter()
        n_real = _budget(real, cfg, cfg.real_steps)
        if n_real:
            state, _ = run(learner1, real, state, _steps(n_real, real.n), eps)
        res.seconds["real"] += time.perf_counter() - t0
        # 6. agent 2 ← agent 1
        agent2.copy_from(agent1)
        if on_iteration is not None:
            on_iteration(it)
        if _budget(real, cfg, 1) == 0:
            break
    res.real_interactions = real.interactions
    res.real_grad_steps = learner1.updates
    res.twin_transitions = twin_env.steps
    return res


def _branched(agent, real, twin, cfg, rng, on_iteration) -> Algorithm1Result:
    res = Algorithm1Result()
    real_replay = ReplayBuffer(agent.cfg.buffer_size, agent.state_dim)
    model_replay = ReplayBuffer(cfg.twin_buffer_size, agent.state_dim)
    learner = Learner(agent, rng, replay=real_replay, train_every=1.0 / cfg.updates_per_real,
                      sampler=lambda b, g: sample_mixed(real_replay, model_replay, b,
                                                        cfg.real_ratio_at(real.interactions), g))
    twin_env = TwinEnv(twin, real, cfg.rollout_batch, rng, penalty=cfg.uncertainty_penalty,
                       max_uncertainty=cfg.max_uncertainty, sample=cfg.twin_sample)
    eps = _epsilon(agent, real, cfg)
    state = real.reset()
    n_collect = _budget(real, cfg, cfg.initial_collect)
    if n_collect:
        state, _ = run(learner, real, state, _steps(n_collect, real.n), eps, learn=False)
    block = max(1, round(cfg.rollout_every / real.n))  # vector steps between branches
    for it in range(cfg.iterations):
        use_model = cfg.real_ratio_at(real.interactions) < 1.0
        if use_model and it % cfg.refit_every == 0:
            _fit(twin, real, cfg, res)
        left = _steps(_budget(real, cfg, cfg.real_steps), real.n)
        while left > 0:
            t0 = time.perf_counter()
            if use_model:
                _branch(agent, twin_env, model_replay, cfg)
            res.seconds["twin"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            state, _ = run(learner, real, state, min(block, left), eps)
            res.seconds["real"] += time.perf_counter() - t0
            left -= block
        if on_iteration is not None:
            on_iteration(it)
        if _budget(real, cfg, 1) == 0:
            break
    res.real_interactions = real.interactions
    res.real_grad_steps = learner.updates
    res.twin_transitions = twin_env.steps
    return res


def _branch(agent: DQNAgent, twin_env: TwinEnv, buf: ReplayBuffer, cfg: Algorithm1Config) -> None:
    twin_rollouts(agent, twin_env, buf, cfg.rollout_length, cfg.twin_eps,
                  cfg.counterfactual_actions)


def twin_rollouts(agent: DQNAgent, twin_env: TwinEnv, buf: ReplayBuffer, length: int,
                  eps: float, counterfactual: int = 0) -> float:
    """Short rollouts from real states with the current policy into the model buffer; a rollout
    stops at its first over-uncertain transition (stored as terminal: no bootstrap through it).
    With ``counterfactual`` = K, every visited state is also tried under K random actions (not
    advanced), each stored as its own model transition. Returns the policy steps' mean utility.
    """
    s = twin_env.reset()
    alive = np.ones(twin_env.n, bool)
    utils = []
    for _ in range(length):
        a = agent.act(s, eps, twin_env.rng)
        if counterfactual:
            extra = twin_env.rng.integers(0, agent.n_actions, size=(twin_env.n, counterfactual))
            cf = twin_env.branch(extra)
            rows = np.repeat(alive, counterfactual)
            d = cf.done if cf.done is not None else np.zeros(len(rows), np.float32)
            buf.add(np.repeat(s, counterfactual, axis=0)[rows], extra.reshape(-1)[rows],
                    cf.reward[rows], cf.next_state[rows], d[rows])
        out = twin_env.step(a)
        d = out.done if out.done is not None else np.zeros(twin_env.n, np.float32)
        buf.add(s[alive], a[alive], out.reward[alive], out.next_state[alive], d[alive])
        utils.append(float(np.mean(out.utility[alive])))
        alive &= d == 0
        if not alive.any():
            break
        s = out.next_state
    return float(np.mean(utils))

