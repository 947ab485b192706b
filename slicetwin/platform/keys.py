"""Fresh secrets for one installation: what ``slicetwin keys init`` writes to ``.env``.

One function makes every key the stack needs (API keys, registry HMAC key, promotion key pair,
Redis passwords); the compose file reads them from ``.env`` by name, each service getting only
its own (``docker-compose.yml``). Benchmarks that start real services use the same set, so they
run the production code path rather than development mode.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from slicetwin.core.signing import generate_private_key, public_key_of

REDIS_USERS = ("controller", "trainer", "twin", "operator")


def fresh_keys() -> dict[str, str]:
    """Every secret of a deployment, newly drawn (``secrets``: the OS's CSPRNG)."""
    priv = generate_private_key()
    keys = {
        "SLICETWIN_ENV": "production",
        "SLICETWIN_API_KEY": secrets.token_urlsafe(32),
        "SLICETWIN_TWIN_API_KEY": secrets.token_urlsafe(32),
        "SLICETWIN_HMAC_KEY": secrets.token_hex(32),
        "SLICETWIN_PROMOTION_KEY": priv,
        "SLICETWIN_PROMOTION_PUBLIC_KEY": public_key_of(priv),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(18),
    }
    for user in REDIS_USERS:
        keys[f"REDIS_{user.upper()}_PASSWORD"] = secrets.token_hex(24)
    return keys


ENV_HEADER = """\
# SliceTwin secrets for docker compose (made by `slicetwin keys init`; never commit this file).
# Compose reads it for ${VAR} interpolation; each service gets only the keys it needs.
# Load into a shell for the CLI:   set -a; . ./.env; set +a
# Rotate: docs/security.md ("Key rotation").
"""


def render_env(keys: dict[str, str]) -> str:
    return ENV_HEADER + "".join(f"{k}={v}\n" for k, v in keys.items())


def read_env(path: str | Path) -> dict[str, str]:
    """``KEY=value`` lines of a .env file (comments and blanks skipped)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def write_private(path: str | Path, text: str, mode: int = 0o600) -> None:
    """Create ``path`` with ``mode`` from the start (no window where others could read it)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(p, mode)
