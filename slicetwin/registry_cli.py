"""``slicetwin models list|show|promote|rollback|publish``: inspect and move registry models.

Reads ``SLICETWIN_REDIS_URL``, ``SLICETWIN_HMAC_KEY`` and ``SLICETWIN_REGISTRY_PREFIX`` (or the
options). Module level imports typer and the standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Inspect and move models in the registry.", no_args_is_help=True)

_URL = typer.Option(None, "--redis-url", envvar="SLICETWIN_REDIS_URL",
                    help="Redis URL of the registry (redis://host:port/db).")
_KEY = typer.Option(None, "--hmac-key", envvar="SLICETWIN_HMAC_KEY",
                    help="Shared HMAC key (default: the development key).")
_PREFIX = typer.Option("slicetwin:", "--prefix", envvar="SLICETWIN_REGISTRY_PREFIX")
_KIND = typer.Argument("policy", help="policy or twin")


def _open(url: str | None, key: str | None, prefix: str):
    from slicetwin.registry import DEV_HMAC_KEY, RegistryError, open_registry

    if not url:
        raise typer.BadParameter("set --redis-url or SLICETWIN_REDIS_URL (the in-memory registry "
                                 "lives inside one process only)")
    try:
        return open_registry(url, key or DEV_HMAC_KEY, prefix)
    except RegistryError as e:
        raise typer.BadParameter(str(e)) from e


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_models(kind: str = _KIND, redis_url: str = _URL, hmac_key: str = _KEY,
                prefix: str = _PREFIX, as_json: bool = typer.Option(False, "--json")) -> None:
    """List versions of a model kind (oldest first; * marks current)."""
    from slicetwin.registry import RegistryError

    reg = _open(redis_url, hmac_key, prefix)
    try:
        recs, cur = reg.list(kind), reg.current(kind)
    except RegistryError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps({"current": cur, "versions": [r.to_dict() for r in recs]}))
        return
    for r in recs:
        mark = "*" if r.version == cur else " "
        typer.echo(f"{mark} {r.version:40s} {r.created_at}  {r.size:>9d} B  "
                   f"parent={r.parent or '-'}  metrics={json.dumps(r.metrics)}")
    if not recs:
        typer.echo(f"(no {kind} models)")


@app.command()
def show(kind: str = _KIND, version: str = typer.Argument(None, help="default: current"),
         redis_url: str = _URL, hmac_key: str = _KEY, prefix: str = _PREFIX,
         verify: bool = typer.Option(True, help="check sha256 + signature of the blob")) -> None:
    """Show one version's record (JSON), verifying its blob."""
    from slicetwin.registry import RegistryError

    reg = _open(redis_url, hmac_key, prefix)
    try:
        rec = reg.fetch(kind, version)[0] if verify else reg.show(kind, version)
    except RegistryError as e:
        _fail(e)
    d = rec.to_dict()
    d["current"] = reg.current(kind) == rec.version
    d["verified"] = verify
    typer.echo(json.dumps(d, indent=2))


@app.command()
def promote(kind: str = typer.Argument(..., help="policy or twin"),
            version: str = typer.Argument(...), redis_url: str = _URL, hmac_key: str = _KEY,
            prefix: str = _PREFIX) -> None:
    """Make a version current (after verifying it) and announce it to the services."""
    from slicetwin.registry import RegistryError

    reg = _open(redis_url, hmac_key, prefix)
    try:
        reg.fetch(kind, version)  # never point current at a blob that does not verify
        prev = reg.promote(kind, version)
    except RegistryError as e:
        _fail(e)
    typer.echo(f"{kind}: {prev or '-'} -> {version}")


@app.command()
def rollback(kind: str = _KIND, redis_url: str = _URL, hmac_key: str = _KEY,
             prefix: str = _PREFIX) -> None:
    """Move current back to the previously current version."""
    from slicetwin.registry import RegistryError

    reg = _open(redis_url, hmac_key, prefix)
    try:
        cur = reg.current(kind)
        v = reg.rollback(kind)
    except RegistryError as e:
        _fail(e)
    typer.echo(f"{kind}: {cur or '-'} -> {v}")


@app.command()
def publish(kind: str = typer.Argument(..., help="policy or twin"),
            path: Path = typer.Argument(..., exists=True, dir_okay=False),
            version: str = typer.Option(None, help="default: timestamped"),
            metrics: str = typer.Option("{}", help="JSON object of figures"),
            parent: str = typer.Option(None), do_promote: bool = typer.Option(False, "--promote"),
            redis_url: str = _URL, hmac_key: str = _KEY, prefix: str = _PREFIX) -> None:
    """Publish a file as a new signed version (a policy must pass ONNX validation first)."""
    from slicetwin.registry import RegistryError

    blob = path.read_bytes()
    if kind == "policy":
        from slicetwin.onnx_policy import ModelRejected, OnnxPolicy

        try:
            OnnxPolicy(blob)
        except ModelRejected as e:
            _fail(e)
    try:
        m = json.loads(metrics)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"--metrics is not JSON: {e}") from e
    reg = _open(redis_url, hmac_key, prefix)
    try:
        rec = reg.publish(kind, blob, version=version, metrics=m, parent=parent,
                          promote=do_promote)
    except RegistryError as e:
        _fail(e)
    typer.echo(json.dumps(rec.to_dict()))


