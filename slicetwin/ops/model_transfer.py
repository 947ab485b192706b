"""Move a promoted model between registries, or to a file (``slicetwin models export|import``).

An export is one tar archive (gzip-compressed when its name ends in ``.gz`` or ``.tgz``) with
three members and nothing else::

    manifest.json      signed envelope (Ed25519, schema ``slicetwin-model-export-v1``) over the
                       metadata: kind, version, the model file's name, sha256 and size, the
                       registry record's created_at, metrics (gate figures) and parent, where
                       and when it was exported, and the version's signed promotion record
    policy.onnx        the model bytes (a twin: ``twin.pt``)
    policy.onnx.sig    the file's detached signature (``slicetwin.registry.model_files``): extracted, the
                       two files are servable as they are (``slicetwin controller --model-path``)

Export reads the version through the registry's HMAC check, takes only a version that a valid
promotion record names with the same sha256 (only promoted models move), and signs manifest and
file with the promotion key. Import reads the archive in memory (nothing is extracted to disk)
and verifies all of it before anything is written: the manifest's signature, the model's sha256
and size, the file signature, the promotion record (kind, version and sha256 must be the
manifest's) and, for a policy, the ONNX checks a controller runs on load. Only then is the
version published into the target registry, which signs it with its own HMAC key; ``promote``
also makes it current there with a new signed record (verdict ``operator``) that names the
source promotion. Signatures verify against the target's promotion public keys unless others
are given. Every refusal is a :class:`TransferError` saying what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from dataclasses import dataclass

from slicetwin.core.signing import SignatureError, Signer, Verifier
from slicetwin.registry import model_files
from slicetwin.registry.promotion import PromotionRecord, PromotionRefused, read_record
from slicetwin.registry.store import KINDS, NotFound, Registry, RegistryError
from slicetwin.runtime.onnx_policy import ModelRejected, OnnxPolicy

SCHEMA = "slicetwin-model-export-v1"
MANIFEST = "manifest.json"
MODEL_FILE = {"policy": "policy.onnx", "twin": "twin.pt"}
MAX_MEMBER_BYTES = 1 << 30  # refuse bigger members before reading them (a twin is a few MB)


class TransferError(RegistryError):
    """An export or import refused (the message says why)."""


@dataclass(frozen=True)
class VerifiedExport:
    """An archive whose every signature and checksum verified."""

    kind: str
    version: str
    blob: bytes
    manifest: dict
    promotion: PromotionRecord

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]


@dataclass(frozen=True)
class ImportResult:
    kind: str
    version: str
    sha256: str
    size: int
    imported: bool  # False: the target already held this version with the same bytes
    promoted: bool
    previous: str | None  # the target's current version before a promotion

    def to_dict(self) -> dict:
        return {"kind": self.kind, "version": self.version, "sha256": self.sha256,
                "size": self.size, "imported": self.imported, "promoted": self.promoted,
                "previous": self.previous}


def is_gzip_name(name: str) -> bool:
    return name.endswith((".gz", ".tgz"))


# ----------------------------------------------------------------------------- export

def find_promotion(reg: Registry, kind: str, version: str, sha256: str,
                   verifier: Verifier) -> tuple[PromotionRecord, str] | None:
    """The newest valid promotion record that names ``version`` with ``sha256``, and its signed
    envelope (the registry keeps the newest records per kind only, ``PROMOTION_LOG_CAP``)."""
    best = None
    for env in reg.promotions(kind):
        try:
            rec = read_record(verifier, env, kind)
        except PromotionRefused:
            continue
        if rec.version == version and rec.sha256 == sha256 and (best is None
                                                                or rec.time > best[0].time):
            best = (rec, env)
    return best


def export_model(reg: Registry, kind: str, version: str | None, signer: Signer,
                 verifier: Verifier, gzip: bool = False, source: str = "") -> tuple[bytes, dict]:
    """The archive (bytes) of ``version`` (default: the version services serve) and its
    manifest payload. Raises NotFound, IntegrityError or TransferError."""
    if kind not in KINDS:
        raise TransferError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
    if version is None:
        served = reg.authorised(kind)
        if served is None:
            raise NotFound(f"no {kind} model is promoted in this registry: nothing to export "
                           "(name a promoted version)")
        version = served.version
    rec, blob = reg.fetch(kind, version)  # sha256 + the registry's HMAC signature verified
    found = find_promotion(reg, kind, version, rec.sha256, verifier)
    if found is None:
        raise TransferError(f"{kind} {version} has no valid promotion record (never promoted, "
                            "or its record is older than the ones the registry keeps): only "
                            "promoted models are exported; promote it first")
    name = MODEL_FILE[kind]
    now = round(time.time(), 3)
    manifest = {"schema": SCHEMA, "kind": kind, "version": version, "file": name,
                "sha256": rec.sha256, "size": len(blob), "created_at": rec.created_at,
                "metrics": rec.metrics, "parent": rec.parent, "exported_at": now,
                "source": source, "promotion": found[1]}
    sig_payload = {"schema": model_files.SCHEMA, "kind": kind, "name": name,
                   "sha256": rec.sha256, "size": len(blob), "signed_at": now}
    members = [(MANIFEST, (signer.sign(manifest) + "\n").encode()), (name, blob),
               (model_files.sig_path(name).name, (signer.sign(sig_payload) + "\n").encode())]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w") as tar:
        for member, data in members:
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(data), int(now), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), manifest


# ----------------------------------------------------------------------------- import

def _members(data: bytes) -> dict[str, bytes]:
    """The archive's regular files by name; refuses anything else (links, folders, paths,
    duplicates, oversized members) without writing to disk."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise TransferError(f"not a model archive (tar or tar.gz): {e}") from None
    out: dict[str, bytes] = {}
    with tar:
        try:
            for m in tar:
                if not m.isfile() or "/" in m.name or m.name in ("", ".", ".."):
                    raise TransferError(f"archive refused: unexpected member {m.name!r} (a model "
                                        "archive holds three plain files)")
                if m.name in out:
                    raise TransferError(f"archive refused: {m.name!r} appears twice")
                if m.size > MAX_MEMBER_BYTES:
                    raise TransferError(f"archive refused: {m.name!r} is {m.size} bytes "
                                        f"(limit {MAX_MEMBER_BYTES})")
                f = tar.extractfile(m)
                out[m.name] = f.read() if f is not None else b""
        except (tarfile.TarError, EOFError, OSError) as e:
            raise TransferError(f"archive refused: damaged tar ({e})") from None
    return out


