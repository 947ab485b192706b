"""Ed25519 envelopes: a JSON payload plus a signature over its canonical bytes.

Why asymmetric: the services that *check* promotions and model files (controller, twin service)
must not be able to *make* them. With a shared HMAC key every verifier could also sign; with
Ed25519 the private key stays with the trainer (gate) and the operator, and the services hold
public keys only. Several public keys may be accepted at once (key rotation window).

An envelope is ``{"payload": {...}, "key_id": "<16 hex>", "signature": "<128 hex>"}``; the
payload's ``schema`` field separates uses (a promotion record can never pass as a file
signature and vice versa).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

# public development key pair: derived from a published seed, accepted only with SLICETWIN_ENV=dev
DEV_HMAC_KEY = "slicetwin-dev-key-change-me"  # registry blob HMAC in development only
DEV_PROMOTION_KEY = hashlib.sha256(b"slicetwin-dev-promotion-key-change-me").hexdigest()


class SignatureError(Exception):
    """An envelope that does not verify (malformed, unknown key, bad signature, wrong schema)."""


def canonical(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def _private(hex_seed: str) -> Ed25519PrivateKey:
    try:
        raw = bytes.fromhex(hex_seed.strip())
    except ValueError:
        raise SignatureError("a private signing key is 64 hex characters") from None
    if len(raw) != 32:
        raise SignatureError("a private signing key is 64 hex characters")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_of(private_hex: str) -> str:
    pub = _private(private_hex).public_key()
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_id(public_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


def generate_private_key() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()


DEV_PROMOTION_PUBLIC_KEY = public_key_of(DEV_PROMOTION_KEY)


def parse_public_keys(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"k1,k2"`` or a list -> normalised hex keys (the first is the newest)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for k in (i.strip().lower() for i in items):
        if not k:
            continue
        try:
            raw = bytes.fromhex(k)
        except ValueError:
            raise ValueError(f"public key {k[:12]}... is not hex") from None
        if len(raw) != 32:
            raise ValueError(f"public key {k[:12]}... must be 64 hex characters")
        out.append(k)
    return tuple(out)


class Signer:
    """Holds one private key; makes envelopes."""

    def __init__(self, private_hex: str):
        self._key = _private(private_hex)
        self.public_key = public_key_of(private_hex)
        self.key_id = key_id(self.public_key)

    def sign(self, payload: dict) -> str:
        sig = self._key.sign(canonical(payload)).hex()
        return json.dumps({"payload": payload, "key_id": self.key_id, "signature": sig},
                          sort_keys=True, separators=(",", ":"))


class Verifier:
    """Holds the accepted public keys (two during a rotation); checks envelopes."""

    def __init__(self, public_keys: Iterable[str]):
        self.keys = {key_id(k): Ed25519PublicKey.from_public_bytes(bytes.fromhex(k))
                     for k in parse_public_keys(list(public_keys))}
        if not self.keys:
            raise ValueError("a verifier needs at least one public key")

    def verify(self, envelope: str | bytes, schema: str) -> dict:
        """The payload of a valid envelope of ``schema``; SignatureError otherwise."""
        try:
            env = json.loads(envelope)
            payload, kid, sig = env["payload"], env["key_id"], bytes.fromhex(env["signature"])
        except (ValueError, TypeError, KeyError) as e:
            raise SignatureError(f"malformed signed record ({type(e).__name__})") from None
        if not isinstance(payload, dict):
            raise SignatureError("malformed signed record (payload)")
        pub = self.keys.get(kid)
        if pub is None:
            raise SignatureError(f"signed by unknown key {str(kid)[:16]!r}")
        try:
            pub.verify(sig, canonical(payload))
        except InvalidSignature:
            raise SignatureError("signature does not verify (tampered record)") from None
        if payload.get("schema") != schema:
            raise SignatureError(f"record of schema {payload.get('schema')!r}, "
                                 f"expected {schema!r}")
        return payload
