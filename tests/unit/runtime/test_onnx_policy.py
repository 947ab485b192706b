"""ONNX policy runner: contract validation, agreement with torch, single vs batch paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slicetwin.core.actions import ActionCodec
from slicetwin.runtime.onnx_policy import (
    ModelRejected,
    OnnxPolicy,
    build_mlp_onnx,
    default_metadata,
    fresh_policy_onnx,
    init_mlp_weights,
)


@pytest.fixture(scope="module")
def fresh() -> bytes:
    return fresh_policy_onnx(version="t-1", seed=3)


def test_fresh_policy_loads_and_matches_numpy(fresh):
    p = OnnxPolicy(fresh)
    assert p.version == "t-1" and p.n_actions == 4851 and p.codec.n_units == 100
    w = init_mlp_weights((16, 16), 4851, seed=3)
    x = np.random.default_rng(0).random((500, 3)).astype(np.float32) * 3
    h = x
    for i, (W, b) in enumerate(w):
        h = h @ W + b
        if i < len(w) - 1:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(p.logits(x), h, rtol=1e-4, atol=1e-4)
    assert (p.act_batch(x) == h.argmax(1)).mean() > 0.99
    # the IO-bound single path agrees with the batch path, state after state
    single = np.array([p.act(s) for s in x[:200]])
    assert (single == p.act_batch(x[:200])).all()
    assert len(set(single.tolist())) > 1  # not a constant policy


def test_runner_agrees_with_torch_student_via_trainer_export(tmp_path):
    torch = pytest.importorskip("torch")
    export = pytest.importorskip("trainer.export_onnx")
    from trainer.nets import StudentMLP

    torch.manual_seed(0)
    m = StudentMLP(3, 4851, hidden=16)
    path = export.export_policy(m, tmp_path / "s.onnx", n_units=100, version="torch-1")
    p = OnnxPolicy(path.read_bytes())
    assert p.version == "torch-1"
    x = (np.random.default_rng(1).random((2000, 3)) * 3).astype(np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    assert (p.act_batch(x) == ref.argmax(1)).mean() > 0.999
    assert all(p.act(s) == int(r.argmax()) for s, r in zip(x[:100], ref[:100], strict=True))


def _meta(**over):
    m = default_metadata(ActionCodec(), "v")
    m.update({"slicetwin." + k: v for k, v in over.items()})
    return m


@pytest.mark.parametrize("case,reason", [
    ("garbage", "parse"),
    ("empty", "empty"),
    ("wrong_width", "n_actions"),
    ("no_n_units", "metadata"),
    ("slice_order", "metadata"),
    ("scales", "metadata"),
    ("nan", "smoke"),
    ("state_dim", "shape"),
])
def test_bad_models_are_rejected_with_reason(case, reason):
    w = init_mlp_weights((16, 16), 4851, seed=0)
    if case == "garbage":
        blob = b"not an onnx model at all"
    elif case == "empty":
        blob = b""
    elif case == "wrong_width":
        blob = build_mlp_onnx(init_mlp_weights((16, 16), 171), _meta())
    elif case == "no_n_units":
        m = _meta()
        del m["slicetwin.n_units"]
        blob = build_mlp_onnx(w, m)
    elif case == "slice_order":
        blob = build_mlp_onnx(w, _meta(slice_order=json.dumps(["video", "volte", "urllc"])))
    elif case == "scales":
        blob = build_mlp_onnx(w, _meta(state_scales="[1, 1, 1]"))
    elif case == "nan":
        w[-1] = (w[-1][0], np.full_like(w[-1][1], np.nan))
        blob = build_mlp_onnx(w, _meta())
    elif case == "state_dim":
        blob = build_mlp_onnx(init_mlp_weights((16, 16), 4851, in_dim=4), _meta())
    with pytest.raises(ModelRejected) as ei:
        OnnxPolicy(blob)
    assert ei.value.reason == reason
    assert str(ei.value)


def test_codec_expectation_enforced():
    small = ActionCodec(n_units=20)
    blob = build_mlp_onnx(init_mlp_weights((4, 4), small.n_actions), default_metadata(small, "s"))
    p = OnnxPolicy(blob)
    assert p.n_actions == 171
    with pytest.raises(ModelRejected, match="controller serves") as ei:
        OnnxPolicy(blob, expect_codec=ActionCodec())
    assert ei.value.reason == "codec"
