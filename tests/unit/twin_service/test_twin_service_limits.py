"""Twin service body size limit: oversized bodies get 413 (with or without Content-Length) and
the next good request is served."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from slicetwin.twin import Twin, TwinConfig
from twin_service.app import create_app
from twin_service.model import TwinHolder
from twin_service.settings import TwinServiceSettings

GOOD = {"states": [[0.5, 0.8, 0.6]], "action": 10, "seed": 1}


@pytest.fixture()
def client():
    holder = TwinHolder()
    holder.load_twin(Twin(TwinConfig(ensemble=2, lstm_hidden=8, head_hidden=8,
                                     reward_hidden=(8, 8), seed=0)), "v-limit")
    with TestClient(create_app(TwinServiceSettings(max_body_bytes=2000), holder)) as c:
        yield c


def test_oversized_body_is_413_and_next_request_served(client):
    big = {"states": [[0.5, 0.8, 0.6]] * 200, "action": 10}
    r = client.post("/v1/twin/step", json=big)
    assert r.status_code == 413 and "exceeds the limit of 2000" in r.json()["message"]

    def chunks():  # no Content-Length: the limit must still hold while streaming
        body = json.dumps(big).encode()
        for i in range(0, len(body), 500):
            yield body[i:i + 500]

    r = client.post("/v1/twin/step", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    ok = client.post("/v1/twin/step", json=GOOD)
    assert ok.status_code == 200, ok.text
