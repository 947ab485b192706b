"""A real local Redis Cluster for tests and benchmarks: ``redis-server`` processes in cluster mode.

``RedisCluster(masters=3, replicas_per_master=1).start()`` starts ``masters * (1 + replicas)``
nodes on free loopback ports (each with its own free cluster-bus port), joins them with
``redis-cli --cluster create ... --cluster-yes`` and waits until every node reports
``cluster_state:ok``. Node timeouts are short (``cluster-node-timeout`` 1000 ms), so a killed
master's replica takes over within a few seconds. :attr:`url` is the ``redis+cluster://`` URL
every SliceTwin service accepts (``slicetwin.platform.redis_client``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.crc import key_slot

from slicetwin.ops.procs import free_port, wait_port

NODE_TIMEOUT_MS = 1000


class RedisClusterError(RuntimeError):
    """The cluster could not be created, or did not reach ``cluster_state:ok`` in time."""


class RedisCluster:
    """Real redis-server processes in cluster mode on free ports (module doc)."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 1, workdir=None,
                 binary: str = "redis-server", cli: str = "redis-cli"):
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.masters, self.replicas_per_master = masters, replicas_per_master
        self.binary, self.cli = binary, cli
        self._made = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="slicetwin-cluster-"))
        self.ports: list[int] = []
        self.bus: dict[int, int] = {}  # node port -> its cluster-bus port
        self.procs: dict[int, subprocess.Popen] = {}
        self.killed: list[int] = []

    # ------------------------------------------------------------------ life cycle
    @staticmethod
    def available() -> str | None:
        """None when redis-server and redis-cli are installed, else what is missing."""
        missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
        return None if not missing else f"{' and '.join(missing)} not installed"

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every live node as a startup node."""
        live = [p for p in self.ports if p not in self.killed]
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in live)

    def start(self, timeout: float = 30.0) -> RedisCluster:
        n = self.masters * (1 + self.replicas_per_master)
        try:
            for _ in range(n):
                self._start_node()
            cmd = [self.cli, "--cluster", "create",
                   *[f"127.0.0.1:{p}" for p in self.ports],
                   "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if out.returncode != 0:
                raise RedisClusterError(f"redis-cli --cluster create failed: "
                                        f"{(out.stdout + out.stderr)[-600:]}")
            self._wait_ok(timeout, need_masters=self.masters)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, port: int | None = None, bus: int | None = None) -> int:
        if port is None:
            port, bus = free_port(), free_port()
            while bus == port:
                bus = free_port()
            self.ports.append(port)
            self.bus[port] = bus
        d = self.workdir / str(port)
        d.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
             "--cluster-enabled", "yes", "--cluster-port", str(bus),
             "--cluster-config-file", f"nodes-{port}.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--cluster-replica-validity-factor", "0",  # a replica may always take over
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs[port] = proc
        wait_port(port, 10.0, proc)
        return port

    def stop(self) -> None:
        """Kill every node and remove the working directory (when this object made it)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        if self._made:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ topology
    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0,
                           socket_connect_timeout=1.0)

    def _live(self) -> list[int]:
        return [p for p in self.ports if p not in self.killed]

    def _slots(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master port) as a live node sees them."""
        for p in self._live():
            try:
                with self._node(p) as r:
                    return [(int(a), int(b), int(m[1])) for a, b, m, *_ in
                            r.execute_command("CLUSTER SLOTS")]
            except redis.RedisError:
                continue
        raise RedisClusterError("no live node answers CLUSTER SLOTS")

    def master_ports(self) -> list[int]:
        return sorted({m for _, _, m in self._slots()})

    def master_for_key(self, key: str) -> int:
        """Port of the master that holds ``key``'s slot."""
        slot = key_slot(key.encode())
        for a, b, m in self._slots():
            if a <= slot <= b:
                return m
        raise RedisClusterError(f"slot {slot} of {key!r} is not served")

    def kill_master(self, port: int) -> None:
        """SIGKILL the master on ``port``, then wait until a replica took over its slots."""
        if port not in self.master_ports():
            raise ValueError(f"{port} is not a master")
        proc = self.procs[port]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        self.killed.append(port)
        self.wait_failover()

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed node again on its port: it finds its cluster in its nodes file and
        rejoins as a replica of the master that replaced it (the cluster has a replica again
        once its link is up)."""
        if port not in self.killed:
            raise ValueError(f"{port} was not killed")
        self._start_node(port, self.bus[port])
        self.killed.remove(port)
        self._wait_ok(timeout, need_masters=self.masters)

    def wait_failover(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok``, no slot names a dead master and every
        replica's link to its master is up (a fresh replica has synced)."""
        self._wait_ok(timeout, need_masters=self.masters)

    def _wait_ok(self, timeout: float, need_masters: int) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                states, links = [], []
                for p in self._live():
                    with self._node(p) as r:
                        states.append(r.cluster("INFO")["cluster_state"])
                        rep = r.info("replication")
                        if rep.get("role") == "slave":
                            links.append(rep.get("master_link_status") == "up")
                slots = self._slots()
                covered = sum(b - a + 1 for a, b, _ in slots)
                masters = {m for _, _, m in slots}
                if (all(s == "ok" for s in states) and all(links) and covered == 16384
                        and not masters & set(self.killed) and len(masters) >= need_masters):
                    return
                last = (f"states {states}, {covered} slots, masters {sorted(masters)}, "
                        f"replica links up {sum(links)}/{len(links)}")
            except (redis.RedisError, RedisClusterError, KeyError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.1)
        raise RedisClusterError(f"cluster not ok after {timeout:.0f} s ({last})")
