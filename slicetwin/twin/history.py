"""Stitch consecutive windows of one cell into the (state, action) histories the LSTM reads.

A Transitions row i holds s_t, the action applied during window t+1 and s_{t+1}; its
``window`` is t+1. Its predecessor is the row of the same cell whose window is t. Missing
predecessors (start of a trace, gaps) are filled by repeating the oldest known pair, the same
padding ``Twin.reset`` uses when it is given no history.
"""

from __future__ import annotations

import numpy as np

from slicetwin.core.transitions import Transitions


def predecessor_index(cell: np.ndarray, window: np.ndarray) -> np.ndarray:
    """prev[i] = row of the same cell one window earlier, or -1."""
    cell = np.asarray(cell, dtype=np.int64)
    window = np.asarray(window, dtype=np.int64)
    span = int(window.max() - window.min() + 2) if len(window) else 1
    key = (cell - cell.min(initial=0)) * span + (window - window.min(initial=0))
    order = np.argsort(key, kind="stable")
    sk = key[order]
    pos = np.searchsorted(sk, key - 1)
    pos_c = np.minimum(pos, len(sk) - 1)
    found = (pos < len(sk)) & (sk[pos_c] == key - 1)
    return np.where(found, order[pos_c], -1)


def history_index(data: Transitions, length: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(R, length) row indices, oldest first, ending at each row (edge-padded)."""
    prev = predecessor_index(data.cell, data.window)
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
    idx = np.empty((len(rows), length), dtype=np.int64)
    idx[:, -1] = rows
    for j in range(length - 2, -1, -1):
        p = prev[idx[:, j + 1]]
        idx[:, j] = np.where(p >= 0, p, idx[:, j + 1])
    return idx


def histories(data: Transitions, rows: np.ndarray, length: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arguments for ``Twin.reset`` starting from real rows: (states (R,3), past states
    (R, length-1, 3), past actions (R, length-1)). Use as ``twin.reset(*histories(d, rows, H))``."""
    idx = history_index(data, length, rows)
    return (data.state[idx[:, -1]], data.state[idx[:, :-1]], data.action[idx[:, :-1]])
