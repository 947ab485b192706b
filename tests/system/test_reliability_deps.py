"""Twin service or trainer down: the controller does not notice (it never calls either); the
trainer retries with exponential backoff when Redis is away and resumes when it is back.

Real parts: a controller process, a twin-service process and a ``slicetwin trainer`` process
killed with SIGKILL under load; the trainer's own ingest loop against a dead then live Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from slicetwin.ops.loadgen import LoadConfig, drive
from slicetwin.ops.procs import ControllerProcess, free_port, http_get
from tests.support.keys import sign_dev


def _spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow  # starts torch in two extra processes: ~30 s on the shared host
def test_controller_unaffected_when_twin_and_trainer_die(redis_url, tmp_path):
    from slicetwin.twin import Twin, TwinConfig

    twin_file = tmp_path / "twin.pt"
    Twin(TwinConfig(ensemble=2, lstm_hidden=8, head_hidden=8, reward_hidden=(8, 8))).save(
        twin_file)
    sign_dev(twin_file, "twin")
    env = {**os.environ, "SLICETWIN_REDIS_URL": redis_url, "SLICETWIN_HMAC_KEY": "deps-key",
           "SLICETWIN_DATA_DIR": str(tmp_path / "trainer"), "SLICETWIN_MIN_TRANSITIONS":
           "1000000000", "SLICETWIN_CHECKPOINT": "false"}
    twin_port = free_port()
    twin = _spawn(["twin", "--port", str(twin_port), "--model", str(twin_file)], env)
    trainer = _spawn(["trainer"], env)
    ctl_env = {"SLICETWIN_REDIS_URL": redis_url, "SLICETWIN_HMAC_KEY": "deps-key",
               "SLICETWIN_CELL_STORE": "local"}
    try:
        with ControllerProcess(ctl_env) as ctl:
            import redis

            r = redis.Redis.from_url(redis_url)
            deadline = time.time() + 120
            while True:  # both up: twin ready, trainer joined the stream's consumer group
                assert twin.poll() is None and trainer.poll() is None
                assert time.time() < deadline, "twin service / trainer did not start"
                twin_ready = _up(twin_port) and http_get(
                    f"http://127.0.0.1:{twin_port}/readyz")[0] == 200
                joined = r.exists("slicetwin:transitions") and r.xinfo_groups(
                    "slicetwin:transitions")
                if twin_ready and joined:
                    break
                time.sleep(0.2)
            r.close()
            killed = {}
            ready: list[int] = []

            def tick(t: float) -> None:
                if t >= 1.5 and not killed:
                    for name, p in (("twin", twin), ("trainer", trainer)):
                        p.send_signal(signal.SIGKILL)
                        killed[name] = p.wait(10)
                ready.append(http_get(ctl.url + "/readyz")[0])

            res = asyncio.run(drive(ctl.port, LoadConfig(rate=150, duration_s=5, connections=4,
                                                         cells=16, bucket_s=5,
                                                         cell_prefix="deps"),
                                    on_tick=tick, tick_s=0.5))
            assert killed == {"twin": -9, "trainer": -9}
            assert res.errors == 0 and res.fallback_answers == 0, res.status
            assert ready and set(ready) == {200}
    finally:
        for p in (twin, trainer):
            if p.poll() is None:
                p.kill()
                p.wait(10)


def _up(port: int) -> bool:
    try:
        http_get(f"http://127.0.0.1:{port}/healthz", 0.5)
        return True
    except OSError:
        return False


def test_trainer_ingest_backs_off_exponentially_and_resumes(tmp_path, caplog):
    """Redis absent at start: the retry delays double up to the cap; once Redis is up the
    trainer joins the stream and ingests what the controller wrote."""
    import redis

    from controller.sinks import RedisStreamSink
    from slicetwin.core.transition_wire import Transition
    from slicetwin.ops.procs import RedisServer
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker, WorkerSettings

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    stop = threading.Event()
    s = WorkerSettings(redis_url=url, data_dir=str(tmp_path / "trainer"), min_transitions=10**9,
                       backoff_initial_s=0.1, backoff_max_s=0.8, read_block_ms=50,
                       checkpoint=False)
    caplog.set_level(logging.WARNING, logger="slicetwin.trainer")
    w = TrainerWorker(s, registry=MemoryRegistry(), stop_event=stop)
    w.start_ingest()
    t_down = time.monotonic()
    time.sleep(2.5)
    delays = [float(m.group(1)) for r in caplog.records
              if (m := re.search(r"ingest failed .* retrying in ([0-9.]+) s", r.getMessage()))]
    assert len(delays) >= 4, delays
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]  # doubling from the initial delay ...
    assert max(delays) == 0.8  # ... capped
    # about one attempt per delay: not a busy loop
    assert len(delays) <= 4 + (time.monotonic() - t_down) / 0.8 + 2
    d = tmp_path / "redis"
    d.mkdir()
    srv = RedisServer(port, d)
    srv.start()
    try:
        sink = RedisStreamSink(url, "slicetwin:transitions").start()
        for i in range(50):
            sink.put(Transition("c", i, [0.1, 0.2, 0.3], 7, 0.5, 1.0, [0.2, 0.3, 0.4],
                                [1, 2, 3], [1, 2, 3], 0.5, "v", False, False, time.time()))
        assert sink.flush(10)
        sink.close()
        deadline = time.time() + 20
        while len(w.store) < 50 and time.time() < deadline:
            time.sleep(0.05)
        assert len(w.store) == 50  # resumed and ingested everything
        r = redis.Redis.from_url(url)
        assert r.xinfo_groups("slicetwin:transitions")[0]["pending"] == 0  # all acknowledged
        r.close()
    finally:
        stop.set()
        w._ingest_thread.join(10)
        srv.stop()
