"""The demo's moving parts that are not learning: a private Redis, the controller server.

Two ways to run the controller, same code (``controller.app.create_app``):

- :class:`ControllerProcess`: ``slicetwin controller`` as a child process (Redis mode), exactly as
  the compose stack runs it; models arrive through the Redis registry's pub/sub events.
- :class:`ControllerThread`: a uvicorn server in a thread of this process (embedded mode), sharing
  an in-memory registry and transitions sink with the trainer: nothing else to install.

Children are started in their own session, so a Ctrl-C in the terminal reaches only the demo,
which then stops them in order (gNB, trainer, controller, Redis) and still writes its summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import uvicorn

from controller.app import create_app
from controller.settings import ControllerSettings
from slicetwin.platform.redis_client import connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Until something listens on 127.0.0.1:``port`` (RuntimeError when ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before listening "
                               f"on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def _stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eEinfNa]+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {"name{labels}": value} (enough for counters and gauges)."""
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class RedisServer:
    """A ``redis-server`` we own on a loopback port. :meth:`stop` and :meth:`start` again keep
    the port and the directory, so a test or a soak can take Redis away and bring it back;
    ``persist`` takes RDB snapshots as the compose file does (``--save "10 1"`` and one at
    shutdown), so a restart is an outage, not a wipe. :meth:`cleanup` also removes a directory
    it made."""

    def __init__(self, port: int | None = None, workdir: str | Path | None = None,
                 extra_args: list[str] | tuple = (), persist: bool = False,
                 binary: str = "redis-server"):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._made = None if workdir is not None else tempfile.mkdtemp(prefix="slicetwin-redis-")
        self.workdir = Path(workdir if workdir is not None else self._made)
        self.extra_args, self.persist, self.binary = list(extra_args), persist, binary
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def find() -> str | None:
        return shutil.which("redis-server")

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save",
             "10 1" if self.persist else "", "--appendonly", "no", "--dir", str(self.workdir),
             *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(self.port, timeout, self.proc)
        except RuntimeError as e:
            raise RuntimeError(f"redis-server did not start (bad arguments or ACL file?): "
                               f"{e}") from None
        return self

    def stop(self) -> None:
        """SIGTERM: with ``persist`` Redis writes its snapshot before it exits."""
        _stop_process(self.proc, 30.0)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)


def controller_env(base: dict[str, str], *, port: int, redis_url: str | None, prefix: str,
                   epsilon: float, explore_budget: int, seed: int,
                   api_key: str | None = None, cold_start: str = "init",
                   n_units: int = 100, total_bandwidth_hz: float = 20e6) -> dict[str, str]:
    """``SLICETWIN_*`` settings of the demo's controller (same names as the compose file).
    The demo runs in development mode (public registry keys accepted, nothing to configure),
    but its controller still checks the bearer ``api_key`` the demo's gNB sends. ``n_units``
    and ``total_bandwidth_hz`` follow the simulated gNB's carrier."""
    env = {k: v for k, v in base.items() if not k.startswith("SLICETWIN_")}
    env.update({
        "SLICETWIN_ENV": "dev",
        "SLICETWIN_HOST": "127.0.0.1", "SLICETWIN_PORT": str(port),
        "SLICETWIN_REGISTRY_PREFIX": prefix, "SLICETWIN_MODEL_SOURCE": "auto",
        "SLICETWIN_COLD_START": cold_start,
        "SLICETWIN_N_UNITS": str(int(n_units)),
        "SLICETWIN_TOTAL_BANDWIDTH_HZ": repr(float(total_bandwidth_hz)),
        "SLICETWIN_INIT_SEED": str(seed), "SLICETWIN_EXPLORE_EPSILON": repr(epsilon),
        "SLICETWIN_EXPLORE_BUDGET_PER_CELL": str(explore_budget),
        "SLICETWIN_EXPLORE_SEED": str(seed), "SLICETWIN_LOG_LEVEL": "warning"})
    for k in ("SLICETWIN_HMAC_KEY",):  # keep a shared key the user set for the whole stack
        if k in base:
            env[k] = base[k]
    if redis_url:
        env["SLICETWIN_REDIS_URL"] = redis_url
    if api_key:
        env["SLICETWIN_API_KEY"] = api_key
    return env