def verify_archive(data: bytes, verifier: Verifier) -> VerifiedExport:
    """Check every signature and checksum of an export; TransferError naming the first
    problem."""
    files = _members(data)
    if MANIFEST not in files:
        raise TransferError(f"archive refused: no {MANIFEST} (not a SliceTwin model export)")
    try:
        m = verifier.verify(files[MANIFEST], SCHEMA)
    except SignatureError as e:
        raise TransferError(f"archive refused: {MANIFEST} does not verify ({e}); it was altered "
                            "after export, or signed by a key this registry does not trust "
                            "(--promotion-public-key)") from None
    kind, version, name = m.get("kind"), m.get("version"), m.get("file")
    if kind not in KINDS or name != MODEL_FILE.get(kind) or not isinstance(version, str):
        raise TransferError(f"archive refused: manifest names kind {kind!r}, file {name!r}")
    sig_name = model_files.sig_path(name).name
    extra = set(files) - {MANIFEST, name, sig_name}
    if extra:
        raise TransferError(f"archive refused: unexpected members {sorted(extra)}")
    if name not in files:
        raise TransferError(f"archive refused: the model file {name} is missing")
    blob = files[name]
    sha = hashlib.sha256(blob).hexdigest()
    if sha != m.get("sha256") or len(blob) != m.get("size"):
        raise TransferError(f"archive refused: {name} was altered after export (sha256 "
                            f"{sha[:12]}..., {len(blob)} B; the signed manifest says "
                            f"{str(m.get('sha256'))[:12]}..., {m.get('size')} B)")
    if sig_name not in files:
        raise TransferError(f"archive refused: the signature {sig_name} is missing")
    try:
        sig = verifier.verify(files[sig_name], model_files.SCHEMA)
    except SignatureError as e:
        raise TransferError(f"archive refused: {sig_name} does not verify ({e})") from None
    if sig.get("kind") != kind or sig.get("sha256") != sha:
        raise TransferError(f"archive refused: {sig_name} signs another file (kind "
                            f"{sig.get('kind')!r}, sha256 {str(sig.get('sha256'))[:12]}...)")
    try:
        prom = read_record(verifier, str(m.get("promotion") or ""), kind)
    except PromotionRefused as e:
        raise TransferError(f"archive refused: its promotion record is not valid ({e})") from None
    if prom.version != version or prom.sha256 != sha:
        raise TransferError(f"archive refused: its promotion record approves {kind} "
                            f"{prom.version} ({prom.sha256[:12]}...), not {version} "
                            f"({sha[:12]}...)")
    if kind == "policy":
        try:
            OnnxPolicy(blob)  # what a controller checks on load: never store what it refuses
        except ModelRejected as e:
            raise TransferError(f"archive refused: the policy fails the controller's checks "
                                f"({e})") from None
    return VerifiedExport(kind, version, blob, m, prom)


def import_model(reg: Registry, data: bytes, verifier: Verifier,
                 promote: bool = False) -> ImportResult:
    """Verify an export and publish it into ``reg`` (and promote it when asked). Importing a
    version the target already holds with the same bytes is a no-op (it may still promote);
    the same version name with other bytes is refused."""
    x = verify_archive(data, verifier)
    imported = True
    try:
        have = reg.show(x.kind, x.version)
    except NotFound:
        have = None
    if have is not None:
        if have.sha256 != x.sha256:
            raise TransferError(f"{x.kind} {x.version} already exists in the target registry "
                                f"with other bytes (sha256 {have.sha256[:12]}..., the archive "
                                f"{x.sha256[:12]}...); nothing was changed")
        reg.fetch(x.kind, x.version)  # the stored copy must verify too before it is promoted
        imported = False
    else:
        m = x.manifest
        reg.publish(x.kind, x.blob, version=x.version, metrics=dict(m.get("metrics") or {}),
                    parent=m.get("parent"))
    previous = None
    if promote:
        previous = reg.promote(x.kind, x.version, verdict="operator", gate={
            "by": "operator", "imported": True, "source": x.manifest.get("source", ""),
            "source_promotion": {"action": x.promotion.action, "verdict": x.promotion.verdict,
                                 "time": x.promotion.time}})
    return ImportResult(x.kind, x.version, x.sha256, len(x.blob), imported, promote, previous)
