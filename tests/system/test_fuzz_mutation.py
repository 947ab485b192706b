"""Mutation fuzzing of real server processes (controller and twin service) over raw HTTP/1.1.

Valid request bodies are mutated at random (seeded): fields deleted, unknown fields added,
leaves replaced by hostile values (huge and tiny numbers, 1e400, NaN/Infinity literals, wrong
types, long strings, deep nesting), list items duplicated/dropped/shuffled, the JSON truncated
or its bytes flipped, the content type changed. Every request must get an answer (the server
never drops the connection on us), never a 5xx, and every 4xx carries a JSON error body. Cheap
per case (~0.1 ms of client CPU), so the slow variant sends well over 10,000 requests.
"""

from __future__ import annotations

import copy
import json
import random
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest

from slicetwin.ops.procs import ControllerProcess, free_port, http_get
from tests.support.keys import sign_dev

_HOSTILE_RAW = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" + "0" * 400,
                "-0", "0.0000000000000000000000000001", "9223372036854775808", "true", "null",
                '""', '"\\u0000"', '"' + "x" * 5000 + '"', "[]", "{}", '"💥"', "-1",
                "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000]


def _report(cell: str, w: int) -> dict:
    return {"cell_id": cell, "window": w, "window_ms": 200,
            "allocation": [{"slice": "volte", "bandwidth_hz": 2e6, "prb_ratio": 0.1},
                           {"slice": "video", "bandwidth_hz": 1.2e7, "prb_ratio": 0.6},
                           {"slice": "urllc", "bandwidth_hz": 6e6, "prb_ratio": 0.3}],
            "slices": [{"slice": s, "arrived_packets": a, "delivered_packets": a,
                        "sla_met_packets": a // 2, "throughput_bps": 1e6,
                        "spectral_efficiency": 0.5, "latency_mean_ms": 2.0}
                       for s, a in (("volte", 100), ("1-000002", 900), ("urllc", 10))]}


