"""Twin hyperparameters: one dataclass, documented defaults, JSON round trip for the registry."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass
class TwinConfig:
    # --- model -----------------------------------------------------------------------------
    history: int = 4  # H: (state, action) pairs the LSTM sees; 4 windows = 0.8 s of context
    ensemble: int = 5  # K members, trained as one batched model; disagreement = uncertainty
    lstm_hidden: int = 32  # transition model: LSTM width (64 was no more accurate, 2x slower)
    head_hidden: int = 32  # transition model: MLP head after the LSTM
    reward_hidden: tuple[int, ...] = (64, 64)  # reward/KPI DNN (paper: a DNN on (s, a))
    reward_context: int = 2  # last pairs of the history the reward DNN sees (backlog memory)
    min_logvar: float = -10.0  # soft bounds on predicted log-variance (normalised units)
    max_logvar: float = 1.0
    # --- fitting ---------------------------------------------------------------------------
    loss: str = "mse+nll"  # "mse+nll": mean by the paper's MSE (eq. 7), variance by Gaussian NLL
    #   on the detached mean; "nll": both by Gaussian NLL
    lr: float = 2e-3  # Adam
    weight_decay: float = 1e-5
    batch_size: int = 256
    epochs: int = 200  # upper bound; early stopping on the validation split usually ends sooner
    patience: int = 20  # epochs without validation improvement before stopping
    max_fit_seconds: float = 60.0  # wall-clock cap on a fit (CPU, shared machine)
    val_fraction: float = 0.15  # random validation split inside fit() (early stopping, calibration)
    bootstrap: bool = True  # each member sees its own bootstrap resample of the training rows
    # --- rollouts --------------------------------------------------------------------------
    sample: bool = True  # step() samples a member and its Gaussian; False -> ensemble mean
    reward_source: str = "kpi"  # "kpi": reward from predicted KPIs with the current shaper;
    #   "direct": the paper's reward DNN output (stale if the threshold moved since collection)
    seed: int = 0
    threads: int = 1  # torch intra-op threads inside fit/predict (0: leave torch's setting).
    #   1 is fastest on a shared 2-core CPU: 2 threads under load ran predict 5-10x slower
    n_units: int = 100  # action codec resolution the twin was fitted with (100 -> 4851 actions)

    def __post_init__(self) -> None:
        if self.history < 1 or self.ensemble < 1:
            raise ValueError("history and ensemble must be >= 1")
        if not 1 <= self.reward_context <= self.history:
            raise ValueError("reward_context must be in [1, history]")
        if self.loss not in ("mse+nll", "nll"):
            raise ValueError(f"unknown loss {self.loss!r}")
        if self.reward_source not in ("kpi", "direct"):
            raise ValueError(f"unknown reward_source {self.reward_source!r}")
        self.reward_hidden = tuple(int(h) for h in self.reward_hidden)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TwinConfig:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
