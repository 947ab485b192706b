"""Controller helpers shared by the tests: a real uvicorn controller process, report builders."""

from __future__ import annotations

import contextlib

from slicetwin.ops.procs import ControllerProcess
from tests.support.paths import ROOT

SLICES = ("volte", "video", "urllc")


@contextlib.contextmanager
def controller_process(**env_over: str):
    """Run ``slicetwin controller`` as a real process (``slicetwin.ops.procs``); yields its
    base URL. ``env_over``: settings by field name (``model_source="init"``)."""
    env = {"PYTHONPATH": str(ROOT)}
    env.update({f"SLICETWIN_{k.upper()}": str(v) for k, v in env_over.items()})
    with ControllerProcess(env) as ctl:
        yield ctl.url


def report(cell: str, window: int, arrived=(100, 1000, 10), sla_frac: float = 0.5,
           se: float = 1.0, allocation=None) -> dict:
    r = {"cell_id": cell, "window": window, "window_ms": 200.0, "slices": [
        {"slice": n, "arrived_packets": int(a), "delivered_packets": int(a),
         "sla_met_packets": int(a * sla_frac), "throughput_bps": 1e6 * (i + 1),
         "spectral_efficiency": se / 3} for i, (n, a) in enumerate(zip(SLICES, arrived, strict=True))]}
    if allocation is not None:
        r["allocation"] = allocation
    return r


def assert_allocation_ok(ans: dict, total_hz: float = 20e6, n_units: int = 100,
                         min_units: int = 1) -> None:
    alloc = ans["allocation"]
    assert [a["slice"] for a in alloc] == list(SLICES)
    bw = [a["bandwidth_hz"] for a in alloc]
    assert abs(sum(bw) - total_hz) < 1e-6 * total_hz, bw
    unit = total_hz / n_units
    for a in alloc:
        u = a["bandwidth_hz"] / unit
        assert abs(u - round(u)) < 1e-6 and round(u) >= min_units, a
        assert abs(a["prb_ratio"] - a["bandwidth_hz"] / total_hz) < 1e-9
    assert abs(sum(a["prb_ratio"] for a in alloc) - 1.0) < 1e-9
