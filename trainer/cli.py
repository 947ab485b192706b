"""Trainer commands: ``slicetwin trainer``, ``slicetwin experiment ...``, ``slicetwin bench ...``.

Module level imports typer and the standard library only; torch and friends load inside the
command functions (see the CLI rule in docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer()
experiment_app = typer.Typer()
bench_app = typer.Typer()


# ---------------------------------------------------------------- distillation / offline / landscape
# (owned by the distillation part, docs/distillation.md)

@bench_app.command("policy")
def bench_policy_cmd(
    model: Path = typer.Option(None, help="ONNX policy file; default: a 16-16 student, 4851 actions"),
    hidden: int = typer.Option(16, help="student hidden units when no --model is given"),
    n_single: int = typer.Option(20_000, help="single decisions to time"),
    n_batches: int = typer.Option(400, help="batches of 256 to time"),
) -> None:
    """ONNX student inference speed (onnxruntime, 1 thread): one JSON line."""
    from trainer.bench_policy import main_json

    typer.echo(main_json(model=model, hidden=hidden, n_single=n_single, n_batches=n_batches))
