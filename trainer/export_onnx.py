"""ONNX export of policies (student and teacher) under the contract in docs/architecture.md.

We build the graph directly with ``onnx.helper`` from the module's weights (Gemm + Relu, plus the
dueling combination when needed) instead of going through ``torch.onnx.export``: the graph is
tiny, the result does not depend on the torch exporter (which in torch 2.x wants onnxscript and
dynamo), and the input/output names and dynamic batch axis are exactly what the contract says.

Contract: input ``state`` float32 [batch, 3] (``slicetwin.core.state.state_from_arrivals``), output
``logits`` float32 [batch, n_actions]; decision = argmax, decoded by ``ActionCodec(n_units)``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from slicetwin.core.actions import ActionCodec
from slicetwin.core.slices import SLICE_NAMES
from slicetwin.core.state import STATE_DIM, STATE_SCALES
from slicetwin.core.utility import UtilityConfig

INPUT_NAME = "state"
OUTPUT_NAME = "logits"
OPSET = 17
META_PREFIX = "slicetwin."
CONTRACT_VERSION = "1"


class OnnxModelError(ValueError):
    """An ONNX file that does not satisfy the SliceTwin policy contract."""


class _GraphBuilder:
    """Accumulates nodes and initializers; ``linear``/``relu`` return the new tensor's name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def _name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def linear(self, x: str, layer: nn.Linear, out: str | None = None) -> str:
        w = layer.weight.detach().cpu().numpy().astype(np.float32)  # (out, in)
        b = (layer.bias.detach().cpu().numpy().astype(np.float32) if layer.bias is not None
             else np.zeros(w.shape[0], np.float32))
        wn, bn = self._name("W"), self._name("B")
        self.inits += [numpy_helper.from_array(np.ascontiguousarray(w.T), wn),
                       numpy_helper.from_array(b, bn)]
        y = out or self._name("gemm")
        # Y = X @ W^T + b with W stored pre-transposed (in, out): plain Gemm, no transB.
        self.nodes.append(helper.make_node("Gemm", [x, wn, bn], [y]))
        return y

    def relu(self, x: str, out: str | None = None) -> str:
        y = out or self._name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [y]))
        return y

    def sequential(self, x: str, seq: nn.Sequential, out: str | None = None) -> str:
        mods = list(seq)
        for i, m in enumerate(mods):
            last = i == len(mods) - 1
            if isinstance(m, nn.Linear):
                x = self.linear(x, m, out if last else None)
            elif isinstance(m, nn.ReLU):
                x = self.relu(x, out if last else None)
            else:
                raise TypeError(f"cannot export layer {type(m).__name__}: only Linear and ReLU")
        return x


@torch.no_grad()
def fold_state_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose fitted ``StateNorm`` lives in its first Linear layer:
    W((x - m) * s) + b = (W * s) x + (b - (W * s) m). The served graph stays Linear/ReLU and
    takes the controller's state unchanged; the model itself is left as it was."""
    norm = getattr(model, "norm", None)
    if norm is None or not bool(norm.fitted):
        return model
    seq = model.net if hasattr(model, "net") else model.body
    if not len(seq) or not isinstance(seq[0], nn.Linear):
        raise TypeError(f"cannot fold the state normalisation of {type(model).__name__}: "
                        "no first Linear layer")
    folded = copy.deepcopy(model)
    first = (folded.net if hasattr(folded, "net") else folded.body)[0]
    w = first.weight * norm.inv_std[None, :]
    first.bias.copy_(first.bias - w @ norm.mean)
    first.weight.copy_(w)
    folded.norm.mean.zero_()
    folded.norm.inv_std.fill_(1.0)
    folded.norm.fitted.fill_(False)
    return folded


