"""Services exit 0 after a graceful SIGTERM drain (issue 17 item 3): uvicorn re-raises the signal
after its shutdown, so the controller exited -15 and `docker compose stop` showed Exited (143)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from slicetwin.ops.procs import free_port
from tests.support.paths import ROOT


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def _sigterm(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


APP = r"""
import sys
from contextlib import asynccontextmanager
from fastapi import FastAPI
from slicetwin.platform.serve import serve

@asynccontextmanager
async def lifespan(app):
    yield
    print("drained", file=sys.stderr, flush=True)

app = FastAPI(lifespan=lifespan)

@app.get("/healthz")
def healthz():
    return {"ok": True}

serve(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_serve_exits_0_after_the_sigterm_drain():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", APP, str(port)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    rc, err = _sigterm(proc)
    assert rc == 0, err[-2000:]
    assert "drained" in err  # the lifespan shutdown ran before the exit


def test_controller_cli_exits_0_on_sigterm(tmp_path):
    port = free_port()
    env = {**os.environ, "SLICETWIN_ENV": "dev", "SLICETWIN_LOG_LEVEL": "warning",
           "NUMBA_CACHE_DIR": str(tmp_path)}
    for k in ("SLICETWIN_REDIS_URL", "SLICETWIN_MODEL_SOURCE", "SLICETWIN_CELL_STORE",
              "SLICETWIN_TRANSITIONS_SINK"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "controller", "--host",
                             "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=120)
    rc, err = _sigterm(proc)
    assert rc == 0, err[-2000:]