class ControllerProcess:
    """``slicetwin controller`` as a child process, exactly as deployed (a context manager).

    ``env`` adds settings to this process's environment (``inherit_env=False``: ``env`` is the
    whole environment, as the demo builds it). The output goes to ``log_path`` or to a
    temporary log that :meth:`log_tail` reads back when something fails. ``own_session``
    keeps a terminal's Ctrl-C from reaching it (the demo stops its parts in order)."""

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None,
                 log_path: Path | None = None, *, inherit_env: bool = True,
                 ready_path: str = "/healthz", ready_timeout: float = 60.0,
                 own_session: bool = False):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**(os.environ if inherit_env else {}), "SLICETWIN_PORT": str(self.port),
                    "SLICETWIN_LOG_LEVEL": "warning", **(env or {})}
        self.log_path, self.ready_path, self.ready_timeout = log_path, ready_path, ready_timeout
        self.own_session = own_session
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float | None = None) -> ControllerProcess:
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        else:
            self._log = tempfile.NamedTemporaryFile(prefix="slicetwin-ctl-", suffix=".log",
                                                    delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "controller"],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=self.own_session)
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with status {self.proc.returncode} while "
                                   f"starting: {self.log_tail()}")
            try:
                status, body = http_get(self.url + self.ready_path, 1.0)
                if status == 200:
                    return self
                last = body[:200].decode(errors="replace")
            except OSError as e:
                last = type(e).__name__
            time.sleep(0.1)
        raise RuntimeError(f"controller at {self.url} not ready after "
                           f"{timeout or self.ready_timeout:.0f} s ({last}): {self.log_tail()}")

    def get(self, path: str) -> tuple[int, dict | bytes]:
        status, body = http_get(self.url + path)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def metrics(self) -> dict[str, float]:
        return parse_metrics(http_get(self.url + "/metrics")[1].decode())

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def log_tail(self, n: int = 3000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        with open(self._log.name, errors="replace") as fh:
            return fh.read()[-n:]

    def stop(self) -> None:
        _stop_process(self.proc, 15.0)
        self.proc = None
        if self._log is not None:
            self._log.close()
            if self.log_path is None:
                os.unlink(self._log.name)
            self._log = None

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ControllerThread:
    """The controller app served by uvicorn in a thread of this process (embedded mode)."""

    def __init__(self, env: dict[str, str], port: int, registry):
        self.env, self.port, self.registry = env, port, registry
        self.url = f"http://127.0.0.1:{port}"
        self.app = None
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> ControllerThread:
        fields = {k[len("SLICETWIN_"):].lower(): v for k, v in self.env.items()
                  if k.startswith("SLICETWIN_")}
        settings = ControllerSettings(**fields)
        self.app = create_app(settings, registry=self.registry)
        cfg = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                             access_log=False, lifespan="on")
        self._server = uvicorn.Server(cfg)
        self._server.install_signal_handlers = lambda: None  # the demo owns Ctrl-C
        self._thread = threading.Thread(target=self._server.run, name="controller",
                                        daemon=True)
        self._thread.start()
        _wait_ready(self.url, timeout, None)
        return self

    @property
    def sink(self):
        """The controller's transitions sink (a MemorySink here): the trainer reads it."""
        return self.app.state.sink

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None


class TwinServiceProcess:
    """``slicetwin twin`` as a child process (opt-in, Redis mode): it serves no twin until the
    trainer's first one is promoted in the registry, then reloads on every twin promotion; the
    trainer's agent 2 then trains through it (``SLICETWIN_TWIN_URL``)."""

    def __init__(self, env: dict[str, str], redis_url: str, prefix: str, log_path: Path,
                 api_key: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in env.items() if not k.startswith("SLICETWIN_")}
        self.env["SLICETWIN_REGISTRY_PREFIX"] = prefix
        self.env["SLICETWIN_ENV"] = "dev"  # the demo's registry keys are the public dev ones
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        if api_key:
            self.env["SLICETWIN_TWIN_API_KEY"] = api_key
        if "SLICETWIN_HMAC_KEY" in env:
            self.env["SLICETWIN_HMAC_KEY"] = env["SLICETWIN_HMAC_KEY"]
        self.redis_url, self.log_path = redis_url, log_path
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._cache: tuple[float, dict | None] = (0.0, None)

    def start(self, wait: bool = False, timeout: float = 90.0) -> TwinServiceProcess:
        """Launch; with ``wait`` block until ``/healthz`` answers (it imports torch: ~10 s). The
        trainer needs it only at its first cycle and trains in-process while it is down."""

        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slicetwin.cli.main", "twin", "--port", str(self.port),
             "--redis-url", self.redis_url], env=self.env, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"twin service exited with status {self.proc.returncode} "
                                   "while starting (see twin.log in the output folder)")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        if wait:
            raise RuntimeError(f"twin service at {self.url} not up after {timeout:.0f} s")
        return self

    def state(self) -> str:
        """One line for the view: starting / serving <version> / exited."""
        if self.proc is not None and self.proc.poll() is not None:
            return f"exited with status {self.proc.returncode} (see twin.log)"
        info = self.model()
        return f"serving {info['version']}" if info else "up, no twin yet (or starting)"

    def model(self) -> dict | None:
        """``GET /v1/twin/model`` (at most every 2 s; None while it serves no twin yet)."""

        t, info = self._cache
        if time.monotonic() - t < 2.0:
            return info
        try:
            r = httpx.get(self.url + "/v1/twin/model", timeout=1.0, headers=self.headers)
            info = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            info = None
        self._cache = (time.monotonic(), info)
        return info

    def stop(self) -> None:
        _stop_process(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _wait_ready(url: str, timeout: float, proc: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"controller exited with status {proc.returncode} while "
                               "starting (see controller.log in the output folder)")
        try:
            r = httpx.get(url + "/readyz", timeout=1.0)
            if r.status_code == 200:
                return
            last = r.text[:200]
        except httpx.HTTPError as e:
            last = type(e).__name__
        time.sleep(0.1)
    raise RuntimeError(f"controller at {url} not ready after {timeout:.0f} s ({last})")


def clear_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (the demo's own keys on a Redis it did not start)."""

    r = connect(redis_url)
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
        return len(keys)
    finally:
        r.close()


def env_redis_url() -> str | None:
    """``REDIS_URL`` (or ``SLICETWIN_REDIS_URL``) when the user set one."""
    return os.environ.get("REDIS_URL") or os.environ.get("SLICETWIN_REDIS_URL") or None