def _policy_graph(model: nn.Module) -> tuple[_GraphBuilder, int, int]:
    """Graph for a StudentMLP, a QNetwork (plain or dueling) or a Linear/ReLU Sequential."""
    g = _GraphBuilder()
    x = INPUT_NAME
    if hasattr(model, "net") and isinstance(model.net, nn.Sequential):  # StudentMLP
        g.sequential(x, model.net, OUTPUT_NAME)
    elif hasattr(model, "body") and not getattr(model, "dueling", False):  # QNetwork
        z = g.sequential(x, model.body) if len(model.body) else x
        g.linear(z, model.head, OUTPUT_NAME)
    elif hasattr(model, "body"):  # dueling QNetwork: V + A - mean(A)
        z = g.sequential(x, model.body) if len(model.body) else x
        v = g.sequential(z, model.value)
        a = g.sequential(z, model.advantage)
        m = g._name("amean")
        g.nodes.append(helper.make_node("ReduceMean", [a], [m], axes=[-1], keepdims=1))
        c = g._name("centred")
        g.nodes.append(helper.make_node("Sub", [a, m], [c]))
        g.nodes.append(helper.make_node("Add", [v, c], [OUTPUT_NAME]))
    elif isinstance(model, nn.Sequential):
        g.sequential(x, model, OUTPUT_NAME)
    else:
        raise TypeError(f"cannot export {type(model).__name__}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    in_dim = linears[0].in_features
    with torch.no_grad():
        n_out = int(model(torch.zeros(1, in_dim)).shape[-1])
    return g, in_dim, n_out


def to_onnx(model: nn.Module, *, n_units: int, total_bandwidth_hz: float = 20e6,
            version: str = "0", metrics: Mapping[str, Any] | None = None,
            extra_meta: Mapping[str, str] | None = None,
            utility: UtilityConfig | None = None) -> onnx.ModelProto:
    """Build the ONNX policy model (checked with ``onnx.checker``) from a torch module.

    ``utility``: the weights the policy was trained for (default: the defaults), recorded as
    ``utility_alpha`` / ``utility_beta``; a controller serving other weights refuses it."""
    model = fold_state_norm(model.eval())
    g, in_dim, n_out = _policy_graph(model)
    if in_dim != STATE_DIM:
        raise ValueError(f"policy input must have {STATE_DIM} features, model has {in_dim}")

    n_actions = ActionCodec(total_bandwidth_hz=total_bandwidth_hz, n_units=n_units).n_actions
    if n_out != n_actions:
        raise ValueError(f"model has {n_out} outputs but n_units={n_units} gives {n_actions} actions")
    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", STATE_DIM])
    out = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", n_actions])
    graph = helper.make_graph(g.nodes, "slicetwin_policy", [inp], [out], initializer=g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="slicetwin.trainer", producer_version=CONTRACT_VERSION)
    m.ir_version = 8  # readable by every onnxruntime >= 1.14
    meta = {
        "n_units": str(int(n_units)),
        "total_bandwidth_hz": repr(float(total_bandwidth_hz)),
        "slice_order": json.dumps(list(SLICE_NAMES)),
        "state_scales": json.dumps([float(s) for s in STATE_SCALES]),
        "version": str(version),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": json.dumps(dict(metrics or {}), sort_keys=True),
        "contract": CONTRACT_VERSION,
        "architecture": type(model).__name__,
        **(utility or UtilityConfig()).metadata(),
    }
    meta.update(dict(extra_meta or {}))
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = META_PREFIX + k, str(v)
    onnx.checker.check_model(m, full_check=True)
    return m


def export_policy(model: nn.Module, path: str | Path, **kw) -> Path:
    """Write ``model`` to ``path`` as an ONNX policy; returns the path. See ``to_onnx``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_onnx(model, **kw).SerializeToString()
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: a reader never sees half a model
    return path


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(META_PREFIX)}


def validate_onnx(source: str | Path | bytes) -> dict[str, Any]:
    """Load and check an ONNX policy against the contract; raise ``OnnxModelError`` if it fails.

    Returns the metadata (strings) plus ``n_actions``. Used by tests and by the trainer before
    publishing; the controller uses its own torch-free runner in ``slicetwin/runtime/onnx_policy.py``.
    """
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as e:
        raise OnnxModelError(f"cannot read ONNX model: {e}") from e
    try:
        m = onnx.load_from_string(data)
        onnx.checker.check_model(m)
    except Exception as e:  # protobuf DecodeError, ValidationError, ...
        raise OnnxModelError(f"not a valid ONNX model ({type(e).__name__}: {e})") from e
    ins = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    if len(ins) != 1 or ins[0].name != INPUT_NAME:
        raise OnnxModelError(f"expected one input named {INPUT_NAME!r}, got {[i.name for i in ins]}")
    if len(m.graph.output) != 1 or m.graph.output[0].name != OUTPUT_NAME:
        raise OnnxModelError(f"expected one output named {OUTPUT_NAME!r}, "
                             f"got {[o.name for o in m.graph.output]}")

    def dims(vi) -> tuple[int, list]:
        t = vi.type.tensor_type
        return t.elem_type, [d.dim_value if d.HasField("dim_value") else d.dim_param
                             for d in t.shape.dim]

    et, ds = dims(ins[0])
    if et != TensorProto.FLOAT or len(ds) != 2 or ds[1] != STATE_DIM:
        raise OnnxModelError(f"input {INPUT_NAME!r} must be float32 [batch, {STATE_DIM}], "
                             f"got elem_type {et} shape {ds}")
    et, dso = dims(m.graph.output[0])
    meta = read_metadata(m)
    missing = [k for k in ("n_units", "total_bandwidth_hz", "slice_order", "state_scales",
                           "version", "created_at", "metrics") if k not in meta]
    if missing:
        raise OnnxModelError(f"missing metadata_props: {[META_PREFIX + k for k in missing]}")

    try:
        n_actions = ActionCodec(total_bandwidth_hz=float(meta["total_bandwidth_hz"]),
                                n_units=int(meta["n_units"])).n_actions
    except ValueError as e:
        raise OnnxModelError(f"bad action metadata: {e}") from e
    if et != TensorProto.FLOAT or len(dso) != 2 or dso[1] != n_actions:
        raise OnnxModelError(f"output {OUTPUT_NAME!r} must be float32 [batch, {n_actions}] for "
                             f"n_units={meta['n_units']}, got elem_type {et} shape {dso}")
    if json.loads(meta["slice_order"]) != list(SLICE_NAMES):
        raise OnnxModelError(f"slice order {meta['slice_order']} differs from {list(SLICE_NAMES)}")
    try:
        UtilityConfig.from_metadata(meta)  # absent keys: the defaults
    except ValueError as e:
        raise OnnxModelError(f"bad utility metadata: {e}") from e
    return {**meta, "n_actions": n_actions}


def compare_with_torch(model: nn.Module, onnx_path: str | Path, n_states: int = 10_000,
                       seed: int = 0) -> dict[str, float]:
    """Run torch and onnxruntime on the same random states; report agreement and max |diff|.

    States are drawn over a wide range (0 to 3x the typical load per slice) so every ReLU pattern
    the policy meets in service is exercised.
    """

    rng = np.random.default_rng(seed)
    x = (rng.random((n_states, STATE_DIM)) * 3.0).astype(np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    return {"n_states": n_states,
            "argmax_agreement": float(np.mean(ref.argmax(1) == got.argmax(1))),
            "max_abs_diff": float(np.max(np.abs(ref - got)))}
