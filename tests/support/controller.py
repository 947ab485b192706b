"""Controller helpers shared by the tests: a real uvicorn controller process, report builders."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time

import httpx

from slicetwin.ops.procs import free_port
from tests.support.paths import ROOT

SLICES = ("volte", "video", "urllc")


@contextlib.contextmanager
def controller_process(**env_over: str):
    """Run ``slicetwin controller`` as a real process; yields its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLICETWIN_PORT": str(port),
           "SLICETWIN_LOG_LEVEL": "warning"}
    env.update({f"SLICETWIN_{k.upper()}": str(v) for k, v in env_over.items()})
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "controller"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"controller exited: {log.read()[-3000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("controller did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        os.unlink(log.name)


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
