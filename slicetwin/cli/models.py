"""``slicetwin models list|show|promote|rollback|publish|sign|export|import|migrate``: the operator's
registry tool (export and import: ``slicetwin.ops.model_transfer``).

Reads ``SLICETWIN_REDIS_URL``, ``SLICETWIN_HMAC_KEY``, ``SLICETWIN_PROMOTION_KEY`` and
``SLICETWIN_REGISTRY_PREFIX`` (or the options). Promotion and rollback write a record signed
with the promotion key; outside ``SLICETWIN_ENV=dev`` the public development keys are refused.
Module level imports typer and the standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

import typer

app = typer.Typer(help="Inspect and move models in the registry.", no_args_is_help=True)

_URL = typer.Option(None, "--redis-url", envvar="SLICETWIN_REDIS_URL",
                    help="Redis URL of the registry (redis://host:port/db, or "
                    "redis+cluster://host:port[,host:port] for a Redis Cluster).")
_KEY = typer.Option(None, "--hmac-key", envvar="SLICETWIN_HMAC_KEY",
                    help="Shared HMAC key (the development key only with SLICETWIN_ENV=dev).")
_PKEY = typer.Option(None, "--promotion-key", envvar="SLICETWIN_PROMOTION_KEY",
                     help="Ed25519 private key (hex) that signs promotions, rollbacks and model "
                     "files (the development key only with SLICETWIN_ENV=dev).")
_PUB = typer.Option(None, "--promotion-public-key", envvar="SLICETWIN_PROMOTION_PUBLIC_KEY",
                    help="public key(s) the served version's promotion record must verify "
                    "against (default: that of --promotion-key)")
_PREFIX = typer.Option("slicetwin:", "--prefix", envvar="SLICETWIN_REGISTRY_PREFIX")
_KIND = typer.Argument("policy", help="policy or twin")


def _check_keys(items: list[tuple[str, object, bool]]) -> None:
    """Outside development mode, refuse public or missing keys (exit 2, saying how to fix)."""
    from slicetwin.platform.security import (  # lazy: fast start
        is_dev,
        refuse_message,
        secret_problems,
    )  # lazy: fast start

    problems = [] if is_dev() else secret_problems(items)
    if problems:
        typer.echo(refuse_message("slicetwin models", problems), err=True)
        raise typer.Exit(2)


def _open(url: str | None, key: str | None, prefix: str, promotion_key: str | None = None,
          sign: bool = False, public: str | None = None):
    from slicetwin.core.signing import DEV_PROMOTION_KEY  # lazy: fast start
    from slicetwin.platform.security import DEV_HMAC_KEY  # lazy: fast start
    from slicetwin.registry.store import RegistryError, open_registry  # lazy: fast start

    if not url:
        raise typer.BadParameter("set --redis-url or SLICETWIN_REDIS_URL (the in-memory registry "
                                 "lives inside one process only)")
    checks = [("SLICETWIN_HMAC_KEY", key, True)]
    if sign:
        checks.append(("SLICETWIN_PROMOTION_KEY", promotion_key, True))
    _check_keys(checks)
    try:
        return open_registry(url, key or DEV_HMAC_KEY, prefix,
                             promotion_key=promotion_key or DEV_PROMOTION_KEY,
                             promotion_public_keys=public or None)
    except (RegistryError, ValueError) as e:
        raise typer.BadParameter(str(e)) from e


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_models(kind: str = _KIND, redis_url: str = _URL, hmac_key: str = _KEY,
                prefix: str = _PREFIX, as_json: bool = typer.Option(False, "--json"),
                promotion_key: str = _PKEY, public: str = _PUB) -> None:
    """List versions of a model kind (oldest first; * marks the version services serve)."""
    from slicetwin.registry.store import RegistryError  # lazy: fast start

    reg = _open(redis_url, hmac_key, prefix, promotion_key, public=public)
    try:
        recs, cur, served = reg.list(kind), reg.current(kind), reg.authorised(kind)
    except RegistryError as e:
        _fail(e)
    served_v = served.version if served is not None else None
    if as_json:
        typer.echo(json.dumps({"current": cur, "served": served_v,
                               "versions": [r.to_dict() for r in recs]}))
        return
    if cur != served_v:
        typer.echo(f"WARNING: current={cur} has no valid promotion record; services serve "
                   f"{served_v}", err=True)
    for r in recs:
        mark = "*" if r.version == served_v else " "
        typer.echo(f"{mark} {r.version:40s} {r.created_at}  {r.size:>9d} B  "
                   f"parent={r.parent or '-'}  metrics={json.dumps(r.metrics)}")
    if not recs:
        typer.echo(f"(no {kind} models)")


@app.command()
def show(kind: str = _KIND, version: str = typer.Argument(None, help="default: current"),
         redis_url: str = _URL, hmac_key: str = _KEY, prefix: str = _PREFIX,
         verify: bool = typer.Option(True, help="check sha256 + signature of the blob"),
         promotion_key: str = _PKEY, public: str = _PUB) -> None:
    """Show one version's record (JSON), verifying its blob, and its promotion record."""
    from slicetwin.registry.store import RegistryError  # lazy: fast start

    reg = _open(redis_url, hmac_key, prefix, promotion_key, public=public)
    try:
        rec = reg.fetch(kind, version)[0] if verify else reg.show(kind, version)
    except RegistryError as e:
        _fail(e)
    d = rec.to_dict()
    served = reg.authorised(kind)
    d["current"] = reg.current(kind) == rec.version
    d["served"] = served is not None and served.version == rec.version
    d["promotion"] = served.to_dict() if d["served"] else None
    d["verified"] = verify
    typer.echo(json.dumps(d, indent=2))