def _kpm(cell: str, w: int) -> dict:
    ms = []
    for sd, a in (("000001", 100), ("000002", 900), ("000003", 10)):
        sst = 2 if sd == "000003" else 1
        lab = {"sliceID": {"sST": sst, "sD": sd}}
        ms += [{"name": "SliceTwin.PktArrivedDl", "value": a, "labels": lab},
               {"name": "SliceTwin.PktDeliveredDl", "value": a, "labels": lab},
               {"name": "SliceTwin.PktSlaMetDl", "value": a // 2, "labels": lab},
               {"name": "DRB.UEThpDl", "value": 1000, "labels": lab}]
    return {"cell_id": cell, "window": w, "granularity_period_ms": 200, "measurements": ms}


def _controller_bases(rng: random.Random, i: int) -> tuple[str, object]:
    cell = f"fz-{i}"
    k = rng.randrange(4)
    if k == 3:  # columnar form
        return "/v1/reports:columns", {
            "cell_id": [f"{cell}-a", f"{cell}-b"], "window": [1, rng.randrange(3)],
            "arrived_packets": [[110, 1240, 12], [90, 800, 3]],
            "delivered_packets": [[110, 1100, 11], [90, 800, 3]],
            "sla_met_packets": [[108, 400, 9], [90, 650, 3]],
            "spectral_efficiency": [3.56, 2.9]}
    if k == 0:
        return "/v1/reports", _report(cell, rng.randrange(3))
    if k == 1:
        return "/v1/reports:batch", {"reports": [_report(f"{cell}-{j}", 1) for j in range(3)]}
    return "/v1/e2/kpm", _kpm(cell, rng.randrange(3))


def _twin_bases(rng: random.Random, i: int) -> tuple[str, object]:
    if rng.random() < 0.5:
        return "/v1/twin/step", {"states": [[0.5, 0.8, 0.6], [0.6, 0.7, 0.5]], "action": 10,
                                 "past_actions": [3], "seed": 1, "t": 3}
    return "/v1/twin/step:batch", {"states": [[[0.5, 0.8, 0.6], [0.6, 0.7, 0.5]]] * 3,
                                   "actions": [1, 2, 3], "past_actions": [[0], [1], [2]],
                                   "seed": 2}


def _paths(doc, prefix=()):
    """Every (path, container) leaf location in a JSON document."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def mutate(rng: random.Random, doc) -> tuple[bytes, str]:
    """One hostile variant of ``doc``: (body bytes, content type)."""
    doc = copy.deepcopy(doc)
    raw_marks: dict[str, str] = {}
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        paths = _paths(doc)
        path = rng.choice(paths)
        if not path:
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        op = rng.randrange(7)
        if op == 0:  # delete
            del parent[key]
        elif op == 1 and isinstance(parent, dict):  # unknown field
            parent[f"unknown_{rng.randrange(99)}"] = rng.choice((1, "x", None, [1]))
        elif op == 2:  # hostile raw literal
            mark = f"@@RAW{len(raw_marks)}@@"
            raw_marks[mark] = rng.choice(_HOSTILE_RAW)
            parent[key] = mark
        elif op == 3:  # numeric edge
            parent[key] = rng.choice((10**30, -(10**30), 2**63, -1, 0, 1e308, -1e-308, 3.5,
                                      float("nan"), float("inf")))
        elif op == 4 and isinstance(parent, list) and parent:  # duplicate / drop / shuffle
            r = rng.randrange(3)
            if r == 0:
                parent.append(copy.deepcopy(rng.choice(parent)))
            elif r == 1:
                parent.pop(rng.randrange(len(parent)))
            else:
                rng.shuffle(parent)
        elif op == 5:  # type confusion
            parent[key] = rng.choice(("12", [parent[key]], {"v": parent[key]}, True, ""))
        else:  # string edge
            parent[key] = rng.choice(("", " ", "volte" * 400, "VIDEO", "1-000002", "\x00", "é"))
    text = json.dumps(doc, allow_nan=True)
    for mark, raw in raw_marks.items():
        text = text.replace(f'"{mark}"', raw)
    body = text.encode()
    r = rng.random()
    if r < 0.07:  # truncated JSON
        body = body[: rng.randrange(len(body))]
    elif r < 0.12:  # flipped bytes
        b = bytearray(body)
        for _ in range(rng.randrange(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        body = bytes(b)
    ctype = "application/json" if rng.random() > 0.05 else rng.choice(
        ("text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"))
    return body, ctype


class Conn:
    def __init__(self, port: int):
        self.port = port
        self.s: socket.socket | None = None

    def post(self, path: str, body: bytes, ctype: str) -> tuple[int, bytes]:
        if self.s is None:
            self.s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.s.sendall(b"POST %s HTTP/1.1\r\nHost: fuzz\r\nContent-Type: %s\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (path.encode(), ctype.encode(),
                                                          len(body), body))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection without an answer")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = int(head[9:12])
        low = head.lower()
        i = low.index(b"content-length:")
        j = low.find(b"\r\n", i)
        n = int(low[i + 15: j if j != -1 else None])
        while len(rest) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("truncated answer")
            rest += chunk
        if b"connection: close" in low:
            self.close()
        return status, rest[:n]

    def close(self) -> None:
        if self.s is not None:
            self.s.close()
            self.s = None


def fuzz(port: int, bases, n: int, seed: int) -> Counter:
    rng = random.Random(seed)
    conn = Conn(port)
    seen: Counter = Counter()
    try:
        for i in range(n):
            path, doc = bases(rng, i)
            body, ctype = mutate(rng, doc)
            status, answer = conn.post(path, body, ctype)
            seen[status] += 1
            assert status < 500, (path, body[:400], status, answer[:400])
            if status >= 400:
                err = json.loads(answer)
                assert ("error" in err and err.get("message")) or "detail" in err, answer[:300]
    finally:
        conn.close()
    return seen


@pytest.fixture(scope="module")
def controller():
    with ControllerProcess({"SLICETWIN_MODEL_SOURCE": "init", "SLICETWIN_TRANSITIONS_SINK":
                            "memory", "SLICETWIN_MAX_BODY_BYTES": "200000"}) as ctl:
        yield ctl


@pytest.fixture(scope="module")
def twin_service(tmp_path_factory):
    from slicetwin.twin import Twin, TwinConfig

    path = tmp_path_factory.mktemp("twin") / "twin.pt"
    Twin(TwinConfig(ensemble=2, lstm_hidden=8, head_hidden=8, reward_hidden=(8, 8),
                    seed=0)).save(path)
    sign_dev(path, "twin")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "twin", "--port", str(port),
                             "--model", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if http_get(f"http://127.0.0.1:{port}/readyz", 0.5)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("twin service did not become ready")
        yield port
    finally:
        proc.terminate()
        proc.wait(15)


def _still_serves(ctl: ControllerProcess) -> None:
    body = json.dumps(_report(f"after-{time.time_ns()}", 1)).encode()
    st, body = Conn(ctl.port).post("/v1/reports", body, "application/json")
    assert st == 200 and json.loads(body)["policy_version"], body


def test_mutation_fuzz_controller(controller):
    seen = fuzz(controller.port, _controller_bases, 600, seed=1)
    assert seen[200] > 0 and sum(v for k, v in seen.items() if 400 <= k < 500) > 300
    _still_serves(controller)
    assert controller.proc.poll() is None


def test_mutation_fuzz_twin(twin_service):
    seen = fuzz(twin_service, _twin_bases, 300, seed=2)
    assert seen[200] > 0 and sum(v for k, v in seen.items() if 400 <= k < 500) > 100


@pytest.mark.slow
def test_mutation_fuzz_controller_many(controller):
    seen = fuzz(controller.port, _controller_bases, 10_000, seed=11)
    print({"controller_mutation_requests": sum(seen.values()), **{str(k): v for k, v in
                                                                  sorted(seen.items())}})
    _still_serves(controller)


@pytest.mark.slow
def test_mutation_fuzz_twin_many(twin_service):
    seen = fuzz(twin_service, _twin_bases, 3000, seed=12)
    print({"twin_mutation_requests": sum(seen.values()), **{str(k): v for k, v in
                                                            sorted(seen.items())}})
