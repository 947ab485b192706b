"""State features fed to agents, the twin and the controller's policy.

The paper's state is the number of packets that arrived per slice in the window. We divide by
fixed per-slice scales (not by each other, unlike the reference code) so the load level survives.
One definition, used by the simulator env, the twin, the trainer and the controller.
"""

from __future__ import annotations

import numpy as np

# Typical per-window arrivals per slice on the default profile (calibrated in docs/simulator.md).
STATE_SCALES = np.array([100.0, 1000.0, 10.0], dtype=np.float32)
STATE_DIM = 3


def state_from_arrivals(arrived: np.ndarray) -> np.ndarray:
    """(..., 3) arrived packet counts -> (..., 3) float32 normalised state."""
    return (np.asarray(arrived, dtype=np.float32) / STATE_SCALES).astype(np.float32, copy=False)
