"""Detached signatures of model files: ``model.onnx`` is served only beside a valid
``model.onnx.sig`` made by ``slicetwin models sign`` with the promotion key.

A file on disk skips the registry, so it also skips the promotion record; the detached
signature is its promotion record: it covers the kind, the file's sha256 and size, and the
signing time, and verifies against the same public keys. ``allow_unsigned`` is the explicit
opt-out (logged as a warning; the services raise a metric).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from slicetwin.core.signing import SignatureError, Signer, Verifier

SCHEMA = "slicetwin-model-file-v1"
log = logging.getLogger(__name__)


def sig_path(path: str | Path) -> Path:
    return Path(str(path) + ".sig")


def sign_file(path: str | Path, signer: Signer, kind: str) -> Path:
    """Write ``<path>.sig`` for the file as it is now; returns the signature's path."""
    blob = Path(path).read_bytes()
    payload = {"schema": SCHEMA, "kind": kind, "name": Path(path).name,
               "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob),
               "signed_at": round(time.time(), 3)}
    out = sig_path(path)
    out.write_text(signer.sign(payload) + "\n")
    return out


def verify_file(path: str | Path, blob: bytes, verifier: Verifier, kind: str) -> dict:
    """The signed payload when ``<path>.sig`` verifies for ``blob`` and ``kind``; else
    SignatureError saying what is wrong."""
    sp = sig_path(path)
    try:
        env = sp.read_text()
    except OSError:
        raise SignatureError(f"no signature {sp} (make one with `slicetwin models sign "
                             f"{kind} {path}`, or opt out with --allow-unsigned)") from None
    payload = verifier.verify(env, SCHEMA)
    if payload.get("kind") != kind:
        raise SignatureError(f"{sp} signs a {payload.get('kind')!r} model, not {kind!r}")
    if payload.get("sha256") != hashlib.sha256(blob).hexdigest():
        raise SignatureError(f"{path} changed since it was signed (sha256 differs from {sp})")
    return payload


def check_file(path: str | Path, blob: bytes, verifier: Verifier, kind: str,
               allow_unsigned: bool) -> bool:
    """True: signed and valid. False: unsigned but allowed (warned). SignatureError: refused."""
    try:
        verify_file(path, blob, verifier, kind)
        return True
    except SignatureError as e:
        if not allow_unsigned:
            raise
        log.warning("serving UNSIGNED %s model %s (--allow-unsigned): %s", kind, path, e)
        return False
