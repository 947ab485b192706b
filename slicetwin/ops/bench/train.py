"""``slicetwin bench train``: training throughput of an agent on the simulator, one JSON line.

- ``grad_steps_per_s``: gradient steps on batches from a replay of real simulator data;
- ``real_steps_per_s``: real interactions per second of acting + simulating + storing (no
  updates), the floor a run cannot beat;
- ``train_interactions_per_s``: the full baseline loop (act, simulate, store, one update every
  ``train_every`` interactions) at the agent's defaults.
"""

from __future__ import annotations

import json
import time

import numpy as np

from slicetwin.core.state import STATE_DIM
from trainer.agents import make_agent
from trainer.agents.envs import RealEnv, SimEnv
from trainer.agents.loop import Learner, run


def bench_train(algo: str = "ddqn", n_cells: int = 4, grad_steps: int = 200,
                interactions: int = 2_000, seed: int = 0, threads: int = 1) -> dict:
    import torch  # lazy: torch


    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    real = RealEnv(SimEnv(n_cells=n_cells, seed=seed))
    agent = make_agent(algo, STATE_DIM, real.env.n_actions, seed=seed)
    learner = Learner(agent, rng)
    state = real.reset()
    # acting + simulating + storing, no updates
    t0 = time.perf_counter()
    state, _ = run(learner, real, state, interactions // n_cells, lambda: 0.1, learn=False)
    real_s = time.perf_counter() - t0
    # pure gradient steps
    learner.train(5)
    t0 = time.perf_counter()
    learner.train(grad_steps)
    grad_s = time.perf_counter() - t0
    # the whole loop at the agent's defaults
    n0, u0 = real.interactions, learner.updates
    t0 = time.perf_counter()
    run(learner, real, state, interactions // n_cells, lambda: 0.1)
    loop_s = time.perf_counter() - t0
    return {"bench": "train", "algo": algo, "n_actions": int(real.env.n_actions),
            "hidden": list(agent.cfg.hidden), "batch_size": agent.cfg.batch_size,
            "n_cells": n_cells, "torch_threads": threads,
            "grad_steps_per_s": round(grad_steps / grad_s, 1),
            "ms_per_grad_step": round(1e3 * grad_s / grad_steps, 3),
            "real_steps_per_s": round(interactions / real_s, 1),
            "train_interactions_per_s": round((real.interactions - n0) / loop_s, 1),
            "train_every": agent.cfg.train_every, "updates_in_loop": learner.updates - u0}


def main_json(**kw) -> str:
    return json.dumps(bench_train(**kw))
