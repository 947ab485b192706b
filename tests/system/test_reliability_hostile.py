"""Hostile input against a real controller process with an API key: oversized bodies (declared
and chunked), deep nesting, huge numbers, NaN/Infinity literals, unknown fields, wrong slice
sets, windows out of order -> a clear 4xx with a JSON error naming the problem; the key is
enforced on every mutating endpoint (enumerated from the app) and compared in constant time.
After all of it the controller still serves, and nothing bad reached the transitions.
"""

from __future__ import annotations

import inspect
import json

import httpx
import pytest

from slicetwin.ops.procs import ControllerProcess

KEY = "s3cret-key"
AUTH = {"authorization": f"Bearer {KEY}"}
LIMIT = 100_000


def _report(cell: str, w: int, **over) -> dict:
    r = {"cell_id": cell, "window": w, "slices": [
        {"slice": s, "arrived_packets": a, "delivered_packets": a, "sla_met_packets": a // 2,
         "throughput_bps": 1e6, "spectral_efficiency": 0.5}
        for s, a in (("volte", 100), ("video", 900), ("urllc", 10))]}
    r.update(over)
    return r


@pytest.fixture(scope="module")
def ctl():
    with ControllerProcess({"SLICETWIN_API_KEY": KEY, "SLICETWIN_MODEL_SOURCE": "init",
                            "SLICETWIN_TRANSITIONS_SINK": "memory",
                            "SLICETWIN_MAX_BODY_BYTES": str(LIMIT),
                            "SLICETWIN_MAX_BATCH": "50"}) as c:
        yield c


@pytest.fixture()
def client(ctl):
    with httpx.Client(base_url=ctl.url, timeout=30) as c:
        yield c


def _post_raw(client, body: bytes | str, path: str = "/v1/reports", headers=None):
    return client.post(path, content=body, headers={"content-type": "application/json",
                                                    **AUTH, **(headers or {})})


def _mutating_routes() -> list[tuple[str, str]]:
    from controller.app import create_app
    from controller.settings import ControllerSettings

    app = create_app(ControllerSettings(model_source="none", transitions_sink="none"))
    out = []  # every documented route (routers may be included lazily, so not app.routes)
    for path, ops in app.openapi()["paths"].items():
        out += [(m.upper(), path) for m in ops if m.upper() not in ("GET", "HEAD", "OPTIONS")]
    return sorted(out)


def test_api_key_on_every_mutating_endpoint(client):
    routes = _mutating_routes()
    assert {p for _, p in routes} >= {"/v1/reports", "/v1/reports:batch", "/v1/e2/kpm"}
    body = json.dumps(_report("auth", 1))
    for method, path in routes:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY},
                        {"authorization": f"Bearer {KEY}x"}, {"authorization": f"bearer {KEY}"},
                        {"x-api-key": KEY}):
            r = client.request(method, path, content=body,
                               headers={"content-type": "application/json", **headers})
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.json()["error"] == "unauthorized"
            assert r.headers.get("www-authenticate") == "Bearer"
    # reads stay open (probes and Prometheus need no key), the key lets reports through
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.post("/v1/reports", json=_report("auth", 1), headers=AUTH).status_code == 200


def test_api_key_compared_in_constant_time():
    """Code check: the controller's and twin's auth goes through BearerKeys.refusal, which
    compares with hmac.compare_digest, not ==."""
    from controller import edge as controller_edge
    from slicetwin.platform import http_auth

    src = inspect.getsource(http_auth.BearerKeys.refusal)
    assert "hmac.compare_digest(" in src
    assert "== e" not in src and "got ==" not in src and "!=" not in src
    assert "self.keys.refusal(" in inspect.getsource(controller_edge.Edge._post)
    assert "self.keys.refusal(" in inspect.getsource(http_auth.BearerAuth.__call__)




