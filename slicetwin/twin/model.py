"""The learned digital twin: LSTM transition model + reward/KPI DNN, a K-member ensemble.

Paper (eq. 7): a state-transition model s_{t+1} = f(history, a_t) and a reward model
r_t = g(s_t, a_t), both fitted by MSE. We keep both and add what model-based RL needs:
- generative heads (mean and variance; the mean is still fitted by the paper's MSE), sampled
  at step time, so rollouts show the traffic's noise rather than its average;
- an ensemble whose disagreement is the reported (epistemic) uncertainty;
- a KPI head (SSR per slice and SE), from which utility and the shaped reward are computed with
  the *current* ``RewardShaper``: a rising reward threshold never leaves a learned reward stale.
  The paper's direct reward regression stays available (``reward_source="direct"``).

Protocol used by Algorithm 1 and the HTTP client: ``fit``, ``reset``, ``step``, ``predict``.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch
from tqdm import tqdm

from slicetwin.core.actions import ActionCodec
from slicetwin.core.state import STATE_DIM, STATE_SCALES
from slicetwin.core.transitions import Transitions
from slicetwin.core.utility import RewardShaper, UtilityConfig, ssr
from slicetwin.twin.config import TwinConfig
from slicetwin.twin.history import history_index
from slicetwin.twin.nets import RewardNet, TransitionNet
from slicetwin.twin.rollout import TwinRollouts

FORMAT = "slicetwin-twin/1"
_STAT_NAMES = ("s_mean", "s_std", "d_mean", "d_std", "se_mean", "se_std", "u_mean", "u_std")


class Twin(TwinRollouts):
    """Batched rollouts of a fitted twin: ``reset(states)`` then ``step(actions)``."""

    def __init__(self, config: TwinConfig | None = None, shaper: RewardShaper | None = None,
                 utility: UtilityConfig | None = None):
        self.config = config or TwinConfig()
        self.shaper = shaper or RewardShaper()
        self.utility_config = utility or UtilityConfig()
        self.codec = ActionCodec(n_units=self.config.n_units)
        c = self.config
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG
            torch.manual_seed(c.seed)
            self.transition = TransitionNet(c.ensemble, STATE_DIM, 3, c.lstm_hidden,
                                            c.head_hidden, c.min_logvar, c.max_logvar)
            self.reward_net = RewardNet(c.ensemble, 6 * c.reward_context + STATE_DIM,
                                        c.reward_hidden, c.min_logvar, c.max_logvar)
        self.stats = {k: torch.zeros(STATE_DIM if k[0] in "sd" else 1) for k in _STAT_NAMES}
        for k in ("s_std", "d_std", "se_std", "u_std"):
            self.stats[k] += 1.0
        self.metrics: dict = {}
        self.fitted = False
        self._init_rollouts(c.seed)

    # ------------------------------------------------------------------ features
    @property
    def history_len(self) -> int:
        return self.config.history

    @property
    def n_actions(self) -> int:
        return self.codec.n_actions

    def _action_features(self, actions: np.ndarray) -> np.ndarray:
        frac = self.codec.decode(actions).astype(np.float32) / self.codec.n_units
        return (frac - 1.0 / 3.0) * 3.0

    def _norm_s(self, s: torch.Tensor) -> torch.Tensor:
        return (s - self.stats["s_mean"]) / self.stats["s_std"]

    def _sequence(self, states: np.ndarray, actions: np.ndarray) -> torch.Tensor:
        """(B, H, 3) states + (B, H) action indices -> (B, H, 6) normalised LSTM input."""
        s = self._norm_s(torch.as_tensor(states, dtype=torch.float32))
        a = torch.as_tensor(self._action_features(actions))
        return torch.cat([s, a], dim=-1)

    def _reward_input(self, seq: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        r = self.config.reward_context
        ctx = seq[..., -r:, :].flatten(-2)
        return torch.cat([ctx, self._norm_s(next_state)], dim=-1)

    def pad_history(self, states: np.ndarray, actions: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Cut or edge-pad (B, L, 3) states and (B, L) actions (last = the action to apply;
        -1 = unknown past action, filled from the next known one) to length H."""
        h = self.config.history
        states = np.asarray(states, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.int64)
        if states.shape[1] >= h:
            states, actions = states[:, -h:], actions[:, -h:].copy()
        else:
            pad = h - states.shape[1]
            states = np.concatenate([np.repeat(states[:, :1], pad, axis=1), states], axis=1)
            actions = np.concatenate([np.repeat(actions[:, :1], pad, axis=1), actions], axis=1)
        for j in range(h - 2, -1, -1):
            actions[:, j] = np.where(actions[:, j] < 0, actions[:, j + 1], actions[:, j])
        return np.require(states, np.float32, ["C", "W"]), actions

    @contextmanager
    def _threads(self):
        n, want = torch.get_num_threads(), self.config.threads
        if want and want != n:
            torch.set_num_threads(want)
        try:
            yield
        finally:
            if want and want != n:
                torch.set_num_threads(n)

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Transitions, progress: bool = False) -> dict:
        """Fit both models on ``data`` (consecutive windows of a cell form histories).

        Returns fit metrics, measured on a random validation split of ``data``.
        """
        with self._threads():
            return self._fit(data, progress)

    def _fit(self, data: Transitions, progress: bool) -> dict:
        c = self.config
        t0 = time.perf_counter()
        if len(data) < 10:
            raise ValueError(f"need at least 10 transitions to fit the twin, got {len(data)}")
        if data.state.shape[1] != STATE_DIM:
            raise ValueError(f"twin expects state width {STATE_DIM}, got {data.state.shape[1]}")
        rng = np.random.default_rng(c.seed)
        hidx = history_index(data, c.history)
        n = len(data)
        perm = rng.permutation(n)
        n_val = max(1, int(round(n * c.val_fraction)))
        val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])

        s = data.state.astype(np.float32)
        d = (data.next_state - data.state).astype(np.float32)
        st = {
            "s_mean": s[tr].mean(0), "s_std": s[tr].std(0) + 1e-3,
            "d_mean": d[tr].mean(0), "d_std": d[tr].std(0) + 1e-3,
            "se_mean": data.se[tr].mean(keepdims=True), "se_std": data.se[tr].std(keepdims=True) + 1e-3,
            "u_mean": data.utility[tr].mean(keepdims=True),
            "u_std": data.utility[tr].std(keepdims=True) + 1e-3,
        }
        self.stats = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in st.items()}

        seq = self._sequence(s[hidx], data.action[hidx])  # (N, H, 6)
        nxt = torch.as_tensor(data.next_state, dtype=torch.float32)
        rin = self._reward_input(seq, nxt)
        y_d = (torch.as_tensor(d) - self.stats["d_mean"]) / self.stats["d_std"]
        y_k = torch.cat([
            torch.as_tensor(ssr(data.sla_met, data.arrived), dtype=torch.float32),
            (torch.as_tensor(data.se, dtype=torch.float32)[:, None] - self.stats["se_mean"])
            / self.stats["se_std"]], dim=-1)
        y_r = torch.stack([
            (torch.as_tensor(data.utility, dtype=torch.float32) - self.stats["u_mean"][0])
            / self.stats["u_std"][0], torch.as_tensor(data.reward, dtype=torch.float32)], dim=-1)

        params = list(self.transition.parameters()) + list(self.reward_net.parameters())
        opt = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        k = c.ensemble
        boot = (rng.integers(0, len(tr), size=(k, len(tr))) if c.bootstrap
                else np.tile(np.arange(len(tr)), (k, 1)))
        boot = tr[boot]
        bs = min(c.batch_size, len(tr))
        n_batches = max(1, len(tr) // bs)
        best, best_state, bad, epochs_run = math.inf, None, 0, 0
        bar = None
        if progress:
            bar = tqdm(total=c.epochs, desc="fit twin", leave=False)
        for _ in range(c.epochs):
            epochs_run += 1
            self.transition.train()
            self.reward_net.train()
            order = np.argsort(rng.random((k, len(tr))), axis=1)
            rows_all = np.take_along_axis(boot, order, axis=1)
            for b in range(n_batches):
                rows = torch.as_tensor(rows_all[:, b * bs:(b + 1) * bs])
                loss = self._loss(seq[rows], rin[rows], y_d[rows], y_k[rows], y_r[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                vrows = torch.as_tensor(np.tile(val, (k, 1)))
                vloss = self._mse(seq[vrows], rin[vrows], y_d[vrows], y_k[vrows])
            if vloss < best - 1e-5:
                best, bad = vloss, 0
                best_state = (copy.deepcopy(self.transition.state_dict()),
                              copy.deepcopy(self.reward_net.state_dict()))
            else:
                bad += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(val_mse=f"{vloss:.4f}")
            if bad >= c.patience or time.perf_counter() - t0 > c.max_fit_seconds:
                break
        if bar is not None:
            bar.close()
        if best_state is not None:
            self.transition.load_state_dict(best_state[0])
            self.reward_net.load_state_dict(best_state[1])
        self.fitted = True
        m = self.evaluate(data[val], context=data, rows=val)
        m.update(n_train=int(len(tr)), n_val=int(n_val), epochs=epochs_run,
                 fit_seconds=round(time.perf_counter() - t0, 3))
        self.metrics = m
        return m

    def _loss(self, seq, rin, y_d, y_k, y_r) -> torch.Tensor:
        mu_d, lv_d = self.transition(seq)
        mu_k, lv_k, direct = self.reward_net(rin)
        nll_mean_grad = self.config.loss == "nll"

        def gauss(mu, lv, y):
            m = mu if nll_mean_grad else mu.detach()
            nll = (0.5 * ((y - m) ** 2 * torch.exp(-lv) + lv)).mean()
            mse = ((mu - y) ** 2).mean()
            return nll if nll_mean_grad else nll + mse

        return gauss(mu_d, lv_d, y_d) + gauss(mu_k, lv_k, y_k) + ((direct - y_r) ** 2).mean()

    def _mse(self, seq, rin, y_d, y_k) -> float:
        mu_d, _ = self.transition(seq)
        mu_k, _, _ = self.reward_net(rin)
        return float(((mu_d - y_d) ** 2).mean() + ((mu_k - y_k) ** 2).mean())

    # ------------------------------------------------------------------ prediction
    def predict(self, states: np.ndarray, actions: np.ndarray, t: int | np.ndarray = 0,
                seed: int | None = None, sample: bool | None = None) -> dict[str, np.ndarray]:
        """One batched twin step from explicit histories (stateless; the service calls this).

        states: (B, L, 3) with the current state last; actions: (B, L) with the action to apply
        now last (earlier entries: actions applied after each past state, -1 if unknown).
        Histories shorter or longer than H are edge-padded or cut. ``seed`` makes sampling
        reproducible (the same seed gives the same draw in any process).
        """
        with self._threads(), torch.inference_mode():
            return self._predict(states, actions, t, seed, sample)

    def _predict(self, states, actions, t, seed, sample) -> dict[str, np.ndarray]:
        states = np.asarray(states, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.int64)
        if states.ndim != 3 or states.shape[-1] != STATE_DIM:
            raise ValueError(f"states must have shape (B, L, {STATE_DIM}), got {states.shape}")
        if actions.shape != states.shape[:2]:
            raise ValueError(f"actions shape {actions.shape} != states shape {states.shape[:2]}")
        if states.shape[1] == 0:
            raise ValueError("history is empty: give at least the current state")
        if not np.isfinite(states).all():
            raise ValueError("states contain NaN or infinity")
        if (actions[:, -1] < 0).any() or (actions >= self.n_actions).any():
            raise ValueError(f"action index out of range [0, {self.n_actions})")
        sample = self.config.sample if sample is None else sample
        states, actions = self.pad_history(states, actions)
        b, k = states.shape[0], self.config.ensemble
        rng = np.random.default_rng(seed)
        member = rng.integers(0, k, size=b)
        eps_d = rng.standard_normal((b, STATE_DIM)).astype(np.float32)
        eps_k = rng.standard_normal((b, RewardNet.N_KPI)).astype(np.float32)
        ar = torch.arange(b)
        mem = torch.as_tensor(member)

        seq = self._sequence(states, actions)  # (B, H, 6), shared by all members
        mu_d, lv_d = self.transition(seq)  # (K, B, 3)
        if sample:
            z = mu_d[mem, ar] + torch.exp(0.5 * lv_d[mem, ar]) * torch.as_tensor(eps_d)
        else:
            z = mu_d.mean(0)
        cur = torch.as_tensor(states[:, -1])
        nxt = torch.clamp(cur + self.stats["d_mean"] + self.stats["d_std"] * z, min=0.0)

        rin = self._reward_input(seq, nxt).unsqueeze(0).expand(k, -1, -1)
        mu_k, lv_k, direct = self.reward_net(rin)  # (K, B, 4), (K, B, 2)
        if sample:
            kp = mu_k[mem, ar] + torch.exp(0.5 * lv_k[mem, ar]) * torch.as_tensor(eps_k)
            dr = direct[mem, ar]
        else:
            kp, dr = mu_k.mean(0), direct.mean(0)
        spread = torch.cat([mu_d, mu_k], dim=-1).std(0, unbiased=False) if k > 1 else \
            torch.zeros(b, 7)
        uncertainty = torch.sqrt((spread ** 2).mean(-1))

        nxt_np = nxt.numpy()
        ssr_ = np.clip(kp[:, :3].numpy(), 0.0, 1.0).astype(np.float64)
        se = np.maximum(kp[:, 3].numpy() * float(self.stats["se_std"][0])
                        + float(self.stats["se_mean"][0]), 0.0).astype(np.float64)
        arrived = nxt_np.astype(np.float64) * STATE_SCALES
        utility_direct = dr[:, 0].numpy() * float(self.stats["u_std"][0]) + float(self.stats["u_mean"][0])
        reward_direct = dr[:, 1].numpy()
        if self.config.reward_source == "kpi":
            utility = self.utility_config.utility(se, ssr_)
            reward = self.shaper.reward(utility, t)
        else:
            utility, reward = utility_direct, reward_direct
        f32 = np.float32
        return {
            "next_state": nxt_np.astype(f32), "reward": np.asarray(reward, f32),
            "utility": np.asarray(utility, f32), "uncertainty": uncertainty.numpy().astype(f32),
            "arrived": arrived.astype(f32), "sla_met": (ssr_ * arrived).astype(f32),
            "se": se.astype(f32), "ssr": ssr_.astype(f32),
            "utility_direct": utility_direct.astype(f32), "reward_direct": reward_direct.astype(f32),
        }

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data: Transitions, context: Transitions | None = None,
                 rows: np.ndarray | None = None) -> dict:
        """One-step errors of the ensemble mean vs persistence, and calibration, on ``data``.

        ``context``/``rows``: take histories from a larger trace (rows of ``context``)."""
        with self._threads(), torch.inference_mode():
            return self._evaluate(data, context, rows)

    def _evaluate(self, data, context, rows) -> dict:
        ctx = data if context is None else context
        rows = np.arange(len(data)) if rows is None else rows
        hidx = history_index(ctx, self.config.history, rows)
        st, ac = ctx.state[hidx], ctx.action[hidx]
        out = self.predict(st, ac, t=0, sample=False)
        y = data.next_state
        err = out["next_state"] - y
        pers = data.state - y
        mu, lv = self.transition(self._sequence(st, ac))
        mix_mu = mu.mean(0)
        mix_var = torch.exp(lv).mean(0) + mu.var(0, unbiased=False)
        yz = (torch.as_tensor(y - data.state) - self.stats["d_mean"]) / self.stats["d_std"]
        z = ((yz - mix_mu) / torch.sqrt(mix_var)).abs().numpy().ravel()
        levels = np.linspace(0.1, 0.9, 9)
        cover = np.array([(z <= NormalDist().inv_cdf((1 + p) / 2)).mean() for p in levels])
        true_ssr = ssr(data.sla_met, data.arrived)
        return {
            "next_state_rmse": float(np.sqrt((err ** 2).mean())),
            "persistence_rmse": float(np.sqrt((pers ** 2).mean())),
            "next_state_rmse_per_slice": np.sqrt((err ** 2).mean(0)).round(5).tolist(),
            "ssr_rmse": float(np.sqrt(((out["ssr"] - true_ssr) ** 2).mean())),
            "se_rmse": float(np.sqrt(((out["se"] - data.se) ** 2).mean())),
            "utility_rmse": float(np.sqrt(((out["utility"] - data.utility) ** 2).mean())),
            "utility_direct_rmse": float(np.sqrt(((out["utility_direct"] - data.utility) ** 2).mean())),
            "calibration_error": float(np.abs(cover - levels).mean()),
        }

    # ------------------------------------------------------------------ persistence
    def config_json(self) -> str:
        return self.config.to_json()

    def to_bytes(self) -> bytes:
        """One self-describing blob (config JSON, normaliser stats, weights, fit metrics)."""
        buf = io.BytesIO()
        torch.save({
            "format": FORMAT, "config": self.config.to_json(),
            "shaper": json.dumps(asdict(self.shaper)),
            "utility": json.dumps(asdict(self.utility_config)),
            "metrics": json.dumps(self.metrics), "fitted": self.fitted,
            "stats": self.stats, "transition": self.transition.state_dict(),
            "reward": self.reward_net.state_dict()}, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, config_json: str | None = None) -> Twin:
        try:
            raw = torch.load(io.BytesIO(blob), weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad blob
            raise ValueError(f"not a twin model blob: {e}") from e
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} blob")
        cfg = TwinConfig.from_json(config_json or raw["config"])
        sh = json.loads(raw["shaper"])
        ut = json.loads(raw["utility"])
        twin = cls(cfg, RewardShaper(**sh), UtilityConfig(alpha=ut["alpha"], beta=tuple(ut["beta"])))
        twin.transition.load_state_dict(raw["transition"])
        twin.reward_net.load_state_dict(raw["reward"])
        twin.stats = {k: v.clone() for k, v in raw["stats"].items()}
        twin.metrics = json.loads(raw["metrics"])
        twin.fitted = bool(raw["fitted"])
        return twin

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Twin:
        return cls.from_bytes(Path(path).read_bytes())
