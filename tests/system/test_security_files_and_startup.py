"""Signed model files (issue 16, item 5) and no default secrets outside development (item 1;
docs/security.md rows "operator" and "network peer").

Real processes: `slicetwin controller` / `slicetwin twin` / `slicetwin trainer` started without
SLICETWIN_ENV=dev refuse the public keys and a missing API key with exit status 2 and a message
naming `slicetwin keys init`; `slicetwin models sign` makes the .sig a controller needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from controller.app import create_app
from controller.settings import ControllerSettings
from slicetwin.platform.keys import fresh_keys
from slicetwin.runtime.onnx_policy import fresh_policy_onnx
from tests.support.paths import ROOT

SLICETWIN = [sys.executable, "-m", "slicetwin.cli.main"]


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICETWIN_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(args: list[str], extra: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(SLICETWIN + args, env=_env(extra), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("args,extra,names", [
    (["controller", "--port", "1"], {}, ["SLICETWIN_API_KEY is not set"]),
    (["controller", "--port", "1"], {"SLICETWIN_API_KEY": "a" * 32,
                                     "SLICETWIN_REDIS_URL": "redis://127.0.0.1:1/0"},
     ["SLICETWIN_HMAC_KEY is the public development key",
      "SLICETWIN_PROMOTION_PUBLIC_KEY is the public development key"]),
    (["controller", "--port", "1"], {"SLICETWIN_API_KEY": "short"},
     ["SLICETWIN_API_KEY is shorter than 16"]),
    (["twin", "--port", "1"], {}, ["SLICETWIN_TWIN_API_KEY is not set"]),
    (["trainer", "--redis-url", "redis://127.0.0.1:1/0"], {},
     ["SLICETWIN_HMAC_KEY is the public development key",
      "SLICETWIN_PROMOTION_KEY is the public development key"]),
    (["models", "promote", "policy", "v1", "--redis-url", "redis://127.0.0.1:1/0"], {},
     ["SLICETWIN_HMAC_KEY is not set", "SLICETWIN_PROMOTION_KEY is not set"]),
])
def test_services_refuse_public_or_missing_keys_outside_dev(args, extra, names):
    r = _run(args, extra)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    for n in names:
        assert n in out, out
    assert "slicetwin keys init" in out and "SLICETWIN_ENV=dev" in out
    assert "Traceback" not in out
    for secret in extra.values():  # keys are never echoed back
        if len(secret) >= 16 and not secret.startswith("redis"):
            assert secret not in out


def test_keys_init_writes_fresh_private_env_and_acl(tmp_path):
    env_file, acl = tmp_path / ".env", tmp_path / "users.acl"
    r = _run(["keys", "init", "--out", str(env_file), "--acl", str(acl)], {})
    assert r.returncode == 0, r.stderr
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    from slicetwin.platform.keys import read_env
    from slicetwin.platform.security import PUBLIC_SECRETS

    keys = read_env(env_file)
    assert not set(keys.values()) & PUBLIC_SECRETS
    for pw in (v for k, v in keys.items() if k.startswith("REDIS_")):
        assert pw not in acl.read_text()  # hashed
    again = _run(["keys", "init", "--out", str(env_file), "--acl", str(acl)], {})
    assert again.returncode == 1 and read_env(env_file) == keys  # never overwritten silently
    second = tmp_path / "b.env"
    _run(["keys", "init", "--out", str(second), "--acl", str(tmp_path / "b.acl")], {})
    assert not set(read_env(second).values()) & {v for k, v in keys.items()
                                                  if k != "SLICETWIN_ENV"}


def _policy_metrics(c) -> dict:
    fams = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
    return {"unsigned": fams["slicetwin_model_unsigned"].samples[0].value,
            "rejected": {s.labels["reason"]: s.value for s in
                         fams["slicetwin_models_rejected"].samples if s.name.endswith("_total")}}


def test_file_model_needs_a_signature_from_models_sign(tmp_path):
    keys = fresh_keys()
    path = tmp_path / "model.onnx"
    path.write_bytes(fresh_policy_onnx("file-v1", seed=3))
    base = dict(env="production", api_key=keys["SLICETWIN_API_KEY"], model_source="file",
                model_path=str(path),
                promotion_public_key=keys["SLICETWIN_PROMOTION_PUBLIC_KEY"])
    with TestClient(create_app(ControllerSettings(**base))) as c:  # unsigned: refused
        assert c.get("/v1/policy").json()["version"] is None
        assert "no signature" in c.get("/v1/policy").json()["last_error"]
        assert _policy_metrics(c)["rejected"]["signature"] == 1.0
    r = _run(["models", "sign", "policy", str(path)],
             {"SLICETWIN_PROMOTION_KEY": keys["SLICETWIN_PROMOTION_KEY"]})
    assert r.returncode == 0 and (tmp_path / "model.onnx.sig").exists(), r.stderr
    with TestClient(create_app(ControllerSettings(**base))) as c:  # signed: served
        assert c.get("/v1/policy").json()["version"] == "file-v1"
        assert _policy_metrics(c)["unsigned"] == 0.0
    path.write_bytes(fresh_policy_onnx("file-v1", seed=4))  # changed after signing
    with TestClient(create_app(ControllerSettings(**base))) as c:
        assert c.get("/v1/policy").json()["version"] is None
        assert "changed since it was signed" in c.get("/v1/policy").json()["last_error"]
    other = fresh_keys()  # signed by a key the controller does not trust
    r = _run(["models", "sign", "policy", str(path)],
             {"SLICETWIN_PROMOTION_KEY": other["SLICETWIN_PROMOTION_KEY"]})
    with TestClient(create_app(ControllerSettings(**base))) as c:
        assert c.get("/v1/policy").json()["version"] is None
    # the explicit opt-out: served, warned, and visible on /metrics
    with TestClient(create_app(ControllerSettings(**base, allow_unsigned=True))) as c:
        assert c.get("/v1/policy").json()["version"] == "file-v1"
        assert _policy_metrics(c)["unsigned"] == 1.0


def test_controller_cli_allow_unsigned_flag_serves_and_flags_it(tmp_path):
    from slicetwin.ops.procs import free_port

    keys = fresh_keys()
    path = tmp_path / "m.onnx"
    path.write_bytes(fresh_policy_onnx("cli-unsigned", seed=5))
    port = free_port()
    env = _env({k: v for k, v in keys.items() if k.startswith("SLICETWIN_")}
               | {"SLICETWIN_PORT": str(port), "SLICETWIN_MODEL_SOURCE": "file"})
    log = tmp_path / "ctl.log"
    with log.open("wb") as fh:
        p = subprocess.Popen(SLICETWIN + ["controller", "--model-path", str(path),
                                          "--allow-unsigned", "--log-level", "warning"],
                             env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(url + "/v1/policy").json()["version"] == "cli-unsigned"
        assert "slicetwin_model_unsigned 1.0" in httpx.get(url + "/metrics").text
    finally:
        p.terminate()
        p.wait(10)
    assert "UNSIGNED" in log.read_text()


def test_twin_model_file_needs_a_signature(tmp_path):
    from slicetwin.core.signing import Signer
    from slicetwin.registry.model_files import sign_file
    from slicetwin.twin import Twin
    from twin_service.app import create_app as twin_app
    from twin_service.settings import TwinServiceSettings

    keys = fresh_keys()
    path = tmp_path / "twin.pt"
    Twin().save(path)
    s = dict(env="production", api_key=keys["SLICETWIN_TWIN_API_KEY"], model=str(path),
             promotion_public_key=keys["SLICETWIN_PROMOTION_PUBLIC_KEY"], torch_threads=1)
    with pytest.raises(Exception, match="no signature"):
        with TestClient(twin_app(TwinServiceSettings(**s))):
            pass
    with TestClient(twin_app(TwinServiceSettings(**s, allow_unsigned=True))) as c:
        assert "slicetwin_twin_model_unsigned 1.0" in c.get("/metrics").text
    sign_file(path, Signer(keys["SLICETWIN_PROMOTION_KEY"]), "twin")
    with TestClient(twin_app(TwinServiceSettings(**s))) as c:
        assert "slicetwin_twin_model_unsigned 0.0" in c.get("/metrics").text
        assert c.get("/readyz").status_code == 200


def test_controller_serves_https_with_the_uvicorn_tls_flags(tmp_path):
    """TLS option 1 of docs/security.md: `slicetwin controller --ssl-certfile/--ssl-keyfile`."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from slicetwin.ops.procs import free_port
    from tests.support.controller import report

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    keys = fresh_keys()
    port = free_port()
    env = _env({"SLICETWIN_API_KEY": keys["SLICETWIN_API_KEY"], "SLICETWIN_PORT": str(port)})
    p = subprocess.Popen(SLICETWIN + ["controller", "--ssl-certfile", str(tmp_path / "cert.pem"),
                                      "--ssl-keyfile", str(tmp_path / "key.pem")],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        url = f"https://localhost:{port}"
        ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with httpx.Client(base_url=url, verify=ctx, timeout=5) as c:
            for _ in range(300):
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            auth = {"authorization": f"Bearer {keys['SLICETWIN_API_KEY']}"}
            assert c.post("/v1/reports", json=report("tls", 1), headers=auth).status_code == 200
            assert c.post("/v1/reports", json=report("tls", 2)).status_code == 401
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on that port
            httpx.post(f"http://127.0.0.1:{port}/v1/reports", json=report("tls", 3), timeout=2)
    finally:
        p.terminate()
        p.wait(10)
