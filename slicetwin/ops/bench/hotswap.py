"""``slicetwin bench hotswap``: publish -> serving delay through a real controller process.

A private redis-server (unless a URL is given) and a ``slicetwin controller`` process watching
the registry; a client thread keeps posting KPI reports serially. For each swap the bench
publishes a student in the trainer's export format (``trainer.export_onnx.to_onnx`` of a
``StudentMLP``), then promotes it the way the worker does and times promote-call -> first answer
carrying the new version. The delay includes the promote round trip, the pub/sub event, the
controller's fetch + HMAC/sha256 verify + ONNX validation + smoke inference, and the client's
request interval (its resolution: a few ms). Prints one JSON line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy as np

from slicetwin.core.actions import ActionCodec
from slicetwin.ops.bench.controller import ReportMaker
from slicetwin.ops.procs import free_port, wait_port
from slicetwin.platform.keys import fresh_keys
from slicetwin.registry.store import RedisRegistry
from trainer.export_onnx import to_onnx
from trainer.nets import StudentMLP


def _student_blob(seed: int, version: str) -> bytes:
    import torch  # lazy: torch


    torch.manual_seed(seed)
    m = StudentMLP(3, ActionCodec().n_actions, 16)
    return to_onnx(m, n_units=100, version=version).SerializeToString()


def run_hotswap_bench(swaps: int = 20, cells: int = 2, redis_url: str | None = None,
                      timeout_s: float = 10.0) -> dict:


    procs: list[subprocess.Popen] = []
    tmp = tempfile.mkdtemp(prefix="hotswap-")
    try:
        if redis_url is None:
            if shutil.which("redis-server") is None:
                raise RuntimeError("redis-server not found; pass --redis-url")
            rport = free_port()
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", tmp],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(rport)
            redis_url = f"redis://127.0.0.1:{rport}/0"
        keys = fresh_keys()  # production mode, as deployed
        key = keys["SLICETWIN_HMAC_KEY"]
        prefix = f"hotswapbench{os.getpid()}:"
        port = free_port()
        env = dict(os.environ, **{k: v for k, v in keys.items() if k.startswith("SLICETWIN_")},
                   SLICETWIN_REDIS_URL=redis_url, SLICETWIN_REGISTRY_PREFIX=prefix,
                   SLICETWIN_PORT=str(port), SLICETWIN_TRANSITIONS_SINK="none")
        procs.append(subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "controller"],
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_port(port, 60)
        reg = RedisRegistry(redis_url, key, prefix,
                            promotion_key=keys["SLICETWIN_PROMOTION_KEY"])
        versions = [f"hotswap-{os.getpid()}-{i}" for i in range(swaps)]
        for i, v in enumerate(versions):
            reg.publish("policy", _student_blob(1000 + i, v), version=v)

        maker = ReportMaker(cells, seed=0)
        first_seen: dict[str, float] = {}
        stats = {"requests": 0, "failed": 0}
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0, headers={
                    "authorization": f"Bearer {keys['SLICETWIN_API_KEY']}"}) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/v1/reports", content=maker.one(),
                                   headers={"content-type": "application/json"})
                        now = time.perf_counter()
                        stats["requests"] += 1
                        if r.status_code != 200:
                            stats["failed"] += 1
                            continue
                        v = r.json().get("policy_version")
                        first_seen.setdefault(v, now)
                    except httpx.HTTPError:
                        stats["failed"] += 1

        th = threading.Thread(target=client, daemon=True)
        th.start()
        time.sleep(0.5)
        delays = []
        for v in versions:
            t0 = time.perf_counter()
            reg.promote("policy", v)
            deadline = t0 + timeout_s
            while v not in first_seen and time.perf_counter() < deadline:
                time.sleep(0.001)
            if v in first_seen:
                delays.append(first_seen[v] - t0)
            time.sleep(0.1)
        stop.set()
        th.join(10)
        reg.close()
        d = np.asarray(delays) * 1e3
        return {"bench": "hotswap", "swaps": swaps, "served": len(delays),
                "publish_to_serving_ms_p50": round(float(np.percentile(d, 50)), 2) if len(d) else None,
                "publish_to_serving_ms_p99": round(float(np.percentile(d, 99)), 2) if len(d) else None,
                "publish_to_serving_ms_max": round(float(d.max()), 2) if len(d) else None,
                "requests": stats["requests"], "failed_requests": stats["failed"],
                "target_p99_ms": 1000.0}
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
