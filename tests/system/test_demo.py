"""``slicetwin demo``: the closed loop run as a user runs it (a real subprocess, real uvicorn, real
redis-server / in-memory registry, the real trainer worker), checked through what it writes.

Fast tests run a few windows (no trainer cycle fits in them): answers served, allocations valid,
summary/CSV/plots written, every part stopped. Slow tests run until the trainer's first
candidate is promoted and hot-swapped into the controller.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import ROOT

PYTHON = sys.executable
PNG = b"\x89PNG\r\n\x1a\n"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLICETWIN_") and k != "REDIS_URL"}  # never the system Redis
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _demo(out: Path, *args: str, timeout: float = 180, env: dict | None = None
          ) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "slicetwin.cli.main", "demo", "--no-live", "--out", str(out),
                           *args], env=env or _env(), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _port_open(url: str | None) -> bool:
    if not url:
        return False
    host, port = url.split("//")[1].split("/")[0].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _check_outputs(out: Path, windows: int, cells: int, min_units: int = 1,
                   n_units: int = 100, served: str = "fallback") -> dict:
    """``served``: what answers before any promotion: the safe heuristic of a fresh install
    (``fallback``, the default cold start) or the random student (``init-0``)."""
    s = json.loads((out / "summary.json").read_text())
    assert s["windows"] == windows
    assert s["requests"] == windows * cells and s["decisions"] == windows * cells
    assert s["failed_requests"] == 0 and s["invariant_violations"] == 0, s["errors"]
    assert s["error"] is None
    # every answer came from what the cold start serves: the heuristic, or the fresh student
    assert s["fallback_decisions"] == (windows * cells if served == "fallback" else 0)
    assert s["initial_policy"] == (None if served == "fallback" else served)
    assert set(s["answers_by_version"]) == {served}
    assert [v["version"] for v in s["versions_served"]] == ["equal-split", served]
    assert s["latency_ms"]["p50"] > 0
    for name in ("volte", "video", "urllc"):
        assert 0.0 <= s["ssr_mean"][name] <= 1.0
    for f in ("utility_ssr.png", "allocation.png"):
        data = (out / f).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000
    with open(out / "windows.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == windows
    share = np.array([[float(r[f"share_{n}"]) for n in ("volte", "video", "urllc")]
                      for r in rows])
    # allocations in force: a split of the whole carrier, every slice at least its minimum
    np.testing.assert_allclose(share.sum(1), 1.0, atol=1e-9)
    assert (share >= min_units / n_units - 1e-12).all()
    assert not np.allclose(share, share[0]), "the policy never changed an allocation"
    assert all(r["version"] in ("equal-split", served) for r in rows)
    # every part the demo started was stopped
    assert all(v == "stopped" for k, v in s["stopped"].items() if k != "trainer"), s["stopped"]
    assert not _port_open(s["controller"])
    return s


def test_demo_embedded_serves_and_writes_outputs(tmp_path):
    out = tmp_path / "demo"
    r = _demo(out, "--mode", "embedded", "--cells", "3", "--windows", "25", "--window-ms", "20",
              "--no-tuned")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = _check_outputs(out, 25, 3)  # a fresh install's cold start: the safe heuristic
    assert s["mode"] == "embedded" and s["redis_url"] is None
    assert "controller ready" in r.stdout and "SliceTwin demo summary" in r.stdout
    # the controller recorded transitions and the in-process trainer started reading them
    assert s["explored_decisions"] > 0  # ε = 0.2 default: the trainer sees varied actions,
    # explored around the heuristic's split at a cold start


def test_demo_cold_start_init_serves_the_random_student(tmp_path):
    out = tmp_path / "demo"
    r = _demo(out, "--mode", "embedded", "--cells", "2", "--windows", "15", "--window-ms", "20",
              "--no-shadow", "--no-trainer", "--cold-start", "init")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _check_outputs(out, 15, 2, served="init-0")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_demo_redis_private_server_batch(tmp_path):
    out = tmp_path / "demo"
    r = _demo(out, "--mode", "redis", "--cells", "4", "--windows", "20", "--window-ms", "20",
              "--batch", "--epsilon", "0", "--no-trainer", "--no-shadow")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["mode"] == "redis" and s["redis"] == "private"
    # batch: one request per window, one decision per cell
    assert s["requests"] == 20 and s["decisions"] == 80 and s["failed_requests"] == 0
    assert s["invariant_violations"] == 0 and s["explored_decisions"] == 0
    assert s["trainer"] is None and "trainer" not in s["stopped"]
    assert s["stopped"]["redis-server"] == "stopped" and s["stopped"]["controller"] == "stopped"
    # the private redis-server and the controller process are gone
    assert not _port_open(s["redis_url"]) and not _port_open(s["controller"])
    assert (out / "controller.log").exists() and (out / "allocation.png").exists()
    assert s["shadow_baselines"] is None  # --no-shadow


def test_demo_shadow_baselines_are_exact_and_reported(tmp_path):
    """The summary's, the CSV's and the printed shadow figures are what offline simulator runs of
    the same fixed and heuristic policies earn on the same seed (to 1e-9), beside the served
    utility and the margin over each."""
    from slicetwin.sim.baselines import (
        DemandProportionalPolicy,
        FixedPolicy,
        TunedProportionalPolicy,
        equal_split,
        run_policy,
    )
    from slicetwin.sim.config import SimConfig

    out, cells, windows, seed = tmp_path / "demo", 3, 30, 7
    r = _demo(out, "--mode", "embedded", "--no-trainer", "--cells", str(cells), "--windows",
              str(windows), "--window-ms", "0", "--profile", "diurnal", "--seed", str(seed),
              "--shadow-cells", str(cells), "--cold-start", "init", timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    sb = s["shadow_baselines"]
    assert sb["baselines"] == ["equal", "proportional", "tuned_proportional", "best_fixed"]
    assert sb["best_fixed_cells"] == cells and sb["recent_windows"] == 1500
    allc = sb["overall"]["all_cells"]
    assert allc["cell_windows"] == cells * windows
    assert allc["served"] == pytest.approx(s["utility_mean"], abs=1e-9)
    cfg = SimConfig.from_profile("diurnal")
    codec = cfg.codec
    t = sb["tuned_proportional"]
    offline = {"equal": equal_split(codec), "proportional": DemandProportionalPolicy(cfg),
               "tuned_proportional": TunedProportionalPolicy(cfg, t["weights"], t["offsets"]),
               "best_fixed": FixedPolicy(allc["baselines"]["best_fixed"]["units"], codec)}
    runs = {n: run_policy(p, cfg, windows, cells, seed) for n, p in offline.items()}
    for name, res in runs.items():
        b = allc["baselines"][name]
        assert abs(b["utility"] - res.mean_utility) < 1e-9, name
        assert b["margin"] == pytest.approx(allc["served"] / b["utility"] - 1, abs=1e-12)
    assert allc["baselines"]["best_fixed"]["utility"] >= runs["equal"].mean_utility - 1e-12
    # a run shorter than 5 minutes: the last-5-minutes figures are the whole run's
    assert sb["last_5min"]["windows"] == windows
    pol = sb["overall"]["policy_cells"]
    # window 0 runs the initial equal split; an explored answer sets the next window's allocation
    assert (cells * (windows - 1) - s["explored_decisions"] <= pol["cell_windows"]
            <= cells * (windows - 1))
    assert pol["baselines"]["equal"]["utility"] > 0
    # per window in windows.csv, and in the printed summary
    with open(out / "windows.csv") as fh:
        rows = list(csv.DictReader(fh))
    for name in ("equal", "proportional", "tuned_proportional", "best_fixed"):
        got = np.array([float(row[f"shadow_{name}"]) for row in rows])
        np.testing.assert_allclose(got, runs[name].utilities.mean(1), atol=1e-9)
    printed = " ".join(r.stdout.split())  # rich wraps the summary at the terminal width
    assert "shadow baselines, whole run (30 windows)" in printed
    assert "best fixed " + str(allc["baselines"]["best_fixed"]["units"]) in printed
    assert (out / "utility_ssr.png").read_bytes()[:8] == PNG


def test_demo_refuses_bad_options(tmp_path):
    """Bad options fail before anything starts, with a message naming the option."""
    from typer.testing import CliRunner

    import slicetwin.cli.main as cli

    cli._register()
    runner = CliRunner()
    base = ["demo", "--no-live", "--windows", "2", "--out", str(tmp_path / "o")]
    r = runner.invoke(cli.app, [*base, "--trainer-set", "no_such_budget=3"])
    assert r.exit_code == 2 and "unknown trainer setting" in r.output
    r = runner.invoke(cli.app, [*base, "--trainer-set", "twin_steps=-5"])
    assert r.exit_code == 2 and "twin_steps" in r.output
    r = runner.invoke(cli.app, [*base, "--trainer-set", "twin_steps"])
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
    r = runner.invoke(cli.app, [*base, "--mode", "docker"])
    assert r.exit_code == 2 and "--mode" in r.output
    r = runner.invoke(cli.app, [*base, "--cells", "0"])
    assert r.exit_code == 2
    assert not (tmp_path / "o" / "summary.json").exists()


def test_demo_refuses_a_bad_profile(tmp_path):
    """A bad --profile: exit 2 naming the choices, before anything starts; the trainer's sim
    gate profile follows --profile and cannot be set apart."""
    from typer.testing import CliRunner

    import slicetwin.cli.main as cli

    cli._register()
    runner = CliRunner()
    base = ["demo", "--no-live", "--windows", "2", "--out", str(tmp_path / "o")]
    r = runner.invoke(cli.app, [*base, "--profile", "rush-hour"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "rush-hour" in text and "--profile" in text, r.output
    for choice in ("paper", "diurnal", "flash-crowd", "hetero", "mix=A/B/C"):
        assert choice in text, choice
    r = runner.invoke(cli.app, [*base, "--trainer-set", "sim_profile=hetero"])
    assert r.exit_code == 2 and "--profile" in r.output, r.output
    assert not (tmp_path / "o" / "summary.json").exists()


def test_demo_profile_reaches_the_simulator_and_the_trainer_gate(tmp_path):
    """The demo's config -> its simulator cells and its trainer's sim-gate profile."""
    from slicetwin.ops.demo.run import DemoConfig, _trainer_settings, _Transport, demo_simulator
    from slicetwin.sim.config import SimConfig

    cfg = DemoConfig(cells=2, seed=3, profile="diurnal")
    sim = demo_simulator(cfg)
    assert sim.n_cells == 2 and sim.config == SimConfig.from_profile("diurnal")
    assert _trainer_settings(cfg, _Transport("embedded"), str(tmp_path)).sim_profile == "diurnal"
    # default: the paper profile, as before
    assert demo_simulator(DemoConfig(cells=1)).config == SimConfig()
    assert _trainer_settings(DemoConfig(), _Transport("embedded"),
                             str(tmp_path)).sim_profile == "paper"


def test_demo_planner_teacher_plans_with_the_demo_profile(tmp_path):
    """``--trainer-set teacher=planner`` is valid in the demo (its trainer always knows the
    profile) and plans with --profile; a trainer without a profile refuses it."""
    from pydantic import ValidationError

    from slicetwin.ops.demo.run import DemoConfig, _check_overrides, _trainer_settings, _Transport
    from trainer.worker.settings import WorkerSettings

    _check_overrides({"teacher": "planner"}, "diurnal")
    cfg = DemoConfig(profile="diurnal", trainer_overrides={"teacher": "planner"})
    s = _trainer_settings(cfg, _Transport("embedded"), str(tmp_path))
    assert s.teacher == "planner" and s.sim_profile == "diurnal"
    with pytest.raises(ValidationError, match="needs sim_profile"):
        WorkerSettings(teacher="planner")


def test_demo_twin_teacher_needs_no_simulator_profile(tmp_path):
    """``--trainer-set teacher=twin`` plans with the learned twin: valid on every profile, and a
    trainer without a simulator profile (a real gNB) accepts it too."""
    from slicetwin.ops.demo.run import DemoConfig, _check_overrides, _trainer_settings, _Transport
    from trainer.worker.settings import WorkerSettings

    _check_overrides({"teacher": "twin", "twin_plan_rows": 64}, "foreign")
    cfg = DemoConfig(profile="foreign", trainer_overrides={"teacher": "twin"})
    s = _trainer_settings(cfg, _Transport("embedded"), str(tmp_path))
    assert s.teacher == "twin" and s.n_units == 10
    assert WorkerSettings(teacher="twin").sim_profile is None
    with pytest.raises(ValueError, match="twin_plan_rows"):
        _check_overrides({"teacher": "twin", "twin_plan_rows": 0}, "foreign")


def test_demo_summary_records_the_profile(tmp_path):
    out = tmp_path / "demo"
    r = _demo(out, "--mode", "embedded", "--no-trainer", "--cells", "2", "--windows", "3",
              "--window-ms", "0", "--profile", "flash-crowd", "--no-tuned", timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["profile"] == "flash-crowd" and s["config"]["profile"] == "flash-crowd"
    assert s["config"]["trainer_settings"]["sim_profile"] == "flash-crowd"
    assert s["windows"] == 3 and s["failed_requests"] == 0
    assert "2 cells (flash-crowd traffic)" in r.stdout  # the start line
    assert "(embedded, flash-crowd traffic, stopped by windows)" in r.stdout  # the summary


def test_demo_unreachable_redis_url_is_a_clear_error(tmp_path):
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]  # nothing listens there once closed
    out = tmp_path / "demo"
    r = _demo(out, "--windows", "3", env=_env(REDIS_URL=f"redis://127.0.0.1:{port}/0"),
              timeout=60)
    assert r.returncode == 1
    s = json.loads((out / "summary.json").read_text())
    assert f"REDIS_URL=redis://127.0.0.1:{port}/0 does not answer" in s["error"]
    assert s["windows"] == 0 and s["controller"] is None
    assert "does not answer" in r.stdout


def test_demo_ctrl_c_stops_cleanly_and_writes_summary(tmp_path):
    out = tmp_path / "demo"
    # Ctrl-C from a terminal: SIGINT handled by default in the demo, even when this suite runs as
    # a background job (whose children inherit SIGINT ignored, so Python never raises it)
    p = subprocess.Popen([PYTHON, "-m", "slicetwin.cli.main", "demo", "--no-live", "--out", str(out),
                          "--cells", "2", "--duration", "120", "--window-ms", "50", "--no-tuned"],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=ROOT,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    deadline = time.time() + 90
    assert p.stdout is not None
    for line in p.stdout:  # wait until the loop runs
        lines.append(line)
        if "window " in line and "| policy" in line or time.time() > deadline:
            break
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    rest, _ = p.communicate(timeout=60)
    text = "".join(lines) + rest
    assert p.returncode == 130, text[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["stopped_by"] == "interrupt" and s["windows"] > 0 and s["failed_requests"] == 0
    assert (out / "utility_ssr.png").exists(), (s.get("plot_error"), text[-2000:])
    assert not _port_open(s["controller"]) and not _port_open(s["redis_url"])


def test_recorder_attributes_windows_to_the_version_in_force():
    """Swap bookkeeping: utility before/after = the windows each version's allocations ran."""
    from slicetwin.ops.demo.record import Recorder, WindowRow

    rec = Recorder(cells=2)
    for k in range(10):
        v = "init-0" if k < 6 else "policy-a"  # answers switch at window 5 -> in force from 6
        if k == 5:
            ev = rec.note_answer_version("policy-a", k, float(k))
            assert ev is not None and (ev.old, ev.new, ev.window) == ("init-0", "policy-a", 5)
        else:
            assert rec.note_answer_version("init-0" if k < 5 else "policy-a", k, k) is None
        rec.add(WindowRow(k=k, t=float(k), utility=1.0 + (k >= 6),
                          utility_policy=float("nan") if k == 0 else 1.0 + (k >= 6),
                          ssr=[1.0, 0.5, 0.2 + 0.1 * (k >= 6)], share=[0.3, 0.3, 0.4],
                          version=v))
    assert rec.note_answer_version("fallback", 10, 10.0) is None  # never a swap
    sw = rec.swap_figures()
    assert len(sw) == 1
    assert sw[0]["utility_before"] == pytest.approx(1.0)  # NaN window ignored
    assert sw[0]["utility_after"] == pytest.approx(2.0)
    assert (sw[0]["windows_before"], sw[0]["windows_after"]) == (6, 4)
    assert sw[0]["ssr_after"]["urllc"] == pytest.approx(0.3)
    s = rec.summary({})
    assert s["first_swap_s"] == 5.0 and [v["version"] for v in s["versions_served"]] == [
        "init-0", "policy-a"]
    json.dumps(s, allow_nan=False)  # NaN-free JSON


