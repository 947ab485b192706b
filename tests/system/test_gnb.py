"""Fake gNB: closed loop with a real uvicorn controller; answer invariant checks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slicetwin.core.actions import ActionCodec
from slicetwin.ops.gnb import GnbConfig, run_gnb, units_from_answer
from tests.support.controller import ROOT, assert_allocation_ok, controller_process


def test_units_from_answer_checks_invariants():
    c = ActionCodec()
    ok = {"allocation": [{"slice": "volte", "bandwidth_hz": 2e6, "prb_ratio": 0.1},
                         {"slice": "video", "bandwidth_hz": 10e6, "prb_ratio": 0.5},
                         {"slice": "urllc", "bandwidth_hz": 8e6, "prb_ratio": 0.4}]}
    assert units_from_answer(ok, c).tolist() == [10, 50, 40]
    short = json.loads(json.dumps(ok))
    short["allocation"][0]["bandwidth_hz"] = 1e6
    with pytest.raises(ValueError, match="sums to"):
        units_from_answer(short, c)
    zero = json.loads(json.dumps(ok))
    zero["allocation"][0]["bandwidth_hz"] = 0.0
    zero["allocation"][1]["bandwidth_hz"] = 12e6
    with pytest.raises(ValueError, match="invariant"):
        units_from_answer(zero, c)


def test_gnb_closed_loop_end_to_end_single_and_batch():
    with controller_process() as url:
        for batch in (False, True):
            s = run_gnb(GnbConfig(controller=url, cells=3, windows=8, batch=batch, seed=1,
                                  cell_prefix=f"e2e-{batch}", progress=False), keep_answers=True)
            assert s.failed_requests == 0 and s.invariant_violations == 0, s.errors
            assert s.decisions == 24 and len(s.answers) == 24
            for a in s.answers:
                assert_allocation_ok(a)
            assert s.versions == {"init-0": 24}
            assert set(s.ssr_mean) == {"volte", "video", "urllc"}
            assert all(0 <= v <= 1 for v in s.ssr_mean.values())
            assert 0 < s.utility_mean < 4
        # the controller closed (windows - 1) transitions per cell of each run
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        fams = {f.name: f for f in text_string_to_metric_families(
            httpx.get(url + "/metrics").text)}
        closed = fams["slicetwin_transitions_closed"].samples[0].value
        assert closed == 2 * 3 * 7


def test_gnb_cli_json(cli_env):
    with controller_process() as url:
        out = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "gnb", "--controller", url,
                              "--cells", "2", "--windows", "4", "--batch", "--json"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT, env=cli_env)
    assert out.returncode == 0, out.stderr[-2000:]
    s = json.loads(out.stdout.strip().splitlines()[-1])
    assert s["decisions"] == 8 and s["failed_requests"] == 0 and "ssr_mean" in s
