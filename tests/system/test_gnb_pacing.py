"""Fake gNB pacing (``--pace``) and run-until-signalled (``--windows 0``) against a real
controller process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from slicetwin.ops.gnb import GnbConfig, run_gnb
from tests.support.controller import ROOT, controller_process


@pytest.fixture(scope="module")
def controller_url():
    with controller_process() as url:
        yield url


def decisions(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for f in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        if f.name == "slicetwin_decisions":
            return sum(s.value for s in f.samples if s.name == "slicetwin_decisions_total")
    return 0.0


def test_paced_run_keeps_real_time(controller_url):
    n, ms = 12, 80.0
    fast = run_gnb(GnbConfig(controller=controller_url, cells=2, windows=n, seed=2,
                             cell_prefix="unpaced", progress=False))
    paced = run_gnb(GnbConfig(controller=controller_url, cells=2, windows=n, seed=2,
                              cell_prefix="paced", progress=False, pace=True, window_ms=ms))
    assert paced.failed_requests == 0 and paced.decisions == 2 * n and paced.windows == n
    assert paced.paced and not fast.paced and not paced.interrupted
    # window k starts k * window_ms after the first: (n - 1) windows of waiting at least, and
    # not much more than n windows (slack for a loaded 2-core host)
    assert paced.seconds >= (n - 1) * ms / 1e3
    assert paced.seconds < n * ms / 1e3 + 1.5 + fast.seconds, (paced.seconds, fast.seconds)
    assert paced.late_windows <= n // 3
    # the same seed gives the same traffic: pacing changes timing, not the simulation
    assert paced.ssr_mean == fast.ssr_mean


def test_stop_event_ends_an_endless_run_with_a_summary(controller_url):
    stop = threading.Event()
    threading.Timer(0.8, stop.set).start()
    s = run_gnb(GnbConfig(controller=controller_url, cells=2, windows=0, cell_prefix="endless",
                          progress=False, pace=True, window_ms=50.0, stop_event=stop))
    assert s.interrupted and s.windows >= 3 and s.decisions == 2 * s.windows
    assert 0.7 < s.seconds < 3.0


def test_cli_windows_0_runs_until_sigterm_then_prints_summary(controller_url, cli_env):
    before = decisions(controller_url)
    proc = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "gnb", "--controller",
                             controller_url, "--cells", "2", "--windows", "0", "--pace",
                             "--window-ms", "50", "--cell-prefix", "sig", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=cli_env)
    try:
        deadline = time.time() + 90
        while decisions(controller_url) - before < 6 and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.2)
        time.sleep(0.3)
        assert proc.poll() is None  # --windows 0: still running
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    s = json.loads(out.strip().splitlines()[-1])
    assert s["interrupted"] and s["paced"] and s["windows"] >= 3
    assert s["decisions"] == 2 * s["windows"] and s["failed_requests"] == 0
    assert decisions(controller_url) - before == s["decisions"]
