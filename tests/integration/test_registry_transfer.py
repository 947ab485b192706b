"""`slicetwin models export|import` (issue 17 item 3): a promoted model moves between two real
Redis registries, or to a file, as one signed archive; import verifies everything and refuses
a tampered archive without writing anything."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile

import pytest

from slicetwin.core.signing import DEV_PROMOTION_KEY, Signer, Verifier, generate_private_key
from slicetwin.ops.model_transfer import (
    MANIFEST,
    TransferError,
    export_model,
    import_model,
    verify_archive,
)
from slicetwin.registry.model_files import verify_file
from slicetwin.registry.promotion import make_record
from slicetwin.registry.store import RedisRegistry
from slicetwin.runtime.onnx_policy import fresh_policy_onnx
from tests.support.redis import flushed, private_redis

KEY_A, KEY_B = "hmac-key-of-registry-a", "hmac-key-of-registry-b"  # each registry its own
SIGNER = Signer(DEV_PROMOTION_KEY)
VERIFIER = Verifier([SIGNER.public_key])


@pytest.fixture(scope="module")
def second_redis(tmp_path_factory):
    """A second private redis-server: the target registry of the transfers."""
    with private_redis(tmp_path_factory.mktemp("redis-b")) as srv:
        yield srv


@pytest.fixture()
def target_url(second_redis):
    return flushed(second_redis)


def _source(redis_url) -> RedisRegistry:
    """Registry A with p1 (promoted, then replaced), p2 (promoted, served) and c3 (candidate)."""
    a = RedisRegistry(redis_url, KEY_A)
    a.publish("policy", fresh_policy_onnx("p1", seed=1), version="p1", promote=True,
              metrics={"gate": {"passed": True, "utility": 1.5}})
    a.publish("policy", fresh_policy_onnx("p2", seed=2), version="p2", parent="p1", promote=True,
              metrics={"gate": {"passed": True, "utility": 1.7}})
    a.publish("policy", fresh_policy_onnx("c3", seed=3), version="c3", parent="p2")
    return a


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def _tar(members: dict[str, bytes], names: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo((names or {}).get(name, name))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _resigned(members: dict[str, bytes], signer: Signer = SIGNER, **changes) -> bytes:
    """The archive with its manifest changed and signed again by ``signer``."""
    payload = json.loads(members[MANIFEST])["payload"]
    payload.update(changes)
    return _tar({**members, MANIFEST: signer.sign(payload).encode()})


def test_cli_round_trip_between_two_redis_registries(redis_url, target_url, cli_env, tmp_path):
    a = _source(redis_url)
    served = a.fetch("policy", "p2")

    def cli(url: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        key = KEY_A if url == redis_url else KEY_B
        return subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "models", *args],
                              env={**cli_env, "SLICETWIN_REDIS_URL": url,
                                   "SLICETWIN_HMAC_KEY": key},
                              input=stdin, capture_output=True, timeout=120)

    # export the served version (default) to a .tar, an older promoted one to a .tar.gz
    r = cli(redis_url, "export", "policy", "--out", str(tmp_path / "served.tar"))
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["version"] == "p2" and out["sha256"] == served[0].sha256
    r = cli(redis_url, "export", "policy", "p1", "-o", str(tmp_path / "p1.tar.gz"))
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "p1.tar.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip

    # the archive to a file: the model and its signature, servable as they are
    files = _members((tmp_path / "served.tar").read_bytes())
    assert set(files) == {MANIFEST, "policy.onnx", "policy.onnx.sig"}
    (tmp_path / "x").mkdir()
    for name in ("policy.onnx", "policy.onnx.sig"):
        (tmp_path / "x" / name).write_bytes(files[name])
    model = tmp_path / "x" / "policy.onnx"
    assert verify_file(model, model.read_bytes(), VERIFIER, "policy")["sha256"] == out["sha256"]
    assert json.loads(files[MANIFEST])["payload"]["source"].startswith("redis://127.0.0.1:")

    # import into registry B (its own HMAC key) and promote: B now serves the same bytes
    r = cli(target_url, "import", str(tmp_path / "served.tar"), "--promote")
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout)
    assert res == {"kind": "policy", "version": "p2", "sha256": served[0].sha256,
                   "size": len(served[1]), "imported": True, "promoted": True,
                   "previous": None}
    b = RedisRegistry(target_url, KEY_B)
    rec, blob, prom = b.fetch_served("policy")  # verified with B's HMAC key and the public key
    assert (rec.version, blob) == ("p2", served[1])
    assert rec.metrics == served[0].metrics and rec.parent == "p1"
    assert rec.signature != served[0].signature  # re-signed by B, not copied
    assert prom.verdict == "operator" and prom.gate["imported"] is True
    assert prom.gate["source_promotion"]["verdict"] == "passed"
    listed = json.loads(cli(target_url, "list", "policy", "--json").stdout)
    assert listed["served"] == "p2"

    # the older version (gzip) without --promote: stored, not served
    r = cli(target_url, "import", str(tmp_path / "p1.tar.gz"))
    assert r.returncode == 0 and json.loads(r.stdout)["promoted"] is False, r.stderr.decode()
    assert b.fetch("policy", "p1")[1] == a.fetch("policy", "p1")[1]
    assert b.authorised("policy").version == "p2"

    # importing it again changes nothing; registry to registry through a pipe
    again = json.loads(cli(target_url, "import", str(tmp_path / "served.tar")).stdout)
    assert again["imported"] is False
    piped = cli(redis_url, "export", "policy", "p1", "--out", "-")
    assert piped.returncode == 0 and json.loads(piped.stderr.decode().splitlines()[-1])["version"] == "p1"
    r = cli(target_url, "import", "-", "--prefix", "other:", stdin=piped.stdout)
    assert r.returncode == 0, r.stderr.decode()
    assert RedisRegistry(target_url, KEY_B, prefix="other:").show("policy", "p1").sha256 == \
        a.show("policy", "p1").sha256

    # a tampered file: exit 1, one clear line, nothing written
    files["policy.onnx"] = files["policy.onnx"][:-1] + bytes([files["policy.onnx"][-1] ^ 1])
    (tmp_path / "bad.tar").write_bytes(_tar(files))
    r = cli(target_url, "import", str(tmp_path / "bad.tar"), "--prefix", "fresh:")
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    assert "archive refused: policy.onnx was altered after export" in err
    assert RedisRegistry(target_url, KEY_B, prefix="fresh:").list("policy") == []


def test_missing_version_and_unpromoted_exports_are_clear_errors(redis_url, cli_env, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "models", *args],
                              env={**cli_env, "SLICETWIN_REDIS_URL": redis_url,
                                   "SLICETWIN_HMAC_KEY": KEY_A},
                              capture_output=True, text=True, timeout=120)

    r = cli("export", "policy", "--out", str(tmp_path / "x.tar"))  # empty registry
    assert r.returncode == 1 and "no policy model is promoted" in r.stderr, r.stderr
    _source(redis_url)
    r = cli("export", "policy", "nope", "--out", str(tmp_path / "x.tar"))
    assert r.returncode == 1 and "error: policy version 'nope' not found" in r.stderr, r.stderr
    r = cli("export", "policy", "c3", "--out", str(tmp_path / "x.tar"))
    assert r.returncode == 1 and "c3 has no valid promotion record" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.tar").exists()
    r = cli("import", str(tmp_path / "missing.tar"))
    assert r.returncode == 1 and "cannot read" in r.stderr, r.stderr


def _tampered(members: dict[str, bytes], a: RedisRegistry) -> dict[str, tuple[bytes, str]]:
    """name -> (archive, what the refusal must say)."""
    blob = members["policy.onnx"]
    payload = json.loads(members[MANIFEST])["payload"]
    forged = json.loads(members[MANIFEST])
    forged["payload"]["metrics"] = {"gate": {"passed": True, "utility": 99.0}}
    stranger = Signer(generate_private_key())
    other_sig = json.loads(members["policy.onnx.sig"])
    other_sig["payload"]["sha256"] = "0" * 64
    p1_promotion = next(e for e in a.promotions("policy") if '"version":"p1"' in e)
    own_policy = fresh_policy_onnx("evil", seed=9)
    return {
        "model bytes": (_tar({**members, "policy.onnx": blob + b"\x00"}),
                        "policy.onnx was altered after export"),
        "metrics edited": (_tar({**members, MANIFEST: json.dumps(forged).encode()}),
                           "manifest.json does not verify"),
        "untrusted key": (_resigned(members, stranger), "signed by a key this registry does"),
        "model swapped, manifest re-signed by a stranger": (
            _resigned({**members, "policy.onnx": own_policy}, stranger,
                      sha256=hashlib.sha256(own_policy).hexdigest(),
                      size=len(own_policy)), "manifest.json does not verify"),
        "signature of other bytes": (
            _tar({**members, "policy.onnx.sig": SIGNER.sign(other_sig["payload"]).encode()}),
            "policy.onnx.sig signs another file"),
        "signature edited": (
            _tar({**members, "policy.onnx.sig": json.dumps(other_sig).encode()}),
            "policy.onnx.sig does not verify"),
        "no signature": (_tar({k: v for k, v in members.items() if k != "policy.onnx.sig"}),
                         "the signature policy.onnx.sig is missing"),
        "promotion of another version": (_resigned(members, promotion=p1_promotion),
                                         "its promotion record approves policy p1"),
        "promotion not signed": (_resigned(members, promotion=make_record(
            Signer(generate_private_key()), "policy", "p2", payload["sha256"])),
            "its promotion record is not valid"),
        "extra member": (_tar({**members, "run.sh": b"rm -rf /"}), "unexpected members"),
        "path in a name": (_tar(members, names={"policy.onnx": "../policy.onnx"}),
                           "unexpected member '../policy.onnx'"),
        "truncated": (_tar(members)[:700], "archive refused: damaged tar"),
        "not a tar": (b"PK\x03\x04 a zip", "not a model archive"),
    }


def test_tampered_archives_are_refused_and_nothing_is_written(redis_url, target_url):
    a = _source(redis_url)
    good, _ = export_model(a, "policy", None, SIGNER, VERIFIER)
    b = RedisRegistry(target_url, KEY_B)
    for name, (data, says) in _tampered(_members(good), a).items():
        with pytest.raises(TransferError) as e:
            import_model(b, data, VERIFIER, promote=True)
        assert says in str(e.value), (name, str(e.value))
    assert b.list("policy") == [] and b.current("policy") is None and not b.promotions("policy")
    # the untampered archive still imports; a different model under the same name does not
    assert import_model(b, good, VERIFIER).imported
    a2 = RedisRegistry(redis_url, KEY_A, prefix="a2:")
    a2.publish("policy", fresh_policy_onnx("other", seed=7), version="p2", promote=True)
    clash, _ = export_model(a2, "policy", "p2", SIGNER, VERIFIER)
    with pytest.raises(TransferError, match="already exists in the target registry with other"):
        import_model(b, clash, VERIFIER, promote=True)
    assert b.current("policy") is None


def test_a_twin_moves_too_and_kinds_cannot_be_swapped(redis_url, target_url):
    a = RedisRegistry(redis_url, KEY_A)
    a.publish("twin", b"twin-state-dict-bytes" * 100, version="t1", promote=True)
    data, m = export_model(a, "twin", None, SIGNER, VERIFIER, gzip=True)
    assert set(_members(data)) == {MANIFEST, "twin.pt", "twin.pt.sig"}
    assert verify_archive(data, VERIFIER).kind == "twin"
    b = RedisRegistry(target_url, KEY_B)
    assert import_model(b, data, VERIFIER, promote=True).promoted
    assert b.fetch_served("twin")[1] == a.fetch("twin", "t1")[1]
    # a twin archive relabelled as a policy (manifest re-signed): the file names no longer fit
    members = _members(data)
    with pytest.raises(TransferError, match="manifest names kind 'policy', file 'twin.pt'"):
        verify_archive(_resigned(members, kind="policy"), VERIFIER)
