"""Trainer-worker helpers shared by the worker tests: fast settings, a constant ONNX policy."""

from __future__ import annotations

import numpy as np
import torch

from slicetwin.core.actions import ActionCodec
from trainer.export_onnx import to_onnx
from trainer.nets import StudentMLP
from trainer.worker import WorkerSettings

STREAM = "slicetwin:transitions"


def fast_settings(tmp_path, url=None, **kw):
    base = dict(redis_url=url, data_dir=str(tmp_path / "trainer"), min_transitions=100,
                min_new_transitions=1, twin_epochs=15, twin_fit_seconds=3.0, twin_ensemble=2,
                twin_hidden=16, twin_steps=60, rollout_batch=32, finetune_steps=30,
                distill_rounds=60, distill_states=500, gate_rollouts=32, gate_horizon=2,
                batch_size=32, agent_hidden=(32,), read_block_ms=50)
    base.update(kw)
    return WorkerSettings(**base)



def _constant_policy_onnx(units: tuple[int, int, int], version: str) -> bytes:
    codec = ActionCodec()
    a = int(codec.encode(np.asarray(units)))
    m = StudentMLP(3, codec.n_actions, 4)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        last = [x for x in m.modules() if isinstance(x, torch.nn.Linear)][-1]
        last.bias[a] = 10.0
    return to_onnx(m, n_units=100, version=version).SerializeToString()
