"""Model registry round trips: real Redis (private server) and the in-memory backend."""

from __future__ import annotations

import json
import queue
import time

import pytest
import redis

from slicetwin.platform.redis_client import connect
from slicetwin.registry.promotion import make_record
from slicetwin.registry.store import (
    IntegrityError,
    MemoryRegistry,
    NotFound,
    RedisRegistry,
    RegistryError,
    open_registry,
    sign,
)
from tests.support.redis import drain_until

KEY = "test-key"


@pytest.fixture(params=["redis", "cluster", "memory"])
def reg(request):
    if request.param != "memory":
        url = request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url")
        r = RedisRegistry(url, KEY, prefix="t:")
    else:
        r = MemoryRegistry(KEY)
    yield r
    r.close()


def test_publish_fetch_list_show(reg):
    a = reg.publish("policy", b"blob-a", version="a", metrics={"utility": 2.1})
    b = reg.publish("policy", b"blob-b", version="b", parent="a")
    assert a.sha256 != b.sha256 and a.signature == sign(KEY, "policy", "a", a.sha256)
    assert [r.version for r in reg.list("policy")] == ["a", "b"]
    assert reg.list("twin") == []
    assert reg.current("policy") is None
    rec, blob = reg.fetch("policy", "b")
    assert blob == b"blob-b" and rec.parent == "a" and rec.size == 6
    assert reg.show("policy", "a").metrics == {"utility": 2.1}
    with pytest.raises(NotFound):
        reg.fetch("policy", "zzz")
    with pytest.raises(NotFound):
        reg.fetch("policy")  # no current yet
    with pytest.raises(RegistryError, match="already exists"):
        reg.publish("policy", b"other", version="a")
    with pytest.raises(RegistryError, match="unknown model kind"):
        reg.publish("agent", b"x")
    with pytest.raises(RegistryError, match="invalid version"):
        reg.publish("policy", b"x", version="current")


def test_promote_and_rollback(reg):
    for v in "abc":
        reg.publish("policy", f"blob-{v}".encode(), version=v)
    assert reg.promote("policy", "a") is None
    assert reg.promote("policy", "b") == "a"
    assert reg.promote("policy", "c") == "b"
    assert reg.fetch("policy")[1] == b"blob-c"
    assert reg.rollback("policy") == "b"
    assert reg.current("policy") == "b"
    assert reg.rollback("policy") == "a"
    with pytest.raises(RegistryError, match="no earlier"):
        reg.rollback("policy")
    assert reg.current("policy") == "a"
    with pytest.raises(NotFound):
        reg.promote("policy", "nope")
    assert reg.current("policy") == "a"
    # kinds are independent
    reg.publish("twin", b"weights", version="t1", promote=True)
    assert reg.current("twin") == "t1" and reg.current("policy") == "a"


def test_wrong_key_and_tampering_refused(reg):
    reg.publish("policy", b"good", version="g", promote=True)
    other = MemoryRegistry("another-key")
    # same record read with the wrong key: signature must not verify
    if isinstance(reg, RedisRegistry):
        wrong = RedisRegistry(reg.url, "another-key", prefix="t:")
        with pytest.raises(IntegrityError, match="signature"):
            wrong.fetch("policy", "g")
        wrong.close()
        # tamper with the stored blob: sha256 check fails
        r = connect(reg.url)
        r.hset("t:{models}:policy:g", "onnx", b"evil")
        with pytest.raises(IntegrityError, match="sha256"):
            reg.fetch("policy", "g")
        # a consistent sha256 with a forged signature
        import hashlib
        r.hset("t:{models}:policy:g", mapping={"sha256": hashlib.sha256(b"evil").hexdigest()})
        with pytest.raises(IntegrityError, match="signature"):
            reg.fetch("policy", "g")
        r.close()
    else:
        rec, blob, ts = reg._records[("policy", "g")]
        reg._records[("policy", "g")] = (rec, b"evil", ts)
        with pytest.raises(IntegrityError, match="sha256"):
            reg.fetch("policy", "g")
        assert other.list("policy") == []


