"""The compose Redis ACL (slicetwin.platform.redis_acl, written by `slicetwin keys init`) on a real
redis-server: every service does its job with its own user, and is refused outside it.

Threat-model row "Redis writer" / "network peer" (docs/security.md): a peer without a password
can only PING; the controller's and twin's credentials cannot write models or promotions.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from slicetwin.ops.procs import free_port
from slicetwin.platform.keys import fresh_keys
from slicetwin.platform.redis_acl import passwords_from_env, render_acl
from slicetwin.registry.store import RedisRegistry, RegistryError
from slicetwin.runtime.onnx_policy import fresh_policy_onnx
from tests.support.controller import controller_process, report

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server binary not installed")
P = "slicetwin:"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    """A redis-server started with the ACL file `slicetwin keys init` writes."""
    keys = fresh_keys()
    d = tmp_path_factory.mktemp("acl")
    (d / "users.acl").write_text(render_acl(passwords_from_env(keys), P))
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(d),
                             "--aclfile", str(d / "users.acl")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            if redis.Redis(host="127.0.0.1", port=port).ping():
                break
        except redis.ConnectionError:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)

    def url(user: str | None) -> str:
        if user is None:
            return f"redis://127.0.0.1:{port}/0"
        return f"redis://{user}:{keys[f'REDIS_{user.upper()}_PASSWORD']}@127.0.0.1:{port}/0"

    yield keys, url
    proc.terminate()
    proc.wait(10)


def _registry(keys, url, user, sign: bool):
    kw = ({"promotion_key": keys["SLICETWIN_PROMOTION_KEY"]} if sign else
          {"promotion_key": None, "promotion_public_keys": keys["SLICETWIN_PROMOTION_PUBLIC_KEY"]})
    return RedisRegistry(url(user), keys["SLICETWIN_HMAC_KEY"], P, **kw)


def test_each_service_does_its_job_with_its_own_user(acl_redis):
    keys, url = acl_redis
    trainer = _registry(keys, url, "trainer", sign=True)
    trainer.publish("policy", fresh_policy_onnx("acl-p1", seed=1), version="acl-p1",
                    promote=True)
    env = {k[len("SLICETWIN_"):].lower(): v for k, v in keys.items()
           if k.startswith("SLICETWIN_") and k not in ("SLICETWIN_PROMOTION_KEY",
                                                      "SLICETWIN_TWIN_API_KEY")}
    auth = {"authorization": f"Bearer {keys['SLICETWIN_API_KEY']}"}
    # the controller in production mode, with the controller user: cells + transitions + models
    with controller_process(redis_url=url("controller"), cell_store="redis",
                            transitions_sink="redis", registry_prefix=P, **env) as base:
        with httpx.Client(base_url=base, timeout=10, headers=auth) as c:
            for w in range(3):
                r = c.post("/v1/reports", json=report("acl-cell", w))
                assert r.status_code == 200, r.text
            assert r.json()["policy_version"] == "acl-p1"  # read models:* and the records
            assert c.get("/readyz").json()["checks"]["redis"] is True
    # the trainer reads the stream with its consumer group and acknowledges
    from trainer.worker.source import RedisStreamSource

    src = RedisStreamSource(url("trainer"), P + "transitions")
    got = src.poll(count=100, block_ms=200)
    assert len(got.entries) == 2  # (3 windows - 1) transitions written by the controller
    src.ack(got.ids)
    src.close()
    # the twin reads models (verified) and follows events
    twin = _registry(keys, url, "twin", sign=False)
    assert twin.fetch_served("policy")[0].version == "acl-p1"
    seen = []
    w = twin.watch("policy", seen.append)
    assert w.connected.wait(5)
    trainer.publish("policy", fresh_policy_onnx("acl-p2", seed=2), version="acl-p2",
                    promote=True)
    deadline = time.time() + 5
    while "acl-p2" not in seen and time.time() < deadline:
        time.sleep(0.05)
    w.stop()
    assert seen[-1] == "acl-p2"
    # the operator rolls back (signed) and promotes
    op = _registry(keys, url, "operator", sign=True)
    assert op.rollback("policy") == "acl-p1"
    assert twin.fetch_served("policy")[0].version == "acl-p1"
    op.promote("policy", "acl-p2", verdict="operator")
    for reg in (trainer, twin, op):
        reg.close()


FORBIDDEN = {
    # user: [(what, callable(redis client))]
    None: [("read a model", lambda r: r.get(P + "{models}:policy:current")),
           ("write anything", lambda r: r.set(P + "x", 1)),
           ("list keys", lambda r: r.keys("*"))],
    "controller": [("move current", lambda r: r.set(P + "{models}:policy:current", "evil")),
                   ("write a model", lambda r: r.hset(P + "{models}:policy:evil", "onnx", b"x")),
                   ("append a promotion", lambda r: r.lpush(P + "{models}:policy:promotions", "x")),
                   ("announce a model", lambda r: r.publish(P + "{models}:events", "{}")),
                   ("flush", lambda r: r.flushall()),
                   ("reconfigure", lambda r: r.config_set("appendonly", "no")),
                   ("kill clients", lambda r: r.client_kill_filter(_type="pubsub"))],
    "twin": [("move current", lambda r: r.set(P + "{models}:policy:current", "evil")),
             ("write a model", lambda r: r.hset(P + "{models}:twin:evil", "state_dict", b"x")),
             ("post transitions", lambda r: r.xadd(P + "transitions", {"a": 1})),
             ("read cells", lambda r: r.hget(P + "cells:{c}", "data")),
             ("announce a model", lambda r: r.publish(P + "{models}:events", "{}"))],
    "trainer": [("write cells", lambda r: r.hset(P + "cells:{c}", "data", b"x")),
                ("read cells", lambda r: r.hget(P + "cells:{c}", "data")),
                ("flush", lambda r: r.flushall()),
                ("reconfigure", lambda r: r.config_set("appendonly", "no"))],
    "operator": [("post transitions", lambda r: r.xadd(P + "transitions", {"a": 1})),
                 ("read cells", lambda r: r.hget(P + "cells:{c}", "data")),
                 ("flush", lambda r: r.flushall())],
}


@pytest.mark.parametrize("user", list(FORBIDDEN), ids=lambda u: u or "no-password")
def test_each_user_is_refused_outside_its_job(acl_redis, user):
    _, url = acl_redis
    r = redis.Redis.from_url(url(user))
    assert r.ping()  # health checks work for everyone
    for what, op in FORBIDDEN[user]:
        with pytest.raises((NoPermissionError, AuthenticationError, ResponseError)) as e:
            op(r)
        assert "NOPERM" in str(e.value) or "no permissions" in str(e.value).lower() \
            or "NOAUTH" in str(e.value), (user, what, e.value)
    r.close()


def test_wrong_password_and_registry_writes_with_read_only_users_are_refused(acl_redis):
    keys, url = acl_redis
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(url("twin").replace(keys["REDIS_TWIN_PASSWORD"], "guess")).ping()
    for user in ("controller", "twin"):
        # even holding the promotion key, these users cannot write the registry
        reg = _registry(keys, url, user, sign=True)
        with pytest.raises((NoPermissionError, RegistryError)):
            reg.publish("policy", fresh_policy_onnx("evil", seed=9), version=f"evil-{user}",
                        promote=True)
        reg.close()