@pytest.mark.parametrize("name,body,status,fragment", [
    ("deep_array", '{"cell_id": "x", "window": 1, "slices": ' + "[" * 20000 + "]" * 20000 + "}",
     422, ""),
    ("deep_object", '{"cell_id": ' + '{"a":' * 12000 + "1" + "}" * 12000 + ', "window": 1}', 422,
     ""),
    ("huge_int_count", json.dumps(_report("h", 1)).replace('"arrived_packets": 100',
                                                           '"arrived_packets": 1' + "0" * 300),
     422, "arrived_packets"),
    ("huge_float", json.dumps(_report("h", 1)).replace('"throughput_bps": 1000000.0',
                                                       '"throughput_bps": 1e400', 1), 422,
     "throughput_bps"),
    ("huge_window", json.dumps(_report("h", 1)).replace('"window": 1', '"window": 1' + "0" * 40),
     422, "window"),
    ("nan_literal", json.dumps(_report("h", 1)).replace('"spectral_efficiency": 0.5',
                                                        '"spectral_efficiency": NaN', 1), 422,
     "spectral_efficiency"),
    ("infinity_literal", json.dumps(_report("h", 1)).replace('"throughput_bps": 1000000.0',
                                                             '"throughput_bps": Infinity', 1),
     422, "throughput_bps"),
    ("neg_infinity_literal", json.dumps(_report("h", 1)).replace(
        '"spectral_efficiency": 0.5', '"spectral_efficiency": -Infinity', 1), 422,
     "spectral_efficiency"),
    ("unknown_top_field", json.dumps(_report("h", 1, extra=1)), 422, "extra"),
    ("unknown_slice_field", json.dumps(_report("h", 1)).replace('"slice": "volte"',
                                                                '"slice": "volte", "x": 1'),
     422, "x"),
    ("missing_slice", json.dumps({**_report("h", 1), "slices": _report("h", 1)["slices"][:2]}),
     422, "slices"),
    ("repeated_slice", json.dumps({**_report("h", 1), "slices": _report("h", 1)["slices"][:2]
                                   + _report("h", 1)["slices"][:1]}), 422, "slices"),
    ("unknown_slice", json.dumps(_report("h", 1)).replace('"volte"', '"mmtc"'), 422, "slice"),
    ("four_slices", json.dumps({**_report("h", 1), "slices": _report("h", 1)["slices"]
                                + [dict(_report("h", 1)["slices"][0], slice="1-000004")]}), 422,
     "slice"),
    ("sla_gt_delivered", json.dumps(_report("h", 1)).replace('"sla_met_packets": 50',
                                                             '"sla_met_packets": 5000'), 422,
     "sla"),
    ("negative_count", json.dumps(_report("h", 1)).replace('"arrived_packets": 10,',
                                                           '"arrived_packets": -10,'), 422,
     "arrived_packets"),
    ("malformed", '{"cell_id": "x", "window": ', 422, ""),
    ("not_an_object", "[1, 2, 3]", 422, ""),
    ("empty", "", 422, ""),
    ("binary", b"\xff\xfe\x00garbage", 422, ""),
])
def test_hostile_bodies_get_clear_4xx(client, name, body, status, fragment):
    r = _post_raw(client, body)
    assert r.status_code == status, (name, r.status_code, r.text[:300])
    err = r.json()
    assert err["error"] and err["message"], err
    assert fragment.lower() in json.dumps(err).lower(), (name, err)


def test_oversized_bodies_413_declared_and_chunked(client):
    big = json.dumps(_report("big", 1, cell_id="x" * (LIMIT + 10))).encode()
    r = _post_raw(client, big)
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    def chunks():
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = client.post("/v1/reports", content=chunks(),
                    headers={"content-type": "application/json", **AUTH})  # no Content-Length
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    # a batch over max_batch (50) but under the byte limit
    reps = {"reports": [_report(f"b{i}", 1) for i in range(51)]}
    r = _post_raw(client, json.dumps(reps), "/v1/reports:batch")
    assert r.status_code in (413, 422) and "reports" in r.text


def test_windows_out_of_order_and_duplicates(client):
    ok = lambda w: _post_raw(client, json.dumps(_report("ord", w)))  # noqa: E731
    assert ok(5).status_code == 200
    r = ok(5)
    assert r.status_code == 409 and r.json()["error"] == "duplicate_window"
    r = ok(3)
    assert r.status_code == 422 and r.json()["error"] == "window_backwards"
    assert ok(6).status_code == 200
    # batch: one backward window refuses the whole batch, nothing moves
    b = {"reports": [_report("ord-b", 1), _report("ord", 4)]}
    r = _post_raw(client, json.dumps(b), "/v1/reports:batch")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reports", 1,
                                                                      "window"]
    assert ok(7).status_code == 200
    assert _post_raw(client, json.dumps(_report("ord-b", 1))).status_code == 200  # untouched


def test_still_serving_after_the_abuse(ctl, client):
    m = ctl.metrics()
    assert m.get('slicetwin_errors_total{kind="unauthorized"}', 0) > 0
    assert m.get('slicetwin_errors_total{kind="validation"}', 0) > 0
    r = _post_raw(client, json.dumps(_report("final", 1)))
    assert r.status_code == 200 and not r.json()["fallback"]
    assert ctl.proc.poll() is None
