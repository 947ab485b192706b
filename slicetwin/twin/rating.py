"""Rate many candidate actions at the same histories: the twin as a planner.

Planning asks the twin about every split at one real state, and the histories of those questions
differ only in the newest action. So the LSTM runs the H-1 older (state, action) pairs once per
state, and one more step per candidate from that shared (h, c): the same numbers as ``predict``
on the repeated batch, for about a quarter of the LSTM's work.

Besides the utility at the ensemble mean (what ``predict(sample=False)`` gives), each member's
own utility is returned: member k's next state fed to reward member k. Their spread is the
ensemble's disagreement about that split, which a planner maximising over thousands of splits
should distrust (the highest rating is biased upwards where the members disagree).
"""

from __future__ import annotations

import numpy as np
import torch


def rate_actions(twin, states: np.ndarray, past: np.ndarray, actions: np.ndarray,
                 members: bool = False) -> np.ndarray:
    """Every action of ``actions`` (A,) after each history: ``states`` (R, H, 3), oldest first,
    the current state last; ``past`` (R, H-1), the action applied after each older state.

    Returns the utility (R, A) at the ensemble mean, or with ``members`` (K, R, A) each
    member's.
    """
    states = np.asarray(states, np.float32)
    past = np.asarray(past, np.int64)
    actions = np.asarray(actions, np.int64)
    r, h = states.shape[:2]
    if h != twin.history_len or past.shape != (r, h - 1):
        raise ValueError(f"need states (R, {twin.history_len}, 3) and past (R, "
                         f"{twin.history_len - 1}), got {states.shape} and {past.shape}")
    a = len(actions)
    with twin._threads(), torch.inference_mode():
        seq = twin._sequence(states, np.concatenate([past, past[:, -1:]], axis=1))  # (R, H, 6)
        feats = torch.as_tensor(twin._action_features(actions))  # (A, 3)
        last = torch.cat([seq[:, -1:, :3].expand(r, a, 3), feats.expand(r, a, 3)], -1)
        last = last.reshape(r * a, 1, 6)  # the newest pair of every (state, candidate)
        lstm = twin.transition.lstm.members
        hid = []
        for m in lstm:
            if h > 1:
                _, (h0, c0) = m(seq[:, :-1])
            else:
                h0 = c0 = torch.zeros(1, r, m.hidden_size)
            rep = (h0.repeat_interleave(a, 1), c0.repeat_interleave(a, 1))
            hid.append(m(last, rep)[1][0][-1])
        out = twin.transition.head(torch.cat([torch.stack(hid), last[:, 0].expand(
            len(hid), -1, -1)], -1))
        mu_d = out[..., :3]  # (K, R*A, 3) normalised state change per member
        cur = torch.as_tensor(states[:, -1]).repeat_interleave(a, 0)
        st = twin.stats

        def next_state(z):
            return torch.clamp(cur + st["d_mean"] + st["d_std"] * z, min=0.0)

        rc = twin.config.reward_context
        ctx = torch.cat([seq[:, h - rc:h - 1].flatten(1).repeat_interleave(a, 0),
                         last[:, 0]], -1) if rc > 1 else last[:, 0]
        k = mu_d.shape[0]
        if members:  # member k's next state to reward member k
            rin = torch.cat([ctx.expand(k, -1, -1), twin._norm_s(next_state(mu_d))], -1)
        else:  # the ensemble-mean next state to every reward member, as ``predict``
            rin = torch.cat([ctx, twin._norm_s(next_state(mu_d.mean(0)))], -1).expand(k, -1, -1)
        mu_k, _, direct = twin.reward_net(rin)  # (K, R*A, 4), (K, R*A, 2)
        if twin.config.reward_source == "direct":  # the paper's reward DNN: utility directly
            mu_k = direct[..., :1]
    se_std, se_mean = float(st["se_std"][0]), float(st["se_mean"][0])
    u_std, u_mean = float(st["u_std"][0]), float(st["u_mean"][0])

    def util(kp: torch.Tensor) -> np.ndarray:
        kp = kp.numpy()
        if twin.config.reward_source == "direct":
            return kp[..., 0] * u_std + u_mean
        ssr_ = np.clip(kp[..., :3], 0.0, 1.0).astype(np.float64)
        se = np.maximum(kp[..., 3] * se_std + se_mean, 0.0).astype(np.float64)
        return twin.utility_config.utility(se, ssr_)

    if members:
        return util(mu_k).reshape(k, r, a).astype(np.float32)
    return util(mu_k.mean(0)).reshape(r, a).astype(np.float32)
