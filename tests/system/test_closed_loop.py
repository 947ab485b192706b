"""Closed-loop proof with real processes: redis-server, ``slicetwin controller``, ``slicetwin
twin``, ``slicetwin trainer`` and ``slicetwin gnb``.

1. explore: the fake gNB drives 4 cells while the controller explores (ε = 1 within a per-cell
   budget: Algorithm 1's agent-1 phase on live traffic); transitions flow to the stream;
2. baseline: the same cells, budget spent, fixed seed: the utility of the initial policy (a
   freshly initialised student, version ``init-0``);
3. the trainer starts, consumes the stream, fits and publishes a twin (the twin service loads
   it), trains, gates and promotes a policy; the gNB keeps sending meanwhile and a probe client
   times event -> first answer with the new version; no request may fail;
4. after the swap: the same cells and seed again; the utility must beat the baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
import redis

from slicetwin.ops.procs import free_port

PY = sys.executable
EXPLORE_WINDOWS = 150


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited early: {proc.args}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def _gnb(env, url: str, windows: int, seed: int, prefix: str = "gnb") -> dict:
    out = subprocess.run([PY, "-m", "slicetwin.cli.main", "gnb", "--controller", url, "--cells", "4",
                          "--windows", str(windows), "--seed", str(seed), "--cell-prefix", prefix,
                          "--json"], env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, out.stderr[-2000:]
    return json.loads(lines[-1])


class Probe:
    """Posts one cell's reports every few ms; records when each policy version first answers,
    and (from the registry's event channel) when each promotion was announced."""

    def __init__(self, url: str, redis_url: str, prefix: str = "slicetwin:"):
        from slicetwin.ops.bench.controller import ReportMaker

        self.url, self.maker = url, ReportMaker(1, seed=1)
        self.first_seen: dict[str, float] = {}
        self.events: dict[str, float] = {}
        self.requests = self.failed = 0
        self._stop = threading.Event()
        self._r = redis.Redis.from_url(redis_url)
        self._ps = self._r.pubsub()
        self._ps.subscribe(prefix + "{models}:events")
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._post, self._listen)]
        for t in self._threads:
            t.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            m = self._ps.get_message(timeout=0.05)
            if m and m["type"] == "message":
                ev = json.loads(m["data"])
                if ev.get("kind") == "policy":
                    self.events.setdefault(ev["version"], time.perf_counter())

    def _post(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as c:
            while not self._stop.is_set():
                try:
                    r = c.post("/v1/reports", content=self.maker.one(),
                               headers={"content-type": "application/json"})
                    now = time.perf_counter()
                    self.requests += 1
                    if r.status_code != 200:
                        self.failed += 1
                    else:
                        self.first_seen.setdefault(r.json()["policy_version"], now)
                except httpx.HTTPError:
                    self.failed += 1
                time.sleep(0.005)

    def delays_ms(self) -> dict[str, float]:
        return {v: round((self.first_seen[v] - t) * 1e3, 2) for v, t in self.events.items()
                if v in self.first_seen}

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._ps.close()
        self._r.close()


@pytest.mark.slow
def test_closed_loop_trainer_policy_is_swapped_in_and_beats_the_initial_policy(
        tmp_path, redis_url, cli_env):
    procs: list[subprocess.Popen] = []
    cport, tport = free_port(), free_port()
    curl, turl = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{tport}"
    base = dict(cli_env, SLICETWIN_REDIS_URL=redis_url)
    logs = {n: open(tmp_path / f"{n}.log", "w") for n in ("controller", "twin", "trainer")}  # noqa: SIM115
    try:
        procs.append(subprocess.Popen(
            [PY, "-m", "slicetwin.cli.main", "controller"], stdout=logs["controller"],
            stderr=subprocess.STDOUT,
            env=dict(base, SLICETWIN_PORT=str(cport), SLICETWIN_EXPLORE_EPSILON="1.0",
                     SLICETWIN_EXPLORE_BUDGET_PER_CELL=str(EXPLORE_WINDOWS),
                     SLICETWIN_EXPLORE_SEED="0")))
        procs.append(subprocess.Popen(
            [PY, "-m", "slicetwin.cli.main", "twin", "--port", str(tport), "--redis-url", redis_url],
            stdout=logs["twin"], stderr=subprocess.STDOUT, env=base))
        _wait_http(curl + "/healthz", procs[0])
        _wait_http(turl + "/healthz", procs[1])

        # 1. explore (every decision of these cells is explored until the budget is spent)
        explore = _gnb(base, curl, EXPLORE_WINDOWS, seed=0)
        assert explore["failed_requests"] == 0
        # 2. baseline: budget spent, the initial student decides alone
        before = _gnb(base, curl, 60, seed=1)
        assert before["failed_requests"] == 0 and set(before["versions"]) == {"init-0"}

        # 3. the trainer closes the loop
        probe = Probe(curl, redis_url)
        procs.append(subprocess.Popen(
            [PY, "-m", "slicetwin.cli.main", "trainer"], stdout=logs["trainer"],
            stderr=subprocess.STDOUT,
            env=dict(base, SLICETWIN_TWIN_URL=turl, SLICETWIN_DATA_DIR=str(tmp_path / "trainer"),
                     SLICETWIN_MIN_TRANSITIONS="400", SLICETWIN_MAX_CYCLES="3")))
        during, swapped = [], None
        deadline = time.time() + 420
        while time.time() < deadline and swapped is None:
            g = _gnb(base, curl, 20, seed=2, prefix="live")  # keeps traffic flowing meanwhile
            during.append(g)
            swapped = next((v for v in probe.first_seen if not v.startswith("init-")), None)
            assert procs[2].poll() is None, (tmp_path / "trainer.log").read_text()[-3000:]
        probe.stop()
        assert swapped, "no trained policy reached the controller; trainer log:\n" + (
            tmp_path / "trainer.log").read_text()[-3000:]
        assert probe.failed == 0 and all(g["failed_requests"] == 0 for g in during)
        delays = probe.delays_ms()
        assert delays and max(delays.values()) < 1000.0, delays

        # 4. the same cells and traffic under the swapped-in policy
        after = _gnb(base, curl, 60, seed=1)
        assert after["failed_requests"] == 0
        served = [v for v in after["versions"] if not v.startswith("init-")]
        assert served, after["versions"]
        r = redis.Redis.from_url(redis_url)
        rec = json.loads(r.hget(f"slicetwin:{{models}}:policy:{served[0]}", "metrics"))
        assert rec["gate"]["passed"] is True
        twin_info = httpx.get(turl + "/v1/twin/model").json()
        assert twin_info["version"].startswith("twin-")  # the service serves the trainer's twin
        cycles = [json.loads(ln) for ln in (tmp_path / "trainer.log").read_text().splitlines()
                  if ln.startswith("{")]
        mine = next(c for c in cycles if c["policy_version"] == served[0])
        assert mine["twin_backend"] == "http"  # agent 2 trained through the twin service
        print(json.dumps({"utility_before": before["utility_mean"],
                          "utility_after": after["utility_mean"], "swapped_in": served,
                          "publish_to_serving_ms": delays, "gate": rec["gate"],
                          "cycle": mine}))
        assert after["utility_mean"] > before["utility_mean"] + 0.05, (before, after)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs.values():
            f.close()


def test_closed_loop_fast_swap_without_failed_request(tmp_path, redis_url, cli_env):
    """The fast variant: controller + trainer (tiny budgets, gate margin wide open) + gNB; the
    trainer's first policy must reach the controller in well under a second, mid-traffic, with
    no failed request. (Utility is asserted by the slow test, which trains for real.)"""
    procs: list[subprocess.Popen] = []
    cport = free_port()
    curl = f"http://127.0.0.1:{cport}"
    base = dict(cli_env, SLICETWIN_REDIS_URL=redis_url)
    log = open(tmp_path / "trainer.log", "w")  # noqa: SIM115
    try:
        procs.append(subprocess.Popen([PY, "-m", "slicetwin.cli.main", "controller"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      env=dict(base, SLICETWIN_PORT=str(cport))))
        tiny = {"MIN_TRANSITIONS": "100", "MAX_CYCLES": "1", "GATE_MARGIN": "10",
                "TWIN_EPOCHS": "5", "TWIN_FIT_SECONDS": "2", "TWIN_ENSEMBLE": "2",
                "TWIN_HIDDEN": "16", "TWIN_STEPS": "20", "ROLLOUT_BATCH": "32",
                "FINETUNE_STEPS": "10", "DISTILL_ROUNDS": "20", "GATE_ROLLOUTS": "16",
                "GATE_HORIZON": "1", "AGENT_HIDDEN": "[32]", "BATCH_SIZE": "32",
                "DATA_DIR": str(tmp_path / "trainer")}
        procs.append(subprocess.Popen([PY, "-m", "slicetwin.cli.main", "trainer"], stdout=log,
                                      stderr=subprocess.STDOUT,
                                      env=dict(base, **{f"SLICETWIN_{k}": v for k, v in tiny.items()})))
        _wait_http(curl + "/healthz", procs[0])
        probe = Probe(curl, redis_url)
        runs, swapped = [], None
        deadline = time.time() + 240
        while time.time() < deadline and swapped is None:
            runs.append(_gnb(base, curl, 40, seed=len(runs)))
            swapped = next((v for v in probe.first_seen if not v.startswith("init-")), None)
        time.sleep(0.3)
        probe.stop()
        assert swapped, (tmp_path / "trainer.log").read_text()[-3000:]
        assert probe.failed == 0 and all(g["failed_requests"] == 0 for g in runs)
        assert probe.requests > 0
        delays = probe.delays_ms()
        assert swapped in delays and delays[swapped] < 1000.0, delays
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
