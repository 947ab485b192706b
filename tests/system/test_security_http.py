"""Authenticated HTTP (issue 16, item 3; docs/security.md rows "gNB" and "network peer").

The controller needs the bearer key on every POST, the twin service on every /v1/twin/* route;
/metrics is open unless metrics_auth. Bad or missing credentials get 401 (never 5xx), counted
in slicetwin_auth_refused_total / slicetwin_twin_auth_refused_total. During a rotation the
previous key is accepted too.
"""

from __future__ import annotations

import socket

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from controller.app import create_app
from controller.settings import ControllerSettings
from tests.support.controller import controller_process, report

KEY, OLD = "k" * 24 + "-current", "o" * 24 + "-previous"
POSTS = {"/v1/reports": report("a", 1),
         "/v1/reports:batch": {"reports": [report("b", 1)]},
         "/v1/reports:columns": {"cell_id": ["c"], "window": [1], "window_ms": [200.0],
                                 "arrived": [[10, 10, 1]], "delivered": [[10, 10, 1]],
                                 "sla_met": [[5, 5, 1]], "throughput_bps": [[1e6, 2e6, 3e6]],
                                 "spectral_efficiency": [1.0]},
         "/v1/e2/kpm": {"cell_id": "d", "window": 1}}


def _refused(text: str, name: str = "slicetwin_auth_refused") -> dict:
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return {s.labels["reason"]: s.value for s in fams[name].samples if s.name.endswith("_total")}


def test_controller_needs_the_key_on_every_post_and_counts_refusals():
    s = ControllerSettings(env="production", api_key=KEY, api_key_previous=OLD)
    with TestClient(create_app(s)) as c:
        for path, body in POSTS.items():
            r = c.post(path, json=body)
            assert r.status_code == 401, (path, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and r.json()["error"] == "unauthorized"
            r = c.post(path, json=body, headers={"authorization": "Bearer wrong-key-0123456789"})
            assert r.status_code == 401 and "wrong" in r.json()["message"]
            for key in (KEY, OLD):  # current and previous key (rotation window)
                r = c.post(path, json=body, headers={"authorization": f"Bearer {key}"})
                assert r.status_code != 401, (path, r.text)
        r = c.post("/v1/reports", json=report("e", 1), headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 200
        # read-only operations stay open; /metrics is open by default
        for path in ("/healthz", "/readyz", "/v1/policy", "/metrics"):
            assert c.get(path).status_code == 200, path
        assert _refused(c.get("/metrics").text) == {"missing": 4.0, "wrong": 4.0}


def test_controller_metrics_key_is_configurable():
    s = ControllerSettings(env="production", api_key=KEY, metrics_auth=True)
    with TestClient(create_app(s)) as c:
        assert c.get("/metrics").status_code == 401
        r = c.get("/metrics", headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and _refused(r.text)["missing"] == 1.0
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize("header", [
    b"", b"Bearer", b"Bearer ", b"bearer " + KEY.encode(), b"Basic dXNlcjpwYXNz",
    b"Bearer " + KEY.encode() + b"x", b"Bearer " + KEY.encode()[:-1], b"\xff\xfe\x00garbage",
    b"Bearer " + b"A" * 8000, KEY.encode()])
def test_controller_process_answers_401_never_5xx_to_any_credential(header, tmp_path):
    """Real uvicorn process, raw bytes on the wire: odd, huge or non-ASCII headers."""
    body = httpx.Request("POST", "http://x/", json=report("z", 1)).content
    with controller_process(env="production", api_key=KEY, cell_store="local") as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            head = (b"POST /v1/reports HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    b"Authorization: " + header + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
            sock.sendall(head + body)
            status = int(sock.recv(65536).split(b" ", 2)[1])
        assert status in (400, 401), status  # 400: uvicorn refuses a malformed header itself
        m = httpx.get(url + "/metrics").text
        assert sum(_refused(m).values()) == (1.0 if status == 401 else 0.0)
        assert 'slicetwin_requests_total{endpoint="/v1/reports",status="5' not in m


@pytest.fixture(scope="module")
def twin_obj():
    from slicetwin.twin import Twin

    return Twin()


def _twin_app(twin, **kw):
    from twin_service.app import create_app as twin_app
    from twin_service.model import TwinHolder
    from twin_service.settings import TwinServiceSettings

    holder = TwinHolder()
    holder.load_twin(twin, "t1")
    return twin_app(TwinServiceSettings(env="production", torch_threads=1, **kw), holder)


def _step_body(twin):
    return {"states": np.ones((twin.history_len, 3)).tolist(), "action": 0}


def test_twin_service_needs_the_key_and_counts_refusals(twin_obj):
    with TestClient(_twin_app(twin_obj, api_key=KEY, api_key_previous=OLD)) as c:
        for path, call in (("/v1/twin/step", lambda h: c.post("/v1/twin/step",
                                                              json=_step_body(twin_obj),
                                                              headers=h)),
                           ("/v1/twin/model", lambda h: c.get("/v1/twin/model", headers=h))):
            assert call({}).status_code == 401, path
            assert call({"authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
            for key in (KEY, OLD):
                assert call({"authorization": f"Bearer {key}"}).status_code == 200, path
        for path in ("/healthz", "/readyz", "/metrics"):
            assert c.get(path).status_code == 200, path
        assert _refused(c.get("/metrics").text, "slicetwin_twin_auth_refused") == {
            "missing": 2.0, "wrong": 2.0}
    with TestClient(_twin_app(twin_obj, api_key=KEY, metrics_auth=True)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"authorization": f"Bearer {KEY}"}).status_code == 200


def test_twin_service_lower_default_limits(twin_obj):
    from twin_service.settings import TwinServiceSettings

    s = TwinServiceSettings(env="dev")
    assert s.max_body_bytes == 8 * 2**20 and s.max_batch == 8192  # were 64 MiB and 65,536
    h = {"authorization": f"Bearer {KEY}"}
    with TestClient(_twin_app(twin_obj, api_key=KEY)) as c:
        from slicetwin.twin.wire import pack

        n = s.max_batch + 1
        body = {"states": pack(np.ones((n, twin_obj.history_len, 3), np.float32)),
                "actions": pack(np.zeros(n, np.int64)), "encoding": "packed"}
        r = c.post("/v1/twin/step:batch", json=body, headers=h)
        assert r.status_code == 422 and "exceeds max_batch 8192" in r.text
        r = c.post("/v1/twin/step:batch", content=b"x" * (s.max_body_bytes + 1),
                   headers={**h, "content-type": "application/json"})
        assert r.status_code == 413
        # an unauthenticated body is refused before it is read
        r = c.post("/v1/twin/step:batch", content=b"x" * (s.max_body_bytes + 1),
                   headers={"content-type": "application/json"})
        assert r.status_code == 401
