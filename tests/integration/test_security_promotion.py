"""Authorised promotion (issue 16, item 4; docs/security.md rows "Redis writer", "operator").

A real controller process in production mode (fresh keys, verify-only: it holds the promotion
*public* key) and the twin service follow only signed promotion records: a gate-refused
candidate cannot be made servable by writing Redis (current, events, forged or unsigned
records), and replaying an old record does not roll them back; a signed rollback does.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from slicetwin.core.signing import Signer, Verifier, generate_private_key
from slicetwin.platform.keys import fresh_keys
from slicetwin.registry.promotion import PromotionGuard, PromotionRefused, make_record, read_record
from slicetwin.registry.store import MemoryRegistry, RedisRegistry, RegistryError
from slicetwin.runtime.onnx_policy import fresh_policy_onnx
from tests.support.controller import controller_process, report

P = "slicetwin:"


def _controller_env(keys: dict) -> dict:
    return {k[len("SLICETWIN_"):].lower(): v for k, v in keys.items()
            if k.startswith("SLICETWIN_") and k not in ("SLICETWIN_PROMOTION_KEY",
                                                       "SLICETWIN_TWIN_API_KEY")}


def _serving(c: httpx.Client, cell: str, w: int) -> tuple[str, int]:
    r = c.post("/v1/reports", json=report(cell, w))
    assert r.status_code == 200, r.text
    return r.json()["policy_version"], w + 1


def _wait_for(c, cell, w, want, timeout=10.0) -> int:
    deadline = time.time() + timeout
    v = None
    while time.time() < deadline:
        v, w = _serving(c, cell, w)
        if v == want:
            return w
        time.sleep(0.05)
    raise AssertionError(f"serving {v}, never {want}")


def _rejected(c) -> dict:
    fams = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
    return {s.labels["reason"]: s.value for s in fams["slicetwin_models_rejected"].samples
            if s.name.endswith("_total")}


def _attack_with_redis_writes(url: str, keys: dict, version: str) -> None:
    """Everything a Redis writer (even one holding the shared HMAC key) can do to make
    ``version`` servable without the promotion private key."""
    r = redis.Redis.from_url(url)
    rec = RedisRegistry(url, keys["SLICETWIN_HMAC_KEY"], promotion_key=None,
                        promotion_public_keys=keys["SLICETWIN_PROMOTION_PUBLIC_KEY"]).show(
                            "policy", version)
    r.set(P + "{models}:policy:current", version)
    forged = make_record(Signer(generate_private_key()), "policy", version, rec.sha256)
    refused = json.loads(make_record(Signer(keys["SLICETWIN_PROMOTION_KEY"]), "policy",
                                     "placeholder", rec.sha256, verdict="refused"))
    tampered = dict(refused, payload={**refused["payload"], "verdict": "passed",
                                      "version": version})  # edited after signing
    for env in (forged, json.dumps(tampered), "not json", json.dumps({"payload": {}})):
        r.lpush(P + "{models}:policy:promotions", env)
    r.publish(P + "{models}:events", json.dumps({"kind": "policy", "version": version,
                                               "action": "promote"}))
    r.close()


def test_gate_refused_candidate_never_served_after_direct_redis_writes(redis_url):
    keys = fresh_keys()
    trainer = RedisRegistry(redis_url, keys["SLICETWIN_HMAC_KEY"],
                            promotion_key=keys["SLICETWIN_PROMOTION_KEY"])
    trainer.publish("policy", fresh_policy_onnx("good", seed=1), version="good", promote=True)
    # the gate refused this one: stored (signed blob), no promotion record
    trainer.publish("policy", fresh_policy_onnx("refused", seed=2), version="refused",
                    metrics={"gate": {"passed": False}})
    auth = {"authorization": f"Bearer {keys['SLICETWIN_API_KEY']}"}
    with controller_process(redis_url=redis_url, cell_store="local",
                            **_controller_env(keys)) as base:
        with httpx.Client(base_url=base, timeout=10, headers=auth) as c:
            w = _wait_for(c, "gr", 0, "good")
            _attack_with_redis_writes(redis_url, keys, "refused")
            time.sleep(1.0)
            for _ in range(5):
                v, w = _serving(c, "gr", w)
                assert v == "good"
            assert c.get("/v1/policy").json()["version"] == "good"
    # a controller (re)started now reads the records, not current: still the good model
    with controller_process(redis_url=redis_url, cell_store="local",
                            **_controller_env(keys)) as base:
        with httpx.Client(base_url=base, timeout=10, headers=auth) as c:
            assert c.get("/v1/policy").json()["version"] == "good"
    trainer.close()


def test_replayed_promotion_does_not_roll_back_a_signed_rollback_does(redis_url):
    keys = fresh_keys()
    trainer = RedisRegistry(redis_url, keys["SLICETWIN_HMAC_KEY"],
                            promotion_key=keys["SLICETWIN_PROMOTION_KEY"])
    trainer.publish("policy", fresh_policy_onnx("v1", seed=1), version="v1", promote=True)
    old_record = trainer.promotions("policy")[0]
    auth = {"authorization": f"Bearer {keys['SLICETWIN_API_KEY']}"}
    with controller_process(redis_url=redis_url, cell_store="local",
                            **_controller_env(keys)) as base:
        with httpx.Client(base_url=base, timeout=10, headers=auth) as c:
            w = _wait_for(c, "rp", 0, "v1")
            trainer.publish("policy", fresh_policy_onnx("v2", seed=2), version="v2",
                            promote=True)
            w = _wait_for(c, "rp", w, "v2")
            # replay: the log now holds only v1's (valid, older) record, current says v1
            r = redis.Redis.from_url(redis_url)
            r.delete(P + "{models}:policy:promotions")
            r.lpush(P + "{models}:policy:promotions", old_record)
            r.set(P + "{models}:policy:current", "v1")
            r.publish(P + "{models}:events", json.dumps({"kind": "policy", "version": "v1"}))
            time.sleep(1.0)
            for _ in range(5):
                v, w = _serving(c, "rp", w)
                assert v == "v2"
            assert _rejected(c).get("replay", 0) >= 1
            # the operator's signed rollback (a newer record naming v1) is followed
            r.delete(P + "{models}:policy:promotions")
            trainer.promote("policy", "v2")  # restore a clean log first
            _wait_for(c, "rp", w, "v2")
            op = RedisRegistry(redis_url, keys["SLICETWIN_HMAC_KEY"],
                               promotion_key=keys["SLICETWIN_PROMOTION_KEY"])
            assert op.rollback("policy") == "v1"
            _wait_for(c, "rp", w + 10, "v1")
            r.close()
            op.close()
    trainer.close()


def test_twin_service_serves_only_signed_promotions(redis_url):
    from slicetwin.twin import Twin
    from twin_service.app import create_app
    from twin_service.settings import TwinServiceSettings

    keys = fresh_keys()
    blob = Twin().to_bytes()
    trainer = RedisRegistry(redis_url, keys["SLICETWIN_HMAC_KEY"],
                            promotion_key=keys["SLICETWIN_PROMOTION_KEY"])
    trainer.publish("twin", blob, version="t-good", promote=True)
    trainer.publish("twin", blob, version="t-unpromoted")
    s = TwinServiceSettings(env="production", redis_url=redis_url,
                            hmac_key=keys["SLICETWIN_HMAC_KEY"],
                            promotion_public_key=keys["SLICETWIN_PROMOTION_PUBLIC_KEY"],
                            api_key=keys["SLICETWIN_TWIN_API_KEY"], torch_threads=1)
    auth = {"authorization": f"Bearer {keys['SLICETWIN_TWIN_API_KEY']}"}
    with TestClient(create_app(s), headers=auth) as c:
        assert c.get("/v1/twin/model").json()["version"] == "t-good"
        r = redis.Redis.from_url(redis_url)
        r.set(P + "{models}:twin:current", "t-unpromoted")
        forged = make_record(Signer(generate_private_key()), "twin", "t-unpromoted",
                             trainer.show("twin", "t-unpromoted").sha256)
        r.lpush(P + "{models}:twin:promotions", forged)
        r.publish(P + "{models}:events", json.dumps({"kind": "twin", "version": "t-unpromoted"}))
        time.sleep(1.0)
        assert c.get("/v1/twin/model").json()["version"] == "t-good"
        trainer.promote("twin", "t-unpromoted")  # now signed: followed
        deadline = time.time() + 10
        while c.get("/v1/twin/model").json()["version"] != "t-unpromoted":
            assert time.time() < deadline
            time.sleep(0.1)
        r.close()
    trainer.close()


def test_records_bind_kind_version_sha_and_verdict():
    priv = generate_private_key()
    signer, verifier = Signer(priv), Verifier([Signer(priv).public_key])
    env = make_record(signer, "policy", "v1", "ab" * 32, gate={"passed": True})
    rec = read_record(verifier, env, "policy")
    assert (rec.version, rec.sha256, rec.verdict, rec.action) == ("v1", "ab" * 32, "passed",
                                                                   "promote")
    with pytest.raises(PromotionRefused) as e:
        read_record(verifier, env, "twin")  # a policy record cannot promote a twin
    assert e.value.reason == "kind"
    with pytest.raises(PromotionRefused) as e:
        read_record(verifier, make_record(signer, "policy", "v1", "ab" * 32,
                                          verdict="refused"), "policy")
    assert e.value.reason == "verdict"
    other = Verifier([Signer(generate_private_key()).public_key])
    with pytest.raises(PromotionRefused):
        read_record(other, env, "policy")
    # rotation: two public keys accepted at once
    both = Verifier([Signer(generate_private_key()).public_key, signer.public_key])
    assert read_record(both, env, "policy").version == "v1"
    # order: an older record is a replay; a newer one (a rollback) is accepted
    g = PromotionGuard()
    new = read_record(verifier, make_record(signer, "policy", "v2", "cd" * 32, at=200.0),
                      "policy")
    old = read_record(verifier, make_record(signer, "policy", "v1", "ab" * 32, at=100.0),
                      "policy")
    g.accept(new)
    with pytest.raises(PromotionRefused) as e:
        g.accept(old)
    assert e.value.reason == "replay"
    g.accept(read_record(verifier, make_record(signer, "policy", "v1", "ab" * 32, "rollback",
                                               "operator", at=300.0), "policy"))
    assert g.served("policy").version == "v1"


def test_services_registry_cannot_promote_without_the_private_key():
    keys = fresh_keys()
    trainer = MemoryRegistry(keys["SLICETWIN_HMAC_KEY"],
                             promotion_key=keys["SLICETWIN_PROMOTION_KEY"])
    svc = MemoryRegistry(keys["SLICETWIN_HMAC_KEY"], promotion_key=None,
                         promotion_public_keys=keys["SLICETWIN_PROMOTION_PUBLIC_KEY"])
    svc.publish("policy", b"x", version="v1")
    with pytest.raises(RegistryError, match="promotion key"):
        svc.promote("policy", "v1")
    with pytest.raises(RegistryError, match="promotion key"):
        svc.rollback("policy")
    trainer.publish("policy", b"y", version="v1", promote=True)
    assert trainer.authorised("policy").version == "v1"


def test_promotion_key_rotation_window_then_old_key_refused(redis_url):
    """Compromised trainer: rotate the promotion key; once the old public key is removed, its
    records (old or new) make nothing servable."""
    old, new = fresh_keys(), fresh_keys()
    hk = old["SLICETWIN_HMAC_KEY"]
    trainer_old = RedisRegistry(redis_url, hk, promotion_key=old["SLICETWIN_PROMOTION_KEY"])
    trainer_new = RedisRegistry(redis_url, hk, promotion_key=new["SLICETWIN_PROMOTION_KEY"])
    trainer_old.publish("policy", b"a", version="a", promote=True)

    def service(pubs: str) -> RedisRegistry:
        return RedisRegistry(redis_url, hk, promotion_key=None, promotion_public_keys=pubs)

    window = service(f"{new['SLICETWIN_PROMOTION_PUBLIC_KEY']},"
                     f"{old['SLICETWIN_PROMOTION_PUBLIC_KEY']}")
    assert window.fetch_served("policy")[0].version == "a"  # old records valid in the window
    trainer_new.promote("policy", "a")  # re-promote under the new key, then close the window
    after = service(new["SLICETWIN_PROMOTION_PUBLIC_KEY"])
    assert after.fetch_served("policy")[0].version == "a"
    trainer_old.publish("policy", b"evil", version="evil", promote=True)  # the stolen key
    assert after.authorised("policy").version == "a"
    assert after.fetch_served("policy")[0].version == "a"
    for reg in (trainer_old, trainer_new, window, after):
        reg.close()
