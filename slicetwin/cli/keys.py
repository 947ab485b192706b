"""``slicetwin keys init``: fresh keys for a deployment (``.env`` + the Redis ACL file).

Module level imports typer and the standard library only (CLI rule).
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Create the deployment's secrets.", no_args_is_help=True)


@app.command()
def init(out: Path = typer.Option(Path(".env"), help="the .env file docker compose reads"),
         acl: Path = typer.Option(Path("deploy/redis/users.acl"), help="Redis ACL file "
                                  "(hashed passwords; mounted by the compose redis service)"),
         prefix: str = typer.Option("slicetwin:", help="registry prefix the ACL rules cover"),
         force: bool = typer.Option(False, "--force", help="replace existing files (every "
                                    "key changes: restart the whole stack)")) -> None:
    """Write fresh random keys to .env (mode 600) and the matching Redis ACL file."""
    from slicetwin.platform.keys import fresh_keys, render_env, write_private  # lazy: fast start
    from slicetwin.platform.redis_acl import passwords_from_env, render_acl  # lazy: fast start

    for p in (out, acl):
        if p.exists() and not force:
            typer.echo(f"{p} exists; keeping it (use --force to replace every key)", err=True)
            raise typer.Exit(1)
    keys = fresh_keys()
    write_private(out, render_env(keys))
    # the redis container reads it as another user: world-readable, it holds only SHA-256
    # digests of 48-hex-digit random passwords
    write_private(acl, render_acl(passwords_from_env(keys), prefix), mode=0o644)
    typer.echo(f"wrote {out} (keys, mode 600) and {acl} (Redis users)\n"
               "next: docker compose up --build\n"
               "CLI:  set -a; . ./.env; set +a   (then slicetwin models ... with "
               "SLICETWIN_REDIS_URL=redis://operator:$REDIS_OPERATOR_PASSWORD@127.0.0.1:6379/0)")
