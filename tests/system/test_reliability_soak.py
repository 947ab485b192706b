"""Sustained load on a real controller process (``slicetwin bench soak``): zero errors, RSS
bounded, every closed transition written. The full run (10 min at 1,000 req/s) is the bench
command; here a short one (fast) and a minute-scale one (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import ROOT


def test_bench_soak_cli_prints_one_json_line():
    out = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "bench", "soak", "--rate", "200",
                          "--duration", "4", "--warmup", "1", "--bucket", "2", "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["bench"] == "soak" and r["requests"] == 800 and r["errors"] == 0
    assert len(r["per_bucket"]) == 2 and all(b["p99_ms"] is not None for b in r["per_bucket"])
    assert r["rss_start_mb"] > 0 and abs(r["rss_growth_mb"]) < 20
    # accounting: every closed transition reached the stream, none dropped
    assert r["transitions_dropped"] == 0
    assert r["transitions_written"] == r["transitions_closed"] == r["stream_len"] > 0


@pytest.mark.slow
def test_soak_minute_scale_zero_errors_bounded_rss():
    from slicetwin.ops.soak import SoakConfig, run_soak

    r = run_soak(SoakConfig(rate=500, duration_s=60, warmup_s=10, bucket_s=15), progress=False)
    print(json.dumps(r))
    assert r["errors"] == 0 and r["warmup_errors"] == 0, r["status"]
    assert r["rss_growth_mb"] < 10, r["rss_samples_mb"]
    assert r["transitions_dropped"] == 0
    assert r["transitions_written"] == r["transitions_closed"] == r["stream_len"]
