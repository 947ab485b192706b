"""docker-compose.yml read as data, and rendered as local processes (``LocalStack``): the
harness of the compose topology tests and the security checks of the compose file."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from slicetwin.ops.procs import free_port
from slicetwin.platform.keys import fresh_keys
from tests.support.paths import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
SLICETWIN_BIN = Path(sys.executable).with_name("slicetwin")
KEYS = fresh_keys()  # what `slicetwin keys init` writes to .env (the fast tests' keys)
_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?error}`` from the .env values ``env`` (default:
    fresh keys), never from the developer's shell; ``:?`` without a value fails as compose
    would."""
    env = KEYS if env is None else env

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == "?":
            raise AssertionError(f"compose would stop: ${{{name}}} unset ({arg})")
        return arg

    return _INTERP.sub(one, value)


def service_env(svc: dict, keys: dict[str, str] | None = None) -> dict[str, str]:
    env: dict[str, str] = {}
    for f in svc.get("env_file", []) or []:
        for line in (ROOT / f).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                env[k.strip()] = v.strip()
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    env.update({k: interpolate(str(v), keys) for k, v in raw.items()})
    return env


def container_ports(svc: dict) -> list[int]:
    """Ports the service listens on inside its container (``ports`` right side, ``expose``)."""
    out = []
    for p in svc.get("ports", []) or []:
        out.append(int(str(p).split(":")[-1].split("/")[0]))
    out += [int(p) for p in svc.get("expose", []) or []]
    return out


def host_port(svc: dict, cport: int) -> int:
    for p in svc.get("ports", []) or []:
        parts = str(p).split(":")
        if int(parts[-1].split("/")[0]) == cport:
            return int(parts[-2]) if len(parts) > 1 else cport
    return cport


def is_slicetwin(svc: dict) -> bool:
    cmd = svc.get("command")
    return isinstance(cmd, list) and bool(cmd) and cmd[0] == "slicetwin"


def slicetwin_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if is_slicetwin(s)}


def start_order(compose: dict) -> list[str]:
    """Services in an order that respects depends_on (fails on a cycle)."""
    services = compose["services"]
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str) -> None:
        if state.get(n) == 2:
            return
        assert state.get(n) != 1, f"depends_on cycle through {n}"
        state[n] = 1
        for dep in services[n].get("depends_on", {}) or {}:
            visit(dep)
        state[n] = 2
        order.append(n)

    for n in services:
        visit(n)
    return order


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class LocalStack:
    """docker-compose.yml rendered for local processes."""

    compose: dict
    workdir: Path
    redis_port: int
    keys: dict[str, str] = field(default_factory=dict)  # the .env of `slicetwin keys init`
    ports: dict[str, dict[int, int]] = field(default_factory=dict)  # service -> container->local
    volumes: dict[str, Path] = field(default_factory=dict)  # container path -> local dir
    services: dict[str, LocalService] = field(default_factory=dict)

    def __post_init__(self) -> None:
        taken: set[int] = {self.redis_port}
        for name, svc in self.compose["services"].items():
            if name == "redis":
                self.ports[name] = {cp: self.redis_port for cp in container_ports(svc)}
                continue
            m = {}
            for cp in container_ports(svc):
                hp = host_port(svc, cp)
                if hp in taken or not port_free(hp):
                    hp = free_port()
                taken.add(hp)
                m[cp] = hp
            self.ports[name] = m

    # rewriting -----------------------------------------------------------------------------
    def rewrite(self, text: str, own: str | None = None) -> str:
        for name, m in self.ports.items():
            for cp, lp in m.items():
                text = re.sub(rf"(?<![\w.-]){re.escape(name)}:{cp}\b", f"127.0.0.1:{lp}", text)
        if own is not None:
            for cp, lp in self.ports.get(own, {}).items():
                text = re.sub(rf"\b(?:localhost|127\.0\.0\.1):{cp}\b", f"127.0.0.1:{lp}", text)
        for target, local in self.volumes.items():
            if text == target or text.startswith(target + "/"):
                text = str(local) + text[len(target):]
        return text.replace("0.0.0.0", "127.0.0.1")

    def rewrite_args(self, args: list[str], own: str) -> list[str]:
        out = []
        own_ports = {str(cp): str(lp) for cp, lp in self.ports.get(own, {}).items()}
        prev = None
        for a in args:
            a = str(a)
            if prev in ("--port", "-p", "--metrics-port") and a in own_ports:
                a = own_ports[a]
            else:
                a = self.rewrite(a, own)
            out.append(a)
            prev = a
        return out

    def local_service(self, name: str) -> LocalService:
        svc = self.compose["services"][name]
        for vol in svc.get("volumes", []) or []:
            src, target = str(vol).split(":")[:2]
            if not src.startswith((".", "/")):  # named volume -> private directory
                d = self.workdir / "volumes" / src
                d.mkdir(parents=True, exist_ok=True)
                self.volumes[target] = d
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SLICETWIN_") and k != "REDIS_URL"}
        env.update({k: self.rewrite(v, name) for k, v in service_env(svc, self.keys).items()})
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        argv = self.rewrite_args(svc["command"], name)
        if argv[0] == "slicetwin":
            argv[0] = str(SLICETWIN_BIN)
        hc = svc.get("healthcheck", {}).get("test")
        hc_argv = None
        if hc:
            assert hc[0] == "CMD", f"{name}: use the exec form of healthcheck.test"
            hc_argv = self.rewrite_args(hc[1:], name)
            if hc_argv[0] == "python":
                hc_argv[0] = sys.executable
        ls = LocalService(name, argv, env, hc_argv, self.workdir / f"{name}.log")
        self.services[name] = ls
        return ls

    def run_healthcheck(self, ls: LocalService, timeout: float = 90.0) -> None:
        """Run the service's compose health check locally until it passes (service_healthy)."""
        deadline = time.time() + timeout
        last = ""
        while time.time() < deadline:
            if ls.proc is not None and ls.proc.poll() is not None:
                pytest.fail(f"{ls.name} exited with {ls.proc.returncode}:\n{ls.tail()}")
            r = subprocess.run(ls.healthcheck, env=ls.env, capture_output=True, text=True,
                               timeout=10)
            if r.returncode == 0:
                return
            last = (r.stdout + r.stderr)[-500:]
            time.sleep(0.5)
        pytest.fail(f"{ls.name}: health check {ls.healthcheck} never passed: {last}\n{ls.tail()}")

    def stop_all(self) -> None:
        for ls in reversed(list(self.services.values())):
            ls.stop()
