"""The one ``slicetwin`` command.

Sub-commands live next to the code they drive, in ``cli`` modules that import only typer and the
standard library at module level (heavy imports go inside the command functions), so that
``slicetwin controller`` never imports torch. Each module exposes one or more ``typer.Typer``
objects; commands of objects sharing a group name are merged into that group.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="SliceTwin: RAN slicing controller with a learned digital twin.",
                  no_args_is_help=True, add_completion=False)

# (module, attribute, group): group None puts the commands at the top level.
_PARTS: list[tuple[str, str, str | None]] = [
    ("slicetwin.sim.cli", "app", None),  # baselines
    ("slicetwin.sim.cli", "bench_app", "bench"),  # bench sim
    ("trainer.cli", "app", None),  # trainer
    ("trainer.cli", "experiment_app", "experiment"),  # experiment online|distill|offline|landscape
    ("trainer.cli", "bench_app", "bench"),  # bench train, bench policy
    ("controller.cli", "app", None),  # controller, gnb
    ("controller.cli", "bench_app", "bench"),  # bench controller
    ("twin_service.cli", "app", None),  # twin
    ("twin_service.cli", "bench_app", "bench"),  # bench twin
    ("slicetwin.registry_cli", "app", "models"),  # models list|show|promote|rollback|sign
    ("slicetwin.keys_cli", "app", "keys"),  # keys init
    ("slicetwin.demo", "app", None),  # demo
    ("slicetwin.soak", "bench_app", "bench"),  # bench soak
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
    from slicetwin import __version__

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
    import sys

    from slicetwin.extras import MissingExtra

    first = sys.argv[1] if len(sys.argv) > 1 else None
    _register(first if first in {g for _, _, g in _PARTS if g} else None)
    try:
        app()
    except MissingExtra as e:  # e.g. `slicetwin gnb` where the package has no `sim` extra
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
