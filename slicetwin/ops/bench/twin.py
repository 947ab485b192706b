"""``slicetwin bench twin``: a real uvicorn process, batch throughput and single-step latency."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from slicetwin.core.signing import DEV_PROMOTION_KEY, Signer
from slicetwin.ops.procs import free_port
from slicetwin.platform.keys import fresh_keys
from slicetwin.registry.model_files import sign_file
from slicetwin.twin import Twin
from trainer.twin_client import HttpTwin


def start_service(model_path: str | None, port: int, extra_env: dict | None = None,
                  timeout: float = 60.0, keys: dict | None = None) -> subprocess.Popen:
    """``slicetwin twin`` in a child process; returns once /readyz answers 200 (a model is
    loaded from ``model_path`` or, with a registry in ``extra_env``, from the registry).

    ``keys`` (``slicetwin.platform.keys.fresh_keys()``): run it in production mode with them; the
    process's ``api_key`` attribute is then the bearer key clients must send. Without, the
    caller's environment decides (development mode in the tests). ``model_path`` is signed
    (``<path>.sig``) with the promotion key in use, as ``slicetwin models sign`` would."""


    env = {**os.environ, **{k: v for k, v in (keys or {}).items() if k.startswith("SLICETWIN_")},
           **(extra_env or {})}
    if model_path:
        sign_file(model_path, Signer((keys or {}).get("SLICETWIN_PROMOTION_KEY",
                                                      DEV_PROMOTION_KEY)), "twin")
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "slicetwin.cli.main", "twin", "--host", "127.0.0.1", "--port",
           str(port)] + (["--model", model_path] if model_path else [])
    proc = subprocess.Popen(cmd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"twin service exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                proc.api_key = (keys or {}).get("SLICETWIN_TWIN_API_KEY")
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("twin service did not become ready")


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc), to report load-independent cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1e3, q)), 3)


def run_bench(batch: int = 4096, requests: int = 60, concurrency: int = 2, single: int = 200,
              model: str | None = None, port: int = 0) -> dict:


    port = port or free_port()
    keys = fresh_keys()  # production mode, as deployed: every request carries the bearer key
    key = keys["SLICETWIN_TWIN_API_KEY"]
    with tempfile.TemporaryDirectory() as tmp:
        if model is None:
            model = str(Path(tmp) / "twin.pt")
            Twin().save(model)  # same compute as a fitted twin of the default config
            model_desc = "default-config (unfitted weights)"
        else:
            model_desc = model
            model = shutil.copy(model, Path(tmp) / "twin.pt")  # signed there, not beside yours
        proc = start_service(model, port, keys=keys)
        try:
            url = f"http://127.0.0.1:{port}"
            probe = HttpTwin(url, api_key=key)
            h, n_act = probe.history_len, probe.n_actions
            rng = np.random.default_rng(0)
            states = rng.uniform(0.5, 1.5, (batch, h, 3)).astype(np.float32)
            acts = rng.integers(0, n_act, (batch, h))
            probe.predict(states, acts, seed=1)  # warm-up
            lat: list[float] = []
            lock = threading.Lock()
            per_thread = [requests // concurrency + (i < requests % concurrency)
                          for i in range(concurrency)]

            def worker(n: int, seed: int) -> None:
                tw = HttpTwin(url, api_key=key)
                for i in range(n):
                    t0 = time.perf_counter()
                    tw.predict(states, acts, seed=seed * 100000 + i)
                    with lock:
                        lat.append(time.perf_counter() - t0)
                tw.close()

            threads = [threading.Thread(target=worker, args=(n, i)) for i, n in
                       enumerate(per_thread)]
            cpu0 = _cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t0
            server_cpu = _cpu_seconds(proc.pid) - cpu0

            single_lat = []
            with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}) as c:
                body = {"states": states[0].tolist(), "action": int(acts[0, -1]),
                        "past_actions": acts[0, :-1].tolist(), "seed": 0}
                for _ in range(single):
                    t1 = time.perf_counter()
                    r = c.post("/v1/twin/step", json=body)
                    single_lat.append(time.perf_counter() - t1)
                    r.raise_for_status()
            probe.close()
        finally:
            proc.terminate()
            proc.wait(10)
    return {
        "bench": "twin", "twin_steps_per_s": round(batch * requests / wall, 1),
        "batch": batch, "requests": requests, "concurrency": concurrency, "history": h,
        "batch_p50_ms": _pct(lat, 50), "batch_p99_ms": _pct(lat, 99),
        "single_step_p50_ms": _pct(single_lat, 50), "single_step_p99_ms": _pct(single_lat, 99),
        "twin_steps_per_server_cpu_s": round(batch * requests / server_cpu, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "model": model_desc, "cpu_count": os.cpu_count(), "transport": "HTTP/1.1 uvicorn, packed",
    }