def test_redis_layout_and_events(redis_url):
    reg = RedisRegistry(redis_url, KEY)  # default prefix
    r = redis.Redis.from_url(redis_url)
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("slicetwin:{models}:events")
    time.sleep(0.05)
    reg.publish("policy", b"one", version="v1", metrics={"u": 1})
    reg.publish("policy", b"two", version="v2")
    reg.promote("policy", "v1")
    reg.promote("policy", "v2")
    reg.rollback("policy")
    h = r.hgetall("slicetwin:{models}:policy:v1")
    assert h[b"onnx"] == b"one" and json.loads(h[b"metrics"]) == {"u": 1}
    assert {b"sha256", b"signature", b"created_at", b"parent"} <= set(h)
    assert r.get("slicetwin:{models}:policy:current") == b"v1"
    events = []
    deadline = time.time() + 2
    while len(events) < 3 and time.time() < deadline:
        m = ps.get_message(timeout=0.1)
        if m:
            events.append(json.loads(m["data"]))
    assert [(e["kind"], e["version"], e["action"]) for e in events] == [
        ("policy", "v1", "promote"), ("policy", "v2", "promote"), ("policy", "v1", "rollback")]
    ps.close()
    r.close()




def test_watcher_follows_events_and_resyncs_after_missed_event(redis_url):
    reg = RedisRegistry(redis_url, KEY)
    reg.publish("policy", b"one", version="v1", promote=True)  # before the watcher exists
    q: queue.Queue = queue.Queue()
    w = reg.watch("policy", q.put, retry_s=1.5)
    try:
        assert drain_until(q, "v1") == ["v1"]  # current read on connect
        reg.publish("policy", b"two", version="v2", promote=True)
        drain_until(q, "v2")
        reg.publish("twin", b"tw", version="t1", promote=True)  # other kind: ignored
        # a signed promotion whose event nobody hears (written without publishing): only a
        # re-read of the records can find it, which the watcher does when its connection is cut
        rec3 = reg.publish("policy", b"three", version="v3")
        r = redis.Redis.from_url(redis_url)
        r.set("slicetwin:{models}:policy:current", "v3")
        r.lpush("slicetwin:{models}:policy:promotions",
                make_record(reg._signer, "policy", "v3", rec3.sha256))
        time.sleep(0.5)
        assert q.empty()  # no event: not seen yet
        resyncs = w.resyncs
        assert r.client_kill_filter(_type="pubsub") >= 1
        r.close()
        assert drain_until(q, "v3", timeout=10) == ["v3"]  # recovered by re-reading the records
        assert w.resyncs > resyncs
        assert q.empty()
    finally:
        w.stop()
        reg.close()


def test_memory_watch_and_open_registry():
    reg = open_registry(None, KEY)
    assert isinstance(reg, MemoryRegistry)
    seen = []
    w = reg.watch("policy", seen.append)
    reg.publish("policy", b"x", version="x", promote=True)
    reg.publish("twin", b"y", version="y", promote=True)
    w.stop()
    reg.publish("policy", b"z", version="z", promote=True)
    assert seen == [None, "x"]
    with pytest.raises(RegistryError, match="unsupported"):
        open_registry("http://nope")


