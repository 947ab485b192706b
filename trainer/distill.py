"""Policy distillation (paper eq. 12): a large Q-network teacher -> a tiny StudentMLP.

Hard labels (the paper): the teacher's greedy action a* = argmax_a Q(s, a) on states of the
experience pool, student trained with cross-entropy -log softmax(f(s))[a*]. Soft labels (Rusu et
al. 2016, "Policy distillation"): KL(softmax(Q/T) || softmax(f)) with a small temperature T, which
also tells the student which *other* allocations the teacher finds nearly as good.

The budget is counted in rounds (one round = one gradient step on one minibatch; paper: 10,000).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import trange

from trainer.nets import StudentMLP


@dataclass
class DistillConfig:
    hidden: int = 16  # units in each of the student's 2 hidden layers (paper: 4 or 16)
    rounds: int = 10_000  # gradient steps (paper's distillation budget)
    batch_size: int = 256
    lr: float = 3e-3  # Adam; a 16-unit student tolerates a larger step than the teacher's 1e-3
    lr_final: float = 1e-4  # cosine decay to this, which buys the last points of agreement
    mode: str = "hard"  # "hard": CE on the teacher's argmax (eq. 12); "soft": KL on softmax(Q/T)
    temperature: float = 0.01  # soft mode only; relative to the Q scale (Q is standardised first)
    holdout: float = 0.1  # fraction of pool states kept aside to measure agreement
    eval_every: int = 1000
    seed: int = 0
    progress: bool = False


@dataclass
class DistillResult:
    student: StudentMLP
    agreement: float  # top-1 agreement with the teacher on held-out states
    q_regret: float  # mean Q(s, teacher a*) - Q(s, student a) on held-out states (>= 0)
    history: list[dict]
    config: dict


def teacher_q(teacher: nn.Module, states: np.ndarray | torch.Tensor,
              batch: int = 4096) -> torch.Tensor:
    """Teacher Q-values for many states without building a graph."""
    x = torch.as_tensor(np.asarray(states, dtype=np.float32))
    teacher.eval()
    with torch.no_grad():
        return torch.cat([teacher(x[i:i + batch]) for i in range(0, len(x), batch)])


def pool_states(transitions, include_next: bool = True) -> np.ndarray:
    """States of an experience pool (``slicetwin.core.transitions.Transitions``), deduplicated."""
    s = transitions.state if not include_next else np.concatenate(
        [transitions.state, transitions.next_state])
    return np.unique(np.asarray(s, dtype=np.float32), axis=0)


def agreement(student: nn.Module, teacher_actions: torch.Tensor, states: torch.Tensor) -> float:
    with torch.no_grad():
        return float((student(states).argmax(1) == teacher_actions).float().mean())


def _soft_targets(q: torch.Tensor, temperature: float) -> torch.Tensor:
    # Standardise per state so the temperature means the same thing for any reward scale.
    z = (q - q.mean(1, keepdim=True)) / (q.std(1, keepdim=True) + 1e-8)
    return F.softmax(z / temperature, dim=1)


def distill(teacher: nn.Module, states: np.ndarray, cfg: DistillConfig | None = None,
            on_eval: Callable[[dict, StudentMLP], dict | None] | None = None,
            init: StudentMLP | None = None) -> DistillResult:
    """Train a ``StudentMLP`` to imitate ``teacher`` (a module state -> Q over actions).

    ``on_eval(record, student)`` runs every ``eval_every`` rounds and may return extra figures
    (e.g. the student's utility on the simulator) to add to the history. ``init``: start from a
    copy of this student (a publish cycle that refreshes the served student needs far fewer
    rounds than a fresh one); it is not modified.
    """
    cfg = cfg or DistillConfig()
    if cfg.mode not in ("hard", "soft"):
        raise ValueError(f"mode must be 'hard' or 'soft', got {cfg.mode!r}")
    states = np.asarray(states, dtype=np.float32)
    if states.ndim != 2 or len(states) < 2:
        raise ValueError(f"need a (N>=2, state_dim) array of states, got shape {states.shape}")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    idx = rng.permutation(len(states))
    k = max(1, int(round(len(states) * cfg.holdout)))
    x_hold, x_train = torch.from_numpy(states[idx[:k]]), torch.from_numpy(states[idx[k:]])

    q_train = teacher_q(teacher, x_train)
    q_hold = teacher_q(teacher, x_hold)
    a_train, a_hold = q_train.argmax(1), q_hold.argmax(1)
    n_actions = q_train.shape[1]
    # Soft targets for the whole pool would be N x n_actions floats: compute them per batch.
    if init is not None:  # a refresh: continue from the served student (its norm included)
        student = copy.deepcopy(init).train()
    else:
        student = StudentMLP(states.shape[1], n_actions, cfg.hidden)
        teacher_norm = getattr(teacher, "norm", None)
        if teacher_norm is not None and bool(teacher_norm.fitted):  # a teacher of state_norm="data"
            student.norm.fit(x_train)
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.rounds, eta_min=cfg.lr_final)
    history: list[dict] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(x_train)
    for r in trange(1, cfg.rounds + 1, disable=not cfg.progress, desc=f"distill-{cfg.hidden}"):
        b = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
        logits = student(x_train[b])
        if cfg.mode == "hard":
            loss = F.cross_entropy(logits, a_train[b])
        else:
            target = _soft_targets(q_train[b], cfg.temperature)
            loss = F.kl_div(F.log_softmax(logits, 1), target, reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if r % cfg.eval_every == 0 or r == cfg.rounds:
            rec = {"round": r, "loss": float(loss.detach()), "agreement": agreement(student, a_hold, x_hold)}
            if on_eval:
                student.eval()
                rec.update(on_eval(rec, student) or {})
                student.train()
            history.append(rec)
    student.eval()
    with torch.no_grad():
        a_s = student(x_hold).argmax(1)
    regret = float((q_hold.max(1).values - q_hold.gather(1, a_s[:, None])[:, 0]).mean())
    return DistillResult(student, agreement(student, a_hold, x_hold), regret, history, asdict(cfg))