# ---------------------------------------------------------------- slow: a real hot-swap
def _check_swap(out: Path, r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["stopped_by"] == "swaps", s["stopped_by"]
    assert s["failed_requests"] == 0 and s["invariant_violations"] == 0
    assert len(s["swaps"]) >= 1
    sw = s["swaps"][0]
    assert sw["from"] == "init-0" and sw["to"].startswith("policy-")  # --cold-start init
    assert s["final_policy"] != s["initial_policy"]
    # the new version answered requests, and it is the one the trainer promoted
    assert s["answers_by_version"].get(sw["to"], 0) > 0
    assert sw["to"] in s["promoted_versions"]
    assert sw["promote_to_serve_s"] is not None and 0 <= sw["promote_to_serve_s"] < 10
    cyc = sw["trainer_cycle"]
    assert cyc["promoted"] and cyc["policy_version"] == sw["to"]
    assert cyc["twin_error"]["next_state_rmse"] > 0
    assert sw["windows_after"] >= 10 and sw["utility_after"] is not None
    assert "HOT-SWAP #1" in r.stdout
    return s


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_demo_hot_swap_auto_mode(tmp_path):
    """The README command (auto mode: a private redis-server here) until the first swap."""
    out = tmp_path / "demo"
    r = _demo(out, "--duration", "300", "--swaps", "1", "--after-swap", "25", "--cold-start",
              "init", timeout=400)
    s = _check_swap(out, r)
    assert s["mode"] == ("redis" if shutil.which("redis-server") else "embedded")
    assert s["first_swap_after_start_s"] < 300


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_demo_hot_swap_embedded(tmp_path):
    out = tmp_path / "demo"
    r = _demo(out, "--mode", "embedded", "--duration", "300", "--swaps", "1", "--after-swap",
              "25", "--cold-start", "init", timeout=400)
    s = _check_swap(out, r)
    assert s["mode"] == "embedded"


def test_views_render_a_snapshot():
    """The live panel and the plain line show the figures the brief asks for."""
    import io

    from rich.console import Console

    from slicetwin.ops.demo.view import LiveView, PlainView

    snap = {"mode": "embedded", "controller": "http://127.0.0.1:1", "elapsed": 70.0,
            "window": 330, "cells": 8, "profile": "diurnal", "limit": "150 s",
            "recent": {"utility": 1.7, "utility_policy": 1.75, "ssr": [1.0, 0.41, 0.33],
                       "share": [0.35, 0.38, 0.27]},
            "serving": "policy-abc", "swaps": 1, "fallback": 2, "explored": 230, "failed": 0,
            "requests": 2640, "latency": {"p50": 0.9, "p99": 3.1},
            "trainer": {"status": "cycle 2 running for 2 s"},
            "twin": {"next_state_rmse": 0.2, "persistence_rmse": 0.22, "utility_rmse": 0.33},
            "events": [(65.2, "HOT-SWAP #1: init-0 -> policy-abc")], "events_total": 1,
            "shadow": {"overall": _shadow_fig(330), "recent": _shadow_fig(100)}}
    c = Console(file=io.StringIO(), width=120, force_terminal=False)
    c.print(LiveView()._render(snap))
    text = c.file.getvalue()
    for want in ("volte", "video", "urllc", "38.0%", "0.410", "1.750", "policy-abc",
                 "equal 1.600 (+12.5 %", "best fixed [1, 34, 65] 1.900 (-5.3 %",
                 "last 100 windows",
                 "hot-swaps: 1", "2 / 230", "p99 3.10 ms", "next-state RMSE 0.200",
                 "cycle 2 running", "HOT-SWAP #1", "profile diurnal"):
        assert want in text, want
    buf = io.StringIO()
    PlainView(stream=buf).update(snap)
    line = buf.getvalue()
    assert "HOT-SWAP #1" in line and "policy-abc" in line and "video:0.38/0.41" in line
    assert "policy vs baselines: 1.800 vs equal 1.600 (+12.5 %)" in line


def _shadow_fig(windows: int) -> dict:
    side = {"served": 1.8, "cell_windows": windows * 8, "baselines": {
        "equal": {"utility": 1.6, "margin": 1.8 / 1.6 - 1},
        "best_fixed": {"utility": 1.9, "margin": 1.8 / 1.9 - 1, "units": [1, 34, 65],
                       "cells": 2, "served_same_cells": 1.8}}}
    return {"windows": windows, "all_cells": side, "policy_cells": side}


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_demo_twin_service_serves_the_trainers_twin(tmp_path):
    """--twin-service: the twin service loads the twin the trainer promoted in the registry."""
    out = tmp_path / "demo"
    r = _demo(out, "--twin-service", "--duration", "300", "--swaps", "1", "--after-swap", "25",
              timeout=400)
    s = _check_swap(out, r)
    twins = {c["twin_version"] for c in s["trainer"]["cycles"]}
    served = (s["twin_service"]["model_at_end"] or {}).get("version")
    # a cycle still running at shutdown may already have published (and the service loaded) a
    # newer twin than the completed cycles recorded; versions are timestamped, so compare order
    assert served is not None and served.startswith("twin-"), served
    assert served in twins or served > max(twins), (served, twins)
    assert all(c["twin_backend"] in ("http", "local") for c in s["trainer"]["cycles"])
    assert s["stopped"]["twin service"] == "stopped"


def test_demo_on_another_gnb_serves_its_carrier(tmp_path):
    """`--profile foreign` (10 MHz in 1 MHz units): the controller's and the trainer's codecs
    follow the simulated gNB, and every answer is a split of its 10 units."""
    from slicetwin.ops.demo.run import DemoConfig, _trainer_settings, _Transport

    s = _trainer_settings(DemoConfig(profile="foreign"), _Transport("embedded"), str(tmp_path))
    assert (s.n_units, s.total_bandwidth_hz, s.cold_start) == (10, 10e6, "proportional")
    out = tmp_path / "demo"
    r = _demo(out, "--mode", "embedded", "--cells", "2", "--windows", "20", "--window-ms", "0",
              "--profile", "foreign", "--no-trainer", "--no-tuned")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _check_outputs(out, 20, 2, n_units=10)