@app.command()
def promote(kind: str = typer.Argument(..., help="policy or twin"),
            version: str = typer.Argument(...), redis_url: str = _URL, hmac_key: str = _KEY,
            promotion_key: str = _PKEY, prefix: str = _PREFIX,
            override_gate: bool = typer.Option(False, "--override-gate", help="promote a "
                                               "candidate the trainer's gate refused")) -> None:
    """Promote a version (after verifying it) with a signed record; the services follow."""
    from slicetwin.registry.store import RegistryError  # lazy: fast start

    reg = _open(redis_url, hmac_key, prefix, promotion_key, sign=True)
    try:
        rec, _ = reg.fetch(kind, version)  # never promote a blob that does not verify
        gate = rec.metrics.get("gate") if isinstance(rec.metrics.get("gate"), dict) else {}
        if gate.get("passed") is False and not override_gate:
            _fail(RegistryError(f"the gate refused {kind} {version} ({gate.get('reason')}); "
                                "add --override-gate to promote it anyway"))
        prev = reg.promote(kind, version, verdict="operator",
                           gate={"by": "operator", "gate_passed": gate.get("passed"),
                                 "override": bool(override_gate and gate.get("passed") is False)})
    except RegistryError as e:
        _fail(e)
    typer.echo(f"{kind}: {prev or '-'} -> {version}")


@app.command()
def rollback(kind: str = _KIND, redis_url: str = _URL, hmac_key: str = _KEY,
             promotion_key: str = _PKEY, prefix: str = _PREFIX) -> None:
    """Move back to the previously current version (a new signed rollback record)."""
    from slicetwin.registry.store import RegistryError  # lazy: fast start

    reg = _open(redis_url, hmac_key, prefix, promotion_key, sign=True)
    try:
        cur = reg.current(kind)
        v = reg.rollback(kind)
    except RegistryError as e:
        _fail(e)
    typer.echo(f"{kind}: {cur or '-'} -> {v}")


@app.command()
def migrate(redis_url: str = _URL, prefix: str = _PREFIX) -> None:
    """Rename the registry's keys from the layout before hash tags (``slicetwin:models:...``)
    to ``slicetwin:{models}:...`` (once, on a single Redis, services stopped)."""
    from slicetwin.registry.store import RegistryError, migrate_layout  # lazy: fast start

    if not redis_url:
        raise typer.BadParameter("set --redis-url or SLICETWIN_REDIS_URL")
    try:
        out = migrate_layout(redis_url, prefix)
    except (RegistryError, ValueError) as e:
        _fail(e)
    typer.echo(f"renamed {len(out['renamed'])} registry keys to the hash-tagged layout")
    for k in out["kept"]:
        typer.echo(f"kept {k}: its new name exists already (delete one of the two)", err=True)


@app.command()
def publish(kind: str = typer.Argument(..., help="policy or twin"),
            path: Path = typer.Argument(..., exists=True, dir_okay=False),
            version: str = typer.Option(None, help="default: timestamped"),
            metrics: str = typer.Option("{}", help="JSON object of figures"),
            parent: str = typer.Option(None), do_promote: bool = typer.Option(False, "--promote"),
            redis_url: str = _URL, hmac_key: str = _KEY, promotion_key: str = _PKEY,
            prefix: str = _PREFIX) -> None:
    """Publish a file as a new signed version (a policy must pass ONNX validation first)."""
    from slicetwin.registry.store import RegistryError  # lazy: fast start

    blob = path.read_bytes()
    if kind == "policy":
        from slicetwin.runtime.onnx_policy import ModelRejected, OnnxPolicy  # lazy: fast start

        try:
            OnnxPolicy(blob)
        except ModelRejected as e:
            _fail(e)
    try:
        m = json.loads(metrics)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"--metrics is not JSON: {e}") from e
    reg = _open(redis_url, hmac_key, prefix, promotion_key, sign=do_promote)
    try:
        rec = reg.publish(kind, blob, version=version, metrics=m, parent=parent,
                          promote=do_promote, verdict="operator", gate={"by": "operator"})
    except RegistryError as e:
        _fail(e)
    typer.echo(json.dumps(rec.to_dict()))


