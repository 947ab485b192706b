"""The simulator is an optional extra (``sim``: numba, gymnasium), so the controller image can
leave out llvmlite + numba (~214 MB): the controller's serving path must never import it, and
commands that need it must say which extra to install (issue 17, image size floor)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import tomllib

from slicetwin.ops.procs import free_port
from tests.support.paths import ROOT

HEAVY = ("numba", "llvmlite", "gymnasium", "torch")
# the CLI's registration imports the simulator's typer module (typer + stdlib, no simulator)
SIM_MODULES_ALLOWED = {"slicetwin.sim", "slicetwin.cli.sim"}

# A child interpreter where the `sim` extra is not installed (what the controller image is):
# imports of numba, llvmlite and gymnasium fail as they do there.
NO_SIM = r"""
import sys
class NoSimExtra:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('numba', 'llvmlite', 'gymnasium'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoSimExtra())
"""


def _env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICETWIN_")}
    env.update(SLICETWIN_ENV="dev", SLICETWIN_LOG_LEVEL="warning", NUMBA_CACHE_DIR=str(tmp_path),
               SLICETWIN_COLD_START="init")  # serve an ONNX student: onnxruntime on the path
    return env


def _loaded_by_importtime(stderr: str) -> set[str]:
    """Module names from ``python -X importtime``'s lines (``import time: self | cum | name``)."""
    return {m.group(1).strip() for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \| (.+)$",
                                                    stderr, re.M)}


def _offending(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY
                  or (m.startswith("slicetwin.sim") and m not in SIM_MODULES_ALLOWED))


def test_importing_the_controller_app_loads_no_simulator_and_no_torch(tmp_path):
    code = ("import sys, json, controller.app\n"
            "print(json.dumps(sorted(m for m in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    mods = set(json.loads(r.stdout))
    assert "controller.app" in mods and "fastapi" in mods
    assert "numba" not in mods and "torch" not in mods
    assert not [m for m in mods if m.startswith("slicetwin.sim")], mods
    assert not _offending(mods)


def test_slicetwin_controller_serves_a_report_without_the_simulator(tmp_path):
    """The real `slicetwin controller` command, from start-up through a served decision to its
    SIGTERM drain, under ``-X importtime``: every module it ever imported is on stderr."""
    port = free_port()
    log = tmp_path / "stderr.txt"  # a file, not a pipe: nobody reads a pipe while it starts
    with log.open("w") as errf:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "slicetwin.cli.main",
                                 "controller", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=_env(tmp_path), text=True,
                                stdout=subprocess.DEVNULL, stderr=errf)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1):
                    break
            except OSError:
                assert time.time() < deadline, "the controller never became ready"
                time.sleep(0.2)
        report = {"cell_id": "slim-0", "window": 1, "slices": [
            {"slice": s, "arrived_packets": a, "delivered_packets": a, "sla_met_packets": a,
             "throughput_bps": 1e6, "spectral_efficiency": 0.5}
            for s, a in (("volte", 100), ("video", 900), ("urllc", 10))]}
        req = urllib.request.Request(f"{base}/v1/reports", data=json.dumps(report).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
        assert len(answer["allocation"]) == 3 and answer["fallback"] is False, answer
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 0, err[-3000:]
    loaded = _loaded_by_importtime(err)
    assert {"controller.app", "onnxruntime", "uvicorn"} <= loaded  # the parse sees the imports
    assert not _offending(loaded), _offending(loaded)


def test_gnb_without_the_sim_extra_says_what_to_install(tmp_path):
    """`slicetwin gnb` in the controller image: one line naming the extra, exit 2, no
    traceback and no request sent."""
    code = NO_SIM + ("sys.argv = ['slicetwin', 'gnb', '--windows', '1', '--controller', "
                     "'http://127.0.0.1:9']\nfrom slicetwin.cli.main import main\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "needs numba" in r.stderr and "pip install 'slicetwin[sim]'" in r.stderr, r.stderr
    assert "simulator" in r.stderr


def test_the_controller_cli_works_without_the_sim_extra(tmp_path):
    """Without numba the CLI still registers every command (the controller image's
    `slicetwin --help`, `slicetwin controller`), and the simulator raises MissingExtra."""
    code = NO_SIM + """
import slicetwin.cli.main as cli
cli._register()
import typer
names = set(typer.main.get_command(cli.app).commands)
assert {'controller', 'gnb', 'baselines', 'models'} <= names, names
from slicetwin.core.extras import MissingExtra
from slicetwin.sim.config import SimConfig
SimConfig.from_profile('paper')  # the config alone needs no numba
for mod in ('slicetwin.sim.simulator', 'slicetwin.sim.env'):
    try:
        __import__(mod)
    except MissingExtra as e:
        assert e.extra == 'sim', e
    else:
        raise AssertionError(mod + ' imported without the sim extra')
print('ok')
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


def test_the_sim_extra_is_declared_and_dev_installs_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda reqs: {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in reqs}  # noqa: E731
    extras = project["optional-dependencies"]
    assert not names(project["dependencies"]) & {"numba", "llvmlite", "gymnasium", "torch"}
    assert {"numba", "gymnasium"} <= names(extras["sim"])
    assert names(extras["sim"]) <= names(extras["train"])  # the trainer runs the simulator
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r'pip install .*-e "\.\[[^\]]*train', setup), "setup.sh must install train"
