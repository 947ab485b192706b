"""docker-compose.yml is secure by default (issue 16, items 1-2; docs/security.md row "network
peer"): no secret has a default, each service gets only its own keys, every key compose needs
is one `slicetwin keys init` writes, and Redis is not published on the host."""

from __future__ import annotations

import re

from slicetwin.platform.keys import fresh_keys
from tests.support.compose import load_compose
from tests.support.paths import ROOT

SECRETS = set(fresh_keys()) - {"SLICETWIN_ENV"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}")


def _vars(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2) or "") for m in _VAR.finditer(text)]


def test_no_secret_has_a_default_and_keys_init_writes_every_one():
    text = (ROOT / "docker-compose.yml").read_text()
    used = _vars(text)
    assert used
    for name, op in used:
        if name in SECRETS or "KEY" in name or "PASSWORD" in name:
            assert op.startswith(":?") and "slicetwin keys init" in op, (name, op)
            assert name in SECRETS, f"{name}: compose needs a key keys init does not write"
    assert "slicetwin-dev-key-change-me" not in text


def test_redis_is_not_published_and_every_port_binds_loopback():
    services = load_compose()["services"]
    redis = services["redis"]
    assert not redis.get("ports"), "Redis must not be published on the host"
    assert "--aclfile" in redis["command"]
    for name, svc in services.items():  # /metrics, Grafana, the APIs: this host only
        for p in svc.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), (name, p)


def _env_vars(svc: dict) -> set[str]:
    return {n for v in (svc.get("environment") or {}).values() for n, _ in _vars(str(v))}


def test_each_service_gets_only_its_own_secrets():
    s = load_compose()["services"]
    got = {name: _env_vars(svc) for name, svc in s.items()}
    assert "SLICETWIN_PROMOTION_KEY" in got["trainer"]
    holders = {n for n, v in got.items() if "SLICETWIN_PROMOTION_KEY" in v}
    assert holders == {"trainer"}, f"the promotion private key leaks to {holders - {'trainer'}}"
    for name in ("controller", "twin"):
        assert "SLICETWIN_PROMOTION_PUBLIC_KEY" in got[name]
    assert {n for n, v in got.items() if "SLICETWIN_API_KEY" in v} == {"controller", "gnb"}
    assert {n for n, v in got.items() if "SLICETWIN_TWIN_API_KEY" in v} == {"twin", "trainer"}
    for user in ("controller", "twin", "trainer"):
        pw = f"REDIS_{user.upper()}_PASSWORD"
        assert {n for n, v in got.items() if pw in v} == {user}, pw
    assert not any("REDIS_OPERATOR_PASSWORD" in v for v in got.values())


def test_readme_compose_section_uses_keys_init():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Compose stack", 1)[1].split("\n## ", 1)[0]
    assert section.index("slicetwin keys init") < section.index("docker compose up")
    assert ".env" in (ROOT / ".gitignore").read_text().split()
