"""Worker checkpoint: everything a restarted trainer needs to continue where it stopped.

Agent 1's networks, the best twin (bytes), the cycle counter and the versions last published.
Written to a temporary file and renamed (atomic), so a crash mid-write keeps the previous one.
The dataset itself is in the store; the stream's pending entries cover what was in flight.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

NAME = "checkpoint.pt"


def save(root: str | Path, state: dict) -> Path:
    path = Path(root) / NAME
    buf = io.BytesIO()
    torch.save(state, buf)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def load(root: str | Path) -> dict | None:
    path = Path(root) / NAME
    if not path.exists():
        return None
    return torch.load(path, weights_only=True)