@app.command()
def sign(kind: str = typer.Argument(..., help="policy or twin"),
         path: Path = typer.Argument(..., exists=True, dir_okay=False),
         promotion_key: str = _PKEY) -> None:
    """Write PATH.sig, the detached signature a service needs to load a model file."""
    from slicetwin.core.signing import DEV_PROMOTION_KEY, SignatureError, Signer  # lazy: fast start
    from slicetwin.registry.model_files import sign_file  # lazy: fast start

    if kind not in ("policy", "twin"):
        raise typer.BadParameter("kind is policy or twin")
    _check_keys([("SLICETWIN_PROMOTION_KEY", promotion_key, True)])
    if kind == "policy":
        from slicetwin.runtime.onnx_policy import ModelRejected, OnnxPolicy  # lazy: fast start

        try:
            OnnxPolicy(path.read_bytes())  # sign only what a controller would accept
        except ModelRejected as e:
            _fail(e)
    try:
        out = sign_file(path, Signer(promotion_key or DEV_PROMOTION_KEY), kind)
    except SignatureError as e:
        _fail(e)
    typer.echo(str(out))




def _transfer_keys(promotion_key: str | None, public: str | None):
    """(signer, verifier): the promotion key (dev default in dev mode) and the public keys
    archives must verify against (default: the promotion key's)."""
    from slicetwin.core.signing import (  # lazy: fast start
        DEV_PROMOTION_KEY,
        Signer,
        Verifier,
        parse_public_keys,
    )

    signer = Signer(promotion_key or DEV_PROMOTION_KEY)
    try:
        pubs = parse_public_keys(public) or (signer.public_key,)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    return signer, Verifier(pubs)


def _where(url: str, prefix: str) -> str:

    u = urlsplit(url)  # never the password
    return f"{u.scheme}://{u.hostname or ''}{':' + str(u.port) if u.port else ''}{u.path} {prefix}"


@app.command("export")
def export_model(kind: str = typer.Argument(..., help="policy or twin"),
                 version: str = typer.Argument(None, help="default: the version services serve"),
                 out: str = typer.Option(..., "--out", "-o", help="archive to write: NAME.tar, "
                                         "NAME.tar.gz, or - for stdout"),
                 redis_url: str = _URL, hmac_key: str = _KEY, promotion_key: str = _PKEY,
                 public: str = _PUB, prefix: str = _PREFIX) -> None:
    """Write a promoted version to one signed archive (for import elsewhere, or a file).

    The archive holds the model, its file signature, its promotion record and metadata."""

    from slicetwin.ops.model_transfer import export_model as export  # lazy: fast start
    from slicetwin.ops.model_transfer import is_gzip_name  # lazy: fast start
    from slicetwin.registry.store import RegistryError  # lazy: fast start

    reg = _open(redis_url, hmac_key, prefix, promotion_key, sign=True, public=public)
    signer, verifier = _transfer_keys(promotion_key, public)
    try:
        data, m = export(reg, kind, version, signer, verifier, gzip=is_gzip_name(out),
                         source=_where(redis_url, prefix))
    except RegistryError as e:
        _fail(e)
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(out).write_bytes(data)
    typer.echo(json.dumps({"kind": m["kind"], "version": m["version"], "sha256": m["sha256"],
                           "size": m["size"], "archive": out, "archive_bytes": len(data)}),
               err=out == "-")


@app.command("import")
def import_model(archive: str = typer.Argument(..., help="archive from `slicetwin models "
                                               "export` (- for stdin)"),
                 do_promote: bool = typer.Option(False, "--promote", help="also make it the "
                                                 "version services serve (a new signed record)"),
                 redis_url: str = _URL, hmac_key: str = _KEY, promotion_key: str = _PKEY,
                 public: str = _PUB, prefix: str = _PREFIX) -> None:
    """Verify an exported archive and publish its version here (tampered: refused).

    Checked before anything is written: signatures, sha256, promotion record, ONNX contract."""

    from slicetwin.ops.model_transfer import import_model as do_import  # lazy: fast start
    from slicetwin.registry.store import RegistryError  # lazy: fast start

    try:
        data = sys.stdin.buffer.read() if archive == "-" else Path(archive).read_bytes()
    except OSError as e:
        _fail(RegistryError(f"cannot read {archive}: {e.strerror or e}"))
    reg = _open(redis_url, hmac_key, prefix, promotion_key, sign=do_promote, public=public)
    _, verifier = _transfer_keys(promotion_key, public)
    try:
        res = do_import(reg, data, verifier, promote=do_promote)
    except RegistryError as e:
        _fail(e)
    typer.echo(json.dumps(res.to_dict()))
