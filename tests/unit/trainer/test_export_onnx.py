"""ONNX export round trip (torch vs onnxruntime) and refusal of bad files."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from trainer.export_onnx import (
    OnnxModelError,
    compare_with_torch,
    export_policy,
    read_metadata,
    to_onnx,
    validate_onnx,
)
from trainer.nets import QNetwork, StudentMLP

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kind", ["student16", "student4", "teacher", "dueling"])
def test_round_trip_matches_torch_on_10k_states(tmp_path, kind):
    torch.manual_seed(1)
    model = {"student16": lambda: StudentMLP(3, 4851, 16),
             "student4": lambda: StudentMLP(3, 4851, 4),
             "teacher": lambda: QNetwork(3, 4851, hidden=(64, 64)),
             "dueling": lambda: QNetwork(3, 171, hidden=(32, 32), dueling=True)}[kind]()
    n_units = 20 if model.n_actions == 171 else 100
    path = export_policy(model, tmp_path / "p.onnx", n_units=n_units, version="7",
                         metrics={"agreement": 0.99})
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    r = compare_with_torch(model, path, n_states=10_000, seed=3)
    assert r["argmax_agreement"] == 1.0
    assert r["max_abs_diff"] <= 1e-4
    meta = validate_onnx(path)
    assert meta["n_units"] == str(n_units) and meta["version"] == "7"
    assert json.loads(meta["metrics"]) == {"agreement": 0.99}
    assert json.loads(meta["slice_order"]) == ["volte", "video", "urllc"]
    assert meta["n_actions"] == model.n_actions


def test_dynamic_batch_and_contract_names(tmp_path):
    import onnxruntime as ort

    model = StudentMLP(3, 171, 16)
    path = export_policy(model, tmp_path / "p.onnx", n_units=20)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.type, inp.shape[1]) == ("state", "tensor(float)", 3)
    assert (out.name, out.shape[1]) == ("logits", 171)
    for b in (1, 7, 256):
        x = np.random.default_rng(b).random((b, 3), dtype=np.float32)
        assert sess.run(None, {"state": x})[0].shape == (b, 171)


def test_action_count_must_match_n_units():
    with pytest.raises(ValueError, match="4851 actions"):
        to_onnx(StudentMLP(3, 171, 4), n_units=100)


def test_corrupted_file_is_refused(tmp_path):
    path = export_policy(StudentMLP(3, 171, 4), tmp_path / "p.onnx", n_units=20)
    data = bytearray(path.read_bytes())
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(OnnxModelError, match="not a valid ONNX model"):
        validate_onnx(bad)
    with pytest.raises(OnnxModelError, match="not a valid ONNX model"):
        validate_onnx(b"definitely not protobuf \xff\xfe")
    with pytest.raises(OnnxModelError, match="cannot read"):
        validate_onnx(tmp_path / "missing.onnx")


def test_wrong_shape_file_is_refused(tmp_path):
    # A model whose input has 4 features instead of 3.
    m = to_onnx(StudentMLP(3, 171, 4), n_units=20)
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 4
    m.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(
        np.zeros((4, 4), np.float32), m.graph.initializer[0].name))
    with pytest.raises(OnnxModelError, match=r"float32 \[batch, 3\]"):
        validate_onnx(m.SerializeToString())
    # Output width that disagrees with the declared action resolution.
    m = to_onnx(StudentMLP(3, 171, 4), n_units=20)
    for p in m.metadata_props:
        if p.key == "slicetwin.n_units":
            p.value = "100"
    with pytest.raises(OnnxModelError, match=r"\[batch, 4851\]"):
        validate_onnx(m.SerializeToString())
    # Metadata missing.
    m = to_onnx(StudentMLP(3, 171, 4), n_units=20)
    del m.metadata_props[:]
    with pytest.raises(OnnxModelError, match="missing metadata_props"):
        validate_onnx(m.SerializeToString())


def test_metadata_keys(tmp_path):
    m = to_onnx(StudentMLP(3, 171, 4), n_units=20, total_bandwidth_hz=20e6, version="3")
    meta = read_metadata(m)
    for k in ("n_units", "total_bandwidth_hz", "slice_order", "state_scales", "version",
              "created_at", "metrics"):
        assert k in meta
    assert float(meta["total_bandwidth_hz"]) == 20e6
    assert json.loads(meta["state_scales"]) == [100.0, 1000.0, 10.0]


def test_controller_runner_loads_export_and_agrees_with_torch(tmp_path):
    from slicetwin.runtime.onnx_policy import OnnxPolicy

    torch.manual_seed(4)
    model = StudentMLP(3, 4851, 16)
    blob = to_onnx(model, n_units=100, version="s-1").SerializeToString()
    pol = OnnxPolicy(blob)
    assert pol.version == "s-1" and pol.n_actions == 4851
    x = np.random.default_rng(0).random((10_000, 3), dtype=np.float32) * 3
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).argmax(1).numpy()
    assert np.array_equal(pol.act_batch(x), ref)
    assert all(pol.act(x[i]) == ref[i] for i in range(200))


def test_controller_runner_refuses_bad_files(tmp_path):
    from slicetwin.runtime.onnx_policy import ModelRejected, OnnxPolicy

    blob = to_onnx(StudentMLP(3, 171, 4), n_units=20).SerializeToString()
    with pytest.raises(ModelRejected, match="does not parse"):
        OnnxPolicy(blob[: len(blob) // 2])
    m = to_onnx(StudentMLP(3, 171, 4), n_units=20)
    for p in m.metadata_props:
        if p.key == "slicetwin.n_units":
            p.value = "100"
    with pytest.raises(ModelRejected, match="171 logits"):
        OnnxPolicy(m.SerializeToString())
