"""The service platform both services share: error envelope, body limit, ops routes, registry
connection settings, Redis domain errors."""

from __future__ import annotations

import pytest
import redis
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel
from pydantic_settings import SettingsConfigDict

from slicetwin.platform.http import (
    BadContentLength,
    BodyLimit,
    declared_length,
    install_error_envelope,
)
from slicetwin.platform.ops_routes import ops_router
from slicetwin.platform.redis_errors import StoreUnavailable, is_store_failure, store_errors
from slicetwin.platform.security import registry_connection


class Item(BaseModel):
    n: int


def _app(limit: int = 100, ready: bool = True) -> tuple[FastAPI, list]:
    app = FastAPI()
    counted: list[str] = []
    install_error_envelope(app, count=counted.append)

    @app.post("/item")
    async def item(body: Item):
        if body.n < 0:
            raise HTTPException(503, "no model yet")
        return {"n": body.n}

    async def readiness():
        return {"ready": ready, "checks": {"model_loaded": ready}}

    app.include_router(ops_router(readiness, lambda: b"# metrics\n"))
    app.add_middleware(BodyLimit, limit=limit, on_refused=counted.append)
    return app, counted


def test_errors_share_one_envelope():
    app, counted = _app()
    with TestClient(app) as c:
        bad = c.post("/item", json={"n": "x"})
        assert bad.status_code == 422
        assert bad.json()["error"] == "validation" and bad.json()["message"].startswith("n:")
        assert bad.json()["detail"][0]["loc"] == ["body", "n"]
        down = c.post("/item", json={"n": -1})
        assert down.status_code == 503 and down.json() == {
            "error": "unavailable", "message": "no model yet",
            "detail": [{"loc": ["body"], "msg": "no model yet", "type": "unavailable"}]}
        missing = c.get("/nowhere")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert counted == ["validation"]


def test_body_limit_declared_streamed_and_malformed():
    app, counted = _app(limit=20)
    with TestClient(app) as c:
        assert c.post("/item", json={"n": 1}).json() == {"n": 1}
        big = c.post("/item", content=b'{"n": 1' + b" " * 40 + b"}",
                     headers={"content-type": "application/json"})
        assert big.status_code == 413 and big.json()["error"] == "too_large"

        def chunks():
            yield b'{"n": '
            yield b" " * 40 + b"1}"

        streamed = c.post("/item", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "exceeds the limit of 20" in streamed.json()["message"]
    assert counted == ["too_large", "too_large"]
    with pytest.raises(BadContentLength):
        declared_length([(b"content-length", b"12x")])
    with pytest.raises(BadContentLength):
        declared_length([(b"content-length", b"-3")])
    assert declared_length([(b"host", b"x")]) is None


def test_ops_routes_answer_readiness_and_metrics():
    for ready, status in ((True, 200), (False, 503)):
        app, _ = _app(ready=ready)
        with TestClient(app) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            r = c.get("/readyz")
            assert r.status_code == status and r.json()["ready"] is ready
            assert c.get("/metrics").text == "# metrics\n"


def test_registry_connection_reads_the_shared_names(monkeypatch):
    monkeypatch.setenv("SLICETWIN_REDIS_URL", "redis://shared:6379/0")
    monkeypatch.setenv("SLICETWIN_TWIN_REGISTRY_PREFIX", "twin-own:")
    class Plain(registry_connection()):  # as the controller and the trainer declare it
        model_config = SettingsConfigDict(env_prefix="SLICETWIN_")

    class Own(registry_connection("SLICETWIN_TWIN_", verify=True)):  # as the twin service
        model_config = SettingsConfigDict(env_prefix="SLICETWIN_TWIN_")

    class Generic(registry_connection(redis_url_names=("REDIS_URL",))):
        model_config = SettingsConfigDict(env_prefix="SLICETWIN_")

    plain, own = Plain, Own
    assert plain().redis_url == own().redis_url == "redis://shared:6379/0"
    assert plain().registry_prefix == "slicetwin:" and own().registry_prefix == "twin-own:"
    assert plain(redis_url="redis://kw/0").redis_url == "redis://kw/0"
    monkeypatch.setenv("REDIS_URL", "redis://generic/0")
    monkeypatch.delenv("SLICETWIN_REDIS_URL")
    assert plain().redis_url is None  # only the names a service declares
    assert Generic().redis_url == "redis://generic/0"
    with pytest.raises(ValueError, match="promotion_public_key"):
        own(promotion_public_key="not-a-key")


def test_redis_failures_become_one_domain_error():
    r = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(StoreUnavailable, match="cell memory"), store_errors("cell memory"):
        r.ping()
    assert is_store_failure(redis.exceptions.ResponseError("WRONGTYPE"))
    assert is_store_failure(StoreUnavailable("x")) and not is_store_failure(ValueError("x"))
    with pytest.raises(KeyError), store_errors("cell memory"):
        raise KeyError("not a store failure: passes through")