def test_models_cli_round_trip(any_redis_url, cli_env, tmp_path):
    redis_url = any_redis_url  # redis+cluster:// works the same
    import subprocess
    import sys

    from slicetwin.runtime.onnx_policy import fresh_policy_onnx

    env = {**cli_env, "SLICETWIN_REDIS_URL": redis_url, "SLICETWIN_HMAC_KEY": KEY}
    p1, p2 = tmp_path / "p1.onnx", tmp_path / "p2.onnx"
    p1.write_bytes(fresh_policy_onnx("p1", seed=1))
    p2.write_bytes(fresh_policy_onnx("p2", seed=2))
    (tmp_path / "bad.onnx").write_bytes(b"junk")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "models", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    assert cli("publish", "policy", str(p1), "--version", "p1", "--promote").returncode == 0
    assert cli("publish", "policy", str(p2), "--version", "p2").returncode == 0
    bad = cli("publish", "policy", str(tmp_path / "bad.onnx"), "--version", "bad")
    assert bad.returncode == 1 and "ONNX" in bad.stderr
    out = cli("promote", "policy", "p2")
    assert out.returncode == 0 and "p1 -> p2" in out.stdout
    listed = json.loads(cli("list", "policy", "--json").stdout)
    assert listed["current"] == "p2" and [v["version"] for v in listed["versions"]] == ["p1", "p2"]
    assert json.loads(cli("show", "policy").stdout)["version"] == "p2"
    assert "p2 -> p1" in cli("rollback", "policy").stdout
    wrong = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "models", "show", "policy"],
                           env={**env, "SLICETWIN_HMAC_KEY": "nope"}, capture_output=True,
                           text=True, timeout=60)
    assert wrong.returncode == 1 and "signature" in wrong.stderr


def test_watch_on_a_cluster_follows_promotions_and_unannounced_records(cluster_url):
    """On a cluster the watcher polls the newest promotion record: it sees promotions,
    rollbacks and a record written without any event, and ignores a moved ``current``."""
    reg = RedisRegistry(cluster_url, KEY)
    assert reg.cluster
    reg.publish("policy", b"one", version="v1", promote=True)
    q: queue.Queue = queue.Queue()
    w = reg.watch("policy", q.put, poll_s=0.05)
    try:
        assert drain_until(q, "v1") == ["v1"] and w.connected.is_set()
        reg.publish("policy", b"two", version="v2", promote=True)
        drain_until(q, "v2")
        reg.rollback("policy")
        drain_until(q, "v1")
        r = connect(cluster_url)
        r.set("slicetwin:{models}:policy:current", "v2")  # a bare pointer: never served
        time.sleep(0.3)
        assert q.empty()
        rec3 = reg.publish("policy", b"three", version="v3")
        r.lpush("slicetwin:{models}:policy:promotions",
                make_record(reg._signer, "policy", "v3", rec3.sha256))
        assert drain_until(q, "v3") == ["v3"]
        r.close()
    finally:
        w.stop()
        reg.close()


def test_every_registry_key_is_in_the_models_slot(any_redis_url):
    reg = RedisRegistry(any_redis_url, KEY, prefix="t:")
    reg.publish("policy", b"a", version="a", promote=True)
    reg.publish("twin", b"b", version="b", promote=True)
    r = connect(any_redis_url)
    keys = [k.decode() for k in r.scan_iter(match="t:*")]
    assert len(keys) == 8 and all(k.startswith("t:{models}:") for k in keys), keys
    assert len({r.keyslot(k) if hasattr(r, "keyslot") else 0 for k in keys}) == 1
    r.close()
    reg.close()
    with pytest.raises(RegistryError, match="must not contain"):
        RedisRegistry(any_redis_url, KEY, prefix="t{x}:")


def test_migrate_renames_the_old_layout(redis_url, cli_env, caplog):
    """Keys written before hash tags are not served (an error names the command) until
    ``slicetwin models migrate`` renames them."""
    import subprocess
    import sys

    reg = RedisRegistry(redis_url, KEY)
    reg.publish("policy", b"one", version="v1", promote=True)
    r = redis.Redis.from_url(redis_url)
    for k in list(r.scan_iter(match="slicetwin:{models}:*")):  # as an old release left them
        r.rename(k, k.decode().replace("{models}", "models"))
    old = RedisRegistry(redis_url, KEY)
    with caplog.at_level("ERROR"):
        assert old.authorised("policy") is None
    assert "slicetwin models migrate" in caplog.text
    out = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "models", "migrate"],
                         env={**cli_env, "SLICETWIN_REDIS_URL": redis_url}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "renamed 4 registry keys" in out.stdout, out.stderr
    assert old.fetch_served("policy")[0].version == "v1"
    assert not list(r.scan_iter(match="slicetwin:models:*"))
    r.close()
    reg.close()
    old.close()
