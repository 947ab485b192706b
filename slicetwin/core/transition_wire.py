"""The transitions stream's entry format, shared by the controller (writer) and trainer (reader).

Stream entry: one field ``t`` holding a JSON array in :class:`Transition` field order
(``cell_id, window, state, action, reward, utility, next_state, arrived, sla_met, se,
policy_version, fallback, explored, ts``); :func:`decode` turns an entry into a dict with those
names plus ``cell`` (a stable int id of ``cell_id``, crc32) for ``slicetwin.core.transitions.Transitions``.
``window`` is the window of ``next_state``; ``action`` was in force during that window. One JSON
array per entry keeps the writer cheap: a whole batch goes to Redis as a single Lua call
(``XADD ... MAXLEN ~`` per entry inside Redis), ~20x less client CPU than one pipelined XADD
with fifteen fields per transition.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from itertools import repeat
from typing import NamedTuple

import numpy as np

from slicetwin.core.transitions import Transitions


class Transition(NamedTuple):
    cell_id: str
    window: int  # window of next_state (the one whose KPIs gave the reward)
    state: list  # normalised state of the previous window
    action: int  # action index in force during ``window``
    reward: float
    utility: float
    next_state: list
    arrived: list  # KPIs of ``window``
    sla_met: list
    se: float
    policy_version: str
    fallback: bool
    explored: bool
    ts: float


class TransitionBatch(NamedTuple):
    """Many transitions as columns (the batch endpoint); expanded by the writer thread."""

    cell_id: list
    window: list
    state: list  # list of lists (from cell memory)
    action: list
    reward: object  # numpy arrays from here on
    utility: object
    next_state: object
    arrived: object
    sla_met: object
    se: object
    policy_version: list
    fallback: list
    explored: list
    ts: float

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.cell_id)

    def expand(self) -> list[Transition]:
        r, u, ns = self.reward.tolist(), self.utility.tolist(), self.next_state.tolist()
        ar, sl, se = self.arrived.tolist(), self.sla_met.tolist(), self.se.tolist()
        # zip + _make build the rows in C (a NamedTuple's __new__ is a Python call per row)
        return list(map(Transition._make, zip(
            self.cell_id, self.window, self.state, self.action, r, u, ns, ar, sl, se,
            self.policy_version, self.fallback, self.explored, repeat(self.ts, len(self.cell_id)),
            strict=True)))


def cell_number(cell_id: str) -> int:
    """Stable integer id of a cell (for ``Transitions.cell``)."""
    return zlib.crc32(cell_id.encode())


# one encoder for every entry: json.dumps with non-default separators builds a new
# JSONEncoder per call (~1 us of the ~5 us an entry costs)
compact_json = json.JSONEncoder(separators=(",", ":")).encode


def encode(t: Transition) -> dict[str, str]:
    """Stream fields of one transition."""
    return {"t": compact_json(t)}


def decode(fields: dict) -> dict:
    """Inverse of :func:`encode` (accepts bytes keys/values from redis-py)."""
    f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    out = dict(zip(Transition._fields, json.loads(f["t"]), strict=True))
    out["cell"] = cell_number(out["cell_id"])
    return out


def to_transitions(decoded: Iterable[dict]):
    """Decoded entries -> ``slicetwin.core.transitions.Transitions``."""
    rows = list(decoded)
    if not rows:
        return Transitions.empty()
    col = lambda k, dt: np.asarray([r[k] for r in rows], dtype=dt)  # noqa: E731
    return Transitions(state=col("state", np.float32), action=col("action", np.int64),
                       reward=col("reward", np.float32), utility=col("utility", np.float32),
                       next_state=col("next_state", np.float32), arrived=col("arrived", np.float32),
                       sla_met=col("sla_met", np.float32), se=col("se", np.float32),
                       cell=col("cell", np.int64), window=col("window", np.int64))
