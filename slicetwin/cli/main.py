"""The one ``slicetwin`` command.

Sub-commands live next to the code they drive, in ``cli`` modules that import only typer and the
standard library at module level (heavy imports go inside the command functions), so that
``slicetwin controller`` never imports torch. Each module exposes one or more ``typer.Typer``
objects; commands of objects sharing a group name are merged into that group.
"""

from __future__ import annotations

import importlib
import sys

import typer

from slicetwin import __version__

app = typer.Typer(help="SliceTwin: RAN slicing controller with a learned digital twin.",
                  no_args_is_help=True, add_completion=False)

# (module, attribute, group): group None puts the commands at the top level.
_PARTS: list[tuple[str, str, str | None]] = [
    ("slicetwin.cli.sim", "app", None),  # baselines
    ("slicetwin.cli.sim", "bench_app", "bench"),  # bench sim
    ("slicetwin.cli.sim", "experiment_app", "experiment"),  # experiment explore-cost
    ("slicetwin.cli.trainer", "app", None),  # trainer
    ("slicetwin.cli.trainer", "experiment_app", "experiment"),  # experiment online|distill|offline|landscape
    ("slicetwin.cli.trainer", "bench_app", "bench"),  # bench train, bench policy
    ("slicetwin.cli.controller", "app", None),  # controller, gnb
    ("slicetwin.cli.controller", "bench_app", "bench"),  # bench controller, bench soak
    ("slicetwin.cli.twin", "app", None),  # twin
    ("slicetwin.cli.twin", "bench_app", "bench"),  # bench twin
    ("slicetwin.cli.models", "app", "models"),  # models list|show|promote|rollback|sign
    ("slicetwin.cli.keys", "app", "keys"),  # keys init
    ("slicetwin.cli.demo", "app", None),  # demo
]

_HELP = {
    "bench": "Benchmarks; each prints one JSON line of figures.",
    "experiment": "Reproduce the paper's experiments (CSV, PNG, summary.json).",
    "models": "Inspect and move models in the registry.",
    "keys": "Create the deployment's secrets (.env, Redis ACL).",
}


@app.command()
def version() -> None:
    """Print the SliceTwin version."""

    typer.echo(__version__)


def _register(only_group: str | None = None) -> None:
    """Attach every part's commands; ``only_group`` (a group name) loads just that group's
    modules, so e.g. ``slicetwin models rollback`` starts without importing the simulator."""
    groups: dict[str, typer.Typer] = {}
    for module, attr, group in _PARTS:
        if only_group is not None and group != only_group:
            continue
        try:
            sub = getattr(importlib.import_module(module), attr, None)
        except ModuleNotFoundError as e:
            if e.name and (e.name == module or module.startswith(e.name + ".")):
                continue  # that part of the system is not built yet
            raise
        if sub is None:
            continue
        target = app
        if group is not None:
            if group not in groups:
                groups[group] = typer.Typer(help=_HELP.get(group), no_args_is_help=True)
                app.add_typer(groups[group], name=group)
            target = groups[group]
        target.registered_commands.extend(sub.registered_commands)
        target.registered_groups.extend(sub.registered_groups)


def main() -> None:

    from slicetwin.core.extras import MissingExtra  # lazy: module level stays typer-only

    first = sys.argv[1] if len(sys.argv) > 1 else None
    _register(first if first in {g for _, _, g in _PARTS if g} else None)
    try:
        app()
    except MissingExtra as e:  # e.g. `slicetwin gnb` where the package has no `sim` extra
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
