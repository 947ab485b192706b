"""``slicetwin bench policy``: ONNX student inference speed through the controller's runner.

Single decisions go through ``slicetwin.runtime.onnx_policy.OnnxPolicy.act`` (IO binding over
preallocated buffers, one intra-op thread: what the controller runs per request); batches of 256
through an IO binding with preallocated input and output buffers plus a numpy argmax, which is
what a batched report endpoint would do. Each figure includes the argmax.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from slicetwin.core.actions import ActionCodec
from slicetwin.runtime.onnx_policy import OnnxPolicy
from trainer.export_onnx import to_onnx
from trainer.nets import StudentMLP


def _student_blob(hidden: int, n_units: int, seed: int) -> bytes:
    import torch  # lazy: torch


    torch.manual_seed(seed)
    n_actions = ActionCodec(n_units=n_units).n_actions
    return to_onnx(StudentMLP(3, n_actions, hidden), n_units=n_units,
                   version=f"bench-{hidden}").SerializeToString()


def bench_policy(model: str | Path | None = None, hidden: int = 16, n_units: int = 100,
                 n_single: int = 20_000, n_batches: int = 400,
                 seed: int = 0) -> dict:

    blob = Path(model).read_bytes() if model else _student_blob(hidden, n_units, seed)
    pol = OnnxPolicy(blob, intra_op_threads=1)
    batch = 256
    rng = np.random.default_rng(seed)
    states = (rng.random((max(n_single, batch * 8), 3)) * 2.0).astype(np.float32)

    for i in range(min(2000, n_single)):  # warm-up
        pol.act(states[i])
    t_single = np.empty(n_single)
    clock = time.perf_counter_ns
    for i in range(n_single):
        t0 = clock()
        pol.act(states[i])
        t_single[i] = clock() - t0
    t_single /= 1e3

    sess = pol._sess  # the runner's own session: same options as in service
    xb = np.zeros((batch, 3), np.float32)
    yb = np.empty((batch, pol.n_actions), np.float32)
    bind = sess.io_binding()
    bind.bind_input("state", "cpu", 0, np.float32, [batch, 3], xb.ctypes.data)
    bind.bind_output("logits", "cpu", 0, np.float32, [batch, pol.n_actions], yb.ctypes.data)
    n_rows = len(states) - batch
    t_batch = np.empty(n_batches)
    for i in range(n_batches + 20):
        off = (i * batch) % n_rows
        xb[:] = states[off:off + batch]
        t0 = clock()
        sess.run_with_iobinding(bind)
        yb.argmax(1)
        if i >= 20:
            t_batch[i - 20] = clock() - t0
    per_decision = t_batch / 1e3 / batch
    return {
        "bench": "policy",
        "model": str(model) if model else f"student-{hidden}x{hidden} (random init)",
        "n_actions": pol.n_actions,
        "intra_op_threads": 1,
        "single_us_p50": round(float(np.percentile(t_single, 50)), 2),
        "single_us_p99": round(float(np.percentile(t_single, 99)), 2),
        "single_us_mean": round(float(t_single.mean()), 2),
        "batch256_us_per_decision": round(float(np.percentile(per_decision, 50)), 3),
        "batch256_us_per_decision_p99": round(float(np.percentile(per_decision, 99)), 3),
        "n_single": n_single,
        "n_batches": n_batches,
    }


def main_json(**kw) -> str:
    return json.dumps(bench_policy(**kw))
