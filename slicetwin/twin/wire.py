"""Packed arrays for the batch endpoint: base64 of a little-endian C-order buffer plus dtype and
shape. Decoding is a memcpy, so a trainer can push tens of thousands of twin-steps a second
without building nested JSON lists. Pure numpy: shared by the service and ``HttpTwin``."""

from __future__ import annotations

import base64

import numpy as np

DTYPES = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "int64": "<i8"}


def pack(a: np.ndarray) -> dict:
    a = np.asarray(a)
    name = {"f": "float32" if a.dtype.itemsize <= 4 else "float64",
            "i": "int64", "u": "int64", "b": "int32"}[a.dtype.kind]
    buf = np.ascontiguousarray(a, dtype=DTYPES[name])
    return {"dtype": name, "shape": list(a.shape), "data": base64.b64encode(buf.data).decode()}


def unpack(dtype: str, shape: list[int], data: str) -> np.ndarray:
    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {sorted(DTYPES)}")
    if any(int(s) < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as e:
        raise ValueError(f"array data is not valid base64: {e}") from e
    n = int(np.prod(shape)) if shape else 1
    itemsize = np.dtype(DTYPES[dtype]).itemsize
    if len(raw) != n * itemsize:
        raise ValueError(f"array data has {len(raw)} bytes, shape {shape} of {dtype} needs "
                         f"{n * itemsize}")
    return np.frombuffer(raw, dtype=DTYPES[dtype]).reshape(shape)
