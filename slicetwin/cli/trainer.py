"""Trainer commands: ``slicetwin trainer``, ``slicetwin experiment ...``, ``slicetwin bench ...``.

Module level imports typer and the standard library only; torch and friends load inside the
command functions (see the CLI rule in docs/architecture.md).
"""

from __future__ import annotations

import json as _json
import logging
import os
import signal
import threading
from dataclasses import fields, replace
from pathlib import Path

import typer

app = typer.Typer()
experiment_app = typer.Typer()
bench_app = typer.Typer()

# options shared by the paper-figure experiments measured on seed pairs (Fig. 8, Fig. 9)
_PAIR_FIRST_SEED = typer.Option(0, min=0, help="first training seed (0-999; 1000-1999 for "
                                "probes); pair i is measured on report seed 10000 + i")
_PAIR_ANY_SEEDS = typer.Option(False, "--allow-any-seeds",
                               help="accept seeds outside the protocol's ranges")
_PAIR_BASELINES = typer.Option(None, help="a `slicetwin baselines` summary.json (or its --out "
                               "folder) of the same report traffic: ratios to best fixed "
                               "(hindsight), planner and oracle")
_EVAL_WINDOWS = typer.Option(None, min=1, help="report windows per seed (default 150, the "
                             "yardstick's; quick 40)")


# ---------------------------------------------------------------- online experiment / bench train
# (owned by the agents part, docs/training.md)

@experiment_app.command("online")
def experiment_online(
    algo: list[str] = typer.Option(["ddqn"], help="dqn | ddqn | dueling-ddqn | gan-ddqn | factored-ddqn | random "
                                   "(repeat the option for several)"),
    twin: bool = typer.Option(False, "--twin/--no-twin",
                              help="also run the twin-enhanced agent and the matched-compute baseline"),
    mode: str = typer.Option("paper", help="twin variant: paper (Algorithm 1 as published) | "
                             "branched (short model rollouts from real states, MBPO-like)"),
    seeds: int = typer.Option(5, min=1, help="seeds per configuration"),
    first_seed: int = typer.Option(0, min=0, help="first training seed (0-999; 1000-1999 for "
                                   "probes); each run is evaluated on report seed 10000 + its "
                                   "training seed"),
    allow_any_seeds: bool = typer.Option(False, "--allow-any-seeds",
                                         help="accept training seeds outside 0-1999"),
    rounds: int = typer.Option(30, min=1, help="rounds of 200 real interactions per run"),
    distill_rounds: int = typer.Option(None, min=0, help="distillation steps of each run's "
                                       "served ONNX student (default 2,000; quick 100; 0 = "
                                       "no student)"),
    out: Path = typer.Option(Path("runs/online"), help="output directory"),
    quick: bool = typer.Option(False, help="smoke run: 2 seeds x 3 rounds, small nets"),
    workers: int = typer.Option(2, min=1, help="parallel worker processes (1 torch thread each)"),
    n_cells: int = typer.Option(4, min=1, help="simulator cells stepped together"),
    progress: bool = typer.Option(True, help="progress bars"),
    a1: list[str] = typer.Option([], "--a1", help="Algorithm1Config override KEY=VALUE (JSON "
                                 "value), e.g. --a1 counterfactual_actions=0 --a1 zeta=0.5; "
                                 "repeat for several"),
    profile: str = typer.Option("paper", help="simulator profile: paper | diurnal | flash-crowd "
                                "| hetero | mix=A/B/C | a schedule like 'paper:2000,hetero'"),
) -> None:
    """Fig. 5/6: training curves, plain vs twin-enhanced (CSV per run, PNG, summary.json)."""

    from slicetwin.experiments.online import OnlineExperimentConfig, run_experiment  # lazy: torch
    from trainer.algorithm1 import Algorithm1Config  # lazy: torch

    known = {f.name for f in fields(Algorithm1Config)} - {"mode"}
    overrides = {}
    for item in a1:
        key, sep, raw = item.partition("=")
        if not sep or key not in known:
            raise typer.BadParameter(f"--a1 expects KEY=VALUE with KEY one of {sorted(known)}, "
                                     f"got {item!r}")
        try:
            overrides[key] = _json.loads(raw)
        except ValueError:
            raise typer.BadParameter(f"--a1 {key}: {raw!r} is not a JSON value") from None
    kw = dict(algos=tuple(algo), twin=twin, mode=mode, workers=workers, n_cells=n_cells,
              first_seed=first_seed, allow_any_seeds=allow_any_seeds,
              sim_profile=None if profile == "paper" else profile)
    if distill_rounds is not None:
        kw["distill_rounds"] = distill_rounds
    try:
        from slicetwin.sim import SimConfig

        SimConfig.from_profile(profile)
        if quick:
            cfg = OnlineExperimentConfig.quick(**kw, seeds=min(seeds, 2), rounds=min(rounds, 3))
        else:
            cfg = OnlineExperimentConfig(**kw, seeds=seeds, rounds=rounds)
        cfg.algorithm1.update(overrides)
        if cfg.mode == "branched":
            cfg.algorithm1_branched.update(overrides)  # the command line wins over both
        from slicetwin.experiments.online import a1_config

        a1_config(cfg)  # validate the overrides now, not in a worker
    except (ValueError, TypeError) as e:
        raise typer.BadParameter(str(e)) from e
    summary = run_experiment(cfg, out, progress=progress)
    brief = [{k: c[k] for k in ("algo", "variant", "seeds")}
             | {"to_0.8": c["interactions_to_reward_0.8"]["mean"],
                "to_0.8_ci95": c["interactions_to_reward_0.8"]["ci95"],
                "to_0.8_ratio_to_baseline": c.get("interactions_to_reward_0.8_ratio_to_baseline"),
                "final_reward": round(c["final_reward"]["mean"], 4),
                "final_utility": round(c["final_utility"]["mean"], 4),
                "greedy_vs_oracle": c.get("greedy_utility_vs_oracle", {}).get("mean"),
                "served_vs_oracle": c.get("served_utility_vs_oracle", {}).get("mean")}
             for c in summary["configs"]]
    typer.echo(_json.dumps({"out": str(out), "oracle_utility": summary["oracle_utility"],
                            "paper_fig5b": summary["paper_fig5b"], "configs": brief}))


@bench_app.command("train")
def bench_train_cmd(
    algo: str = typer.Option("ddqn", help="dqn | ddqn | dueling-ddqn | gan-ddqn | factored-ddqn"),
    n_cells: int = typer.Option(4, min=1, help="simulator cells stepped together"),
    grad_steps: int = typer.Option(200, min=1, help="gradient steps to time"),
    interactions: int = typer.Option(2000, min=1, help="real interactions to time"),
    threads: int = typer.Option(1, min=1, help="torch threads"),
) -> None:
    """Training throughput on the simulator: one JSON line (grad_steps_per_s, real_steps_per_s)."""
    from slicetwin.ops.bench.train import main_json  # lazy: torch
    from trainer.agents import AGENTS  # lazy: torch

    if algo not in AGENTS:
        raise typer.BadParameter(f"unknown algo {algo!r}; choose from {sorted(AGENTS)}")
    typer.echo(main_json(algo=algo, n_cells=n_cells, grad_steps=grad_steps,
                         interactions=interactions, threads=threads))


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
    from slicetwin.ops.bench.policy import main_json  # lazy: torch

    typer.echo(main_json(model=model, hidden=hidden, n_single=n_single, n_batches=n_batches))


def _ints(text: str | None) -> tuple[int, ...] | None:
    """'256,256,128,128' -> (256, 256, 128, 128); None stays None."""
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def _override(cfg, **kw):

    return replace(cfg, **{k: v for k, v in kw.items() if v is not None})


@experiment_app.command("compare")
def experiment_compare(
    profile: list[str] = typer.Option(["paper", "diurnal", "flash-crowd", "hetero"],
                                      help="simulator profile (repeat for several): paper | "
                                      "diurnal | flash-crowd | hetero | mix=A/B/C | a schedule"),
    seeds: int = typer.Option(5, min=1, help="pairs of (training seed i, report seed 10000+i)"),
    algo: list[str] = typer.Option(["dqn", "ddqn", "gan-ddqn"],
                                   help="dqn | ddqn | gan-ddqn | factored-ddqn"),
    variant: list[str] = typer.Option(["baseline", "twin", "baseline-matched",
                                       "baseline-twin-eps"], help="learned variants"),
    rounds: int = typer.Option(10, min=1, help="rounds of 200 real interactions per run"),
    windows: int = typer.Option(150, min=1, help="report windows per seed and cell"),
    cells: int = typer.Option(4, min=1, help="cells per report seed"),
    futures: int = typer.Option(8, min=1, help="planner futures per decision"),
    distill_rounds: int = typer.Option(2000, min=1, help="distillation steps per student"),
    workers: int = typer.Option(2, min=1, help="parallel worker processes"),
    first_seed: int = typer.Option(10_000, help="first report seed"),
    allow_any_seeds: bool = typer.Option(False, "--allow-any-seeds",
                                         help="accept report seeds outside 10000+"),
    out: Path = typer.Option(Path("runs/compare"), help="output directory"),
    baselines: list[Path] = typer.Option([], help="reuse the baselines of `slicetwin "
                                         "baselines --out` folders measured under the same "
                                         "protocol (seeds, windows, cells, futures); repeat "
                                         "for several"),
    resume: bool = typer.Option(False, help="skip learned runs already in OUT/runs.jsonl "
                                "(an interrupted run with the same settings)"),
    report_only: bool = typer.Option(False, help="train nothing: summarise OUT/runs.jsonl "
                                     "(variants missing a seed are left out)"),
    quick: bool = typer.Option(False, help="smoke run: diurnal, 2 seeds, DDQN and GAN-DDQN "
                               "plain and twin, 1 round, tiny networks"),
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """Learned policies (teacher and served ONNX student) against every baseline on report
    traffic: summary.json, compare.md, runs.csv and a bar plot per profile."""

    from slicetwin.core.protocol import SeedRangeError  # lazy: fast start
    from slicetwin.experiments.compare import CompareConfig, run_compare  # lazy: torch

    try:
        if quick:
            cfg = CompareConfig.quick(first_report_seed=first_seed,
                                      allow_any_seeds=allow_any_seeds,
                                      baselines_from=tuple(str(b) for b in baselines))
        else:
            cfg = CompareConfig(
                profiles=tuple(profile), seeds=seeds, algos=tuple(algo), variants=tuple(variant),
                rounds=rounds, distill_rounds=distill_rounds, workers=workers,
                first_report_seed=first_seed, allow_any_seeds=allow_any_seeds,
                baselines_from=tuple(str(b) for b in baselines),
                yardstick={"windows": windows, "cells": cells, "train_seeds": 3,
                           "train_windows": windows, "planner_futures": futures})
    except SeedRangeError as e:
        raise typer.BadParameter(str(e), param_hint="--first-seed") from e
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    res = run_compare(cfg, out, progress=progress, resume=resume, report_only=report_only)
    typer.echo(_json.dumps({"out": str(out), "seconds": res["total_wall_time_s"],
                            "best_served": {p: s["best_served"] for p, s in
                                            res["profiles"].items()},
                            "margins": {p: s["margins"] for p, s in res["profiles"].items()}}))


@experiment_app.command("plan-distill")
def experiment_plan_distill(
    profile: list[str] = typer.Option(["diurnal", "flash-crowd", "hetero"],
                                      help="simulator profile (repeat for several)"),
    seeds: int = typer.Option(5, min=1, help="seed pairs (training seed i, report seed 10000+i)"),
    first_seed: int = _PAIR_FIRST_SEED,
    first_report_seed: int = typer.Option(10_000, help="first report seed"),
    allow_any_seeds: bool = _PAIR_ANY_SEEDS,
    label_cells: int = typer.Option(16, min=1, help="cells collecting the planner's tables"),
    label_windows: int = typer.Option(1500, min=1, help="windows collected per cell"),
    label_futures: int = typer.Option(1, min=1, help="sampled futures per label"),
    label_horizon: int = typer.Option(1, min=1, help="windows per label with the split held"),
    label_discount: float = typer.Option(0.5, min=0.0, max=1.0,
                                         help="weight of window h of the horizon: discount ** h"),
    steps: int = typer.Option(4000, min=1, help="gradient steps of the student's regression"),
    hidden: int = typer.Option(16, min=1, help="units per hidden layer of the served student"),
    windows: int = typer.Option(150, min=1, help="report windows per seed and cell"),
    cells: int = typer.Option(4, min=1, help="report cells per seed"),
    futures: int = typer.Option(8, min=1, help="the yardstick planner's futures per decision"),
    baselines: list[Path] = typer.Option([], help="reuse baselines measured under the same "
                                         "protocol: a `slicetwin baselines --out` folder or an "
                                         "`experiment compare` summary.json; repeat for several"),
    teacher: str = typer.Option("simulator", help="whose plans are distilled: simulator (the "
                                "model-known planner) | twin (the learned twin, fitted on real "
                                "data of the training seed)"),
    twin_cells: int = typer.Option(8, min=1, help="teacher twin: cells of real data"),
    twin_windows: int = typer.Option(1200, min=1, help="teacher twin: windows of random splits "
                                     "per cell"),
    twin_plan_rows: int = typer.Option(600, min=1, help="teacher twin: real states at which "
                                       "the twin rates every split"),
    workers: int = typer.Option(2, min=1, help="parallel worker processes"),
    out: Path = typer.Option(Path("runs/plan_distill"), help="output directory"),
    quick: bool = typer.Option(False, help="smoke run: diurnal, 2 seeds, a few hundred labels"),
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """A planner (the model-known one, or the learned twin with ``--teacher twin``) distilled into
    the 16-unit student, measured as served (ONNX) on report traffic against every baseline:
    summary.json, plan_distill.md, runs.csv, plots."""

    from slicetwin.core.protocol import SeedRangeError  # lazy: fast start
    from slicetwin.experiments.plan_distill import (  # lazy: torch
        PlanDistillExperimentConfig,
        run_plan_distill,
    )

    common = dict(first_seed=first_seed, first_report_seed=first_report_seed,
                  allow_any_seeds=allow_any_seeds, baselines_from=tuple(str(b) for b in baselines),
                  teacher=teacher)
    try:
        if quick:
            cfg = PlanDistillExperimentConfig.quick(**common)
        else:
            cfg = PlanDistillExperimentConfig(
                profiles=tuple(profile), seeds=seeds, windows=windows, cells=cells,
                planner_futures=futures, workers=workers,
                plan={"cells": label_cells, "windows": label_windows, "futures": label_futures,
                      "horizon": label_horizon, "discount": label_discount, "steps": steps,
                      "hidden": hidden},
                twin={"cells": twin_cells, "windows": twin_windows, "plan_rows": twin_plan_rows},
                **common)
    except SeedRangeError as e:
        raise typer.BadParameter(str(e), param_hint="--first-seed") from e
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    res = run_plan_distill(cfg, out, progress=progress)
    typer.echo(_json.dumps({"out": str(out), "seconds": res["total_wall_time_s"],
                            "best_served": {p: s["best_served"] for p, s in
                                            res["profiles"].items()},
                            "floors": {p: s["floors"] for p, s in res["profiles"].items()}}))


@experiment_app.command("adapt")
def experiment_adapt(
    schedule: str = typer.Option("paper:500,flash-crowd:300",
                                 help="two phases PROFILE:WINDOWS,PROFILE:WINDOWS (a profile or "
                                 "mix=A/B/C); the regime changes between them"),
    seeds: int = typer.Option(5, min=1, help="training seeds (traffic, networks)"),
    first_seed: int = typer.Option(0, help="first seed: training range 0-999, or tuning "
                                   "1000-1999 for probes"),
    allow_any_seeds: bool = typer.Option(False, "--allow-any-seeds",
                                         help="accept seeds outside those ranges"),
    algo: str = typer.Option("factored-ddqn", help="factored-ddqn | ddqn"),
    variant: list[str] = typer.Option(["twin", "twin-plan", "matched"],
                                      help="twin | twin-plan | matched | twin-eps (repeat for "
                                      "several)"),
    cells: int = typer.Option(4, min=1, help="cells of the real network"),
    refresh_every: int = typer.Option(25, min=1, help="real windows between served-student "
                                      "refreshes (distil, export, load)"),
    smooth: int = typer.Option(25, min=1, help="trailing windows of the smoothed utility"),
    target: float = typer.Option(0.95, help="share of the new regime's best fixed split the "
                                 "served student must reach (0 < target <= 1.5); 1.0: level "
                                 "with it, which standing still rarely reaches"),
    distill_rounds: int = typer.Option(500, min=1, help="distillation steps of the "
                                       "pre-change student"),
    refresh_rounds: int = typer.Option(100, min=1, help="distillation steps per refresh "
                                       "(continuing from the served student)"),
    plan_rows: int = typer.Option(96, min=1, help="twin-plan: real states the twin rates "
                                  "every split at, per refresh"),
    plan_pre_rows: int = typer.Option(2000, min=0, help="twin-plan: at most this many of the "
                                      "newest pre-change real transitions join each twin refit, "
                                      "never more than the post-change ones (0: post-change "
                                      "data only)"),
    plan_futures: int = typer.Option(0, min=0, help="twin-plan: 0 rates a split by the twin's "
                                     "mean prediction; k by the mean of k sampled windows"),
    workers: int = typer.Option(2, min=1, help="parallel worker processes (one seed each)"),
    out: Path = typer.Option(Path("runs/adapt"), help="output directory"),
    resume: bool = typer.Option(False, help="skip seeds already in OUT/seeds.jsonl with the "
                                "same settings"),
    quick: bool = typer.Option(False, help="smoke run: paper:40,flash-crowd:60, 2 seeds, 2 "
                               "cells, tiny networks"),
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """Regime change mid-run: real windows until the served student reaches ``--target`` (95 %)
    of the new best fixed split, twin-enhanced against no-twin with matched updates and exploration
    (summary.json, adapt.csv, adapt.md, adapt.png)."""

    from slicetwin.core.protocol import SeedRangeError  # lazy: fast start
    from slicetwin.experiments.adapt import AdaptConfig, run_adapt  # lazy: torch

    try:
        if quick:
            cfg = AdaptConfig.quick(first_seed=first_seed, allow_any_seeds=allow_any_seeds,
                                    target=target)
        else:
            cfg = AdaptConfig(schedule=schedule, seeds=seeds, first_seed=first_seed,
                              allow_any_seeds=allow_any_seeds, algo=algo,
                              variants=tuple(variant), cells=cells, refresh_every=refresh_every,
                              smooth=smooth, target=target, distill_rounds=distill_rounds,
                              refresh_rounds=refresh_rounds, plan_rows=plan_rows,
                              plan_pre_rows=plan_pre_rows, plan_futures=plan_futures,
                              workers=workers)
    except SeedRangeError as e:
        raise typer.BadParameter(str(e), param_hint="--first-seed") from e
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    res = run_adapt(cfg, out, progress=progress, resume=resume)
    typer.echo(_json.dumps({
        "out": str(out), "seconds": res["total_wall_time_s"],
        "windows_to_target": {v: d["windows_to_target"] for v, d in res["variants"].items()},
        **{k: res[k] for k in ("twin_over_matched_windows", "twin_plan_over_matched_windows")
           if k in res}}))


@experiment_app.command("distill")
def experiment_distill(
    out: Path = typer.Option(Path("runs/distill"), help="output directory"),
    quick: bool = typer.Option(False, help="smoke run: 2 seeds, 2,000 rounds, small teachers"),
    seeds: int = typer.Option(None, min=1, help="teacher seeds per kind (default 3; quick 2)"),
    rounds: int = typer.Option(None, min=1, help="distillation rounds (default 10,000)"),
    mode: str = typer.Option("hard", help="hard (eq. 12, argmax labels) | soft (KL, temperature)"),
    teacher_interactions: int = typer.Option(None, min=200, help="real interactions per teacher"),
    teacher_hidden: str = typer.Option(None, help="teacher hidden layers, e.g. 256,256,128,128 "
                                       "(the default, the paper's; quick 64,64)"),
    eval_windows: int = _EVAL_WINDOWS,
    first_seed: int = _PAIR_FIRST_SEED,
    allow_any_seeds: bool = _PAIR_ANY_SEEDS,
    baselines: Path = _PAIR_BASELINES,
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """Fig. 8: distil DT / non-DT teachers into 4- and 16-unit ONNX students (CSV, PNG, JSON)."""

    import torch  # lazy: torch

    from slicetwin.experiments import distill as exp  # lazy: torch

    torch.set_num_threads(1)
    try:
        cfg = exp.DistillExperimentConfig(**(exp.QUICK if quick else {}))
        cfg = _override(cfg, seeds=seeds, rounds=rounds, mode=mode,
                        teacher_interactions=teacher_interactions, first_seed=first_seed,
                        eval_steps=eval_windows, teacher_hidden=_ints(teacher_hidden),
                        allow_any_seeds=allow_any_seeds,
                        baselines=str(baselines) if baselines else None)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    summary = exp.run(out, cfg, progress=progress)
    typer.echo(_json.dumps({"out": str(out), "seconds": summary["seconds"],
                            "groups": {k: {m: round(v[m]["mean"], 4) for m in v if "mean" in v[m]}
                                       for k, v in summary["groups"].items()},
                            "dt_minus_no_dt": {w: {k: (round(d["mean"], 4), d["ci95"])
                                                   for k, d in v.items()}
                                               for w, v in summary.get("dt_minus_no_dt",
                                                                       {}).items()}}))


@experiment_app.command("offline")
def experiment_offline(
    out: Path = typer.Option(Path("runs/offline"), help="output directory"),
    quick: bool = typer.Option(False, help="smoke run: 2 seeds, 2,000 transitions, 30 epochs"),
    seeds: int = typer.Option(None, min=1, help="seeds (default 5; quick 2)"),
    epochs: int = typer.Option(None, min=1, help="epochs over the dataset (default 200)"),
    dataset_rounds: int = typer.Option(None, min=1, help="dataset size in rounds of 200"),
    prox_weight: float = typer.Option(None, min=0.0, help="v of Algorithm 2"),
    init_from_reference: bool = typer.Option(None, "--init-from-reference/--random-init",
                                             help="offline+twin starts at theta_2"),
    twin_counterfactual_actions: int = typer.Option(
        None, min=0, help="K random actions tried in the twin at every state theta_2 visits "
                          "(default 32; 0 = off)"),
    twin_interactions: int = typer.Option(None, min=1, help="visited twin states for theta_2"),
    eval_windows: int = _EVAL_WINDOWS,
    distill_rounds: int = typer.Option(None, min=0, help="distillation steps of each final "
                                       "network's served ONNX student (default 2,000; 0 = none)"),
    first_seed: int = _PAIR_FIRST_SEED,
    allow_any_seeds: bool = _PAIR_ANY_SEEDS,
    baselines: Path = _PAIR_BASELINES,
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """Fig. 9: offline DRL with / without the twin (Algorithm 2) and discrete CQL."""

    import torch  # lazy: torch

    from slicetwin.experiments import offline as exp  # lazy: torch

    torch.set_num_threads(1)
    try:
        cfg = exp.OfflineExperimentConfig(**(exp.QUICK if quick else {}))
        cfg = _override(cfg, seeds=seeds, epochs=epochs, dataset_rounds=dataset_rounds,
                        prox_weight=prox_weight, init_from_reference=init_from_reference,
                        twin_counterfactual_actions=twin_counterfactual_actions,
                        twin_interactions=twin_interactions, distill_rounds=distill_rounds,
                        eval_steps=eval_windows,
                        first_seed=first_seed, allow_any_seeds=allow_any_seeds,
                        baselines=str(baselines) if baselines else None)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    summary = exp.run(out, cfg, progress=progress)
    brief = {k: {v: (round(d["mean"], 4), d["ci95"]) for v, d in summary[k].items()}
             for k in ("utility", "served_utility")}
    typer.echo(_json.dumps({"out": str(out), "seconds": summary["seconds"], **brief,
                            "twin_minus_no_twin": summary.get("twin_minus_no_twin"),
                            "served_twin_minus_no_twin":
                                summary.get("served_twin_minus_no_twin")}))


@experiment_app.command("landscape")
def experiment_landscape(
    out: Path = typer.Option(Path("runs/landscape"), help="output directory"),
    quick: bool = typer.Option(False, help="smoke run: 2 seeds, small agents"),
    seeds: int = typer.Option(None, min=1, help="seeds per kind (default 3; quick 2)"),
    interactions: int = typer.Option(None, min=200, help="real interactions per agent"),
    progress: bool = typer.Option(True, help="progress bars"),
) -> None:
    """Fig. 7: loss landscapes (eq. 11 and filter-normalised) and Hessian sharpness, DT vs not."""

    import torch  # lazy: torch

    from slicetwin.experiments import landscape as exp  # lazy: torch

    torch.set_num_threads(1)
    cfg = exp.LandscapeExperimentConfig(**(exp.QUICK if quick else {}))
    cfg = _override(cfg, seeds=seeds, interactions=interactions)
    summary = exp.run(out, cfg, progress=progress)
    typer.echo(_json.dumps({"out": str(out), "seconds": summary["seconds"],
                            "kinds": {k: {m: round(v[m]["mean"], 5) for m in v}
                                      for k, v in summary["kinds"].items()}}))


# ---------------------------------------------------------------- trainer worker + hot-swap bench
# (owned by the trainer-worker part, docs/trainer_worker.md)

@app.command("trainer")
def trainer_cmd(
    redis_url: str = typer.Option(None, help="Redis of stream + registry (env SLICETWIN_REDIS_URL)"),
    data_dir: str = typer.Option(None, help="dataset + checkpoint dir (env SLICETWIN_DATA_DIR)"),
    twin_url: str = typer.Option(None, help="twin service URL (env SLICETWIN_TWIN_URL)"),
    max_cycles: int = typer.Option(None, help="stop after N cycles (env SLICETWIN_MAX_CYCLES; 0 = "
                                   "forever)"),
    sim_gate: bool = typer.Option(None, "--sim-gate/--no-sim-gate",
                                  help="judge candidates on held-out simulator seeds "
                                  "(default: when SLICETWIN_SIM_PROFILE is set; else on "
                                  "held-out real transitions)"),
    gate_margin: float = typer.Option(None, help="env SLICETWIN_GATE_MARGIN"),
    metrics_port: int = typer.Option(None, min=0, max=65535, help="serve Prometheus /metrics and "
                                     "/healthz on this port (env SLICETWIN_METRICS_PORT)"),
    log_level: str = typer.Option("info", help="logging level"),
) -> None:
    """Run the trainer worker: stream -> dataset -> twin -> agents -> student -> gate -> registry.

    Settings: SLICETWIN_* env vars (trainer/worker/settings.py). One JSON line per cycle on stdout.
    """

    for name, val in (("REDIS_URL", redis_url), ("DATA_DIR", data_dir), ("TWIN_URL", twin_url),
                      ("MAX_CYCLES", max_cycles), ("SIM_GATE", sim_gate),
                      ("GATE_MARGIN", gate_margin), ("METRICS_PORT", metrics_port)):
        if val is not None:
            os.environ[f"SLICETWIN_{name}"] = str(val).lower() if isinstance(val, bool) else str(val)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    from pydantic import ValidationError  # lazy: fast start

    from slicetwin.platform.settings_errors import settings_error  # lazy: fast start
    from trainer.worker import TrainerWorker, WorkerSettings  # lazy: torch

    try:
        settings = WorkerSettings()
    except ValidationError as e:  # a clear start-up error naming the variable
        typer.echo(settings_error(e), err=True)
        raise typer.Exit(2) from None
    if not settings.redis_url:
        raise typer.BadParameter("set --redis-url or SLICETWIN_REDIS_URL (the stream and the "
                                 "registry live there); the embedded demo runs the worker in-process")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def emit(res) -> None:
        typer.echo(_json.dumps(res.to_dict(), default=float), nl=True)

    metrics = server = None
    if settings.metrics_port is not None:
        from trainer.worker.metrics import TrainerMetrics, serve  # lazy: torch

        metrics = TrainerMetrics()
    worker = TrainerWorker(settings, stop_event=stop, on_cycle=emit, metrics=metrics)
    if metrics is not None:  # before torch loads: /healthz answers within a second of start
        server = serve(metrics, settings.metrics_port, settings.metrics_host, worker.health)
        logging.getLogger("slicetwin.trainer").info(
            "metrics on http://%s:%d/metrics", settings.metrics_host, server.server_address[1])
    try:
        worker.run()
    finally:
        worker.close()
        if server is not None:
            server.shutdown()
            server.server_close()


@bench_app.command("hotswap")
def bench_hotswap_cmd(
    swaps: int = typer.Option(20, min=1, help="promotions to time"),
    cells: int = typer.Option(2, min=1, help="cells the client keeps reporting for"),
    redis_url: str = typer.Option(None, help="use this Redis (default: start a private one)"),
) -> None:
    """Publish -> serving: promote trained-format students while a client keeps posting reports to
    a real controller process; time event -> first answer with the new version. One JSON line."""

    from slicetwin.ops.bench.hotswap import run_hotswap_bench  # lazy: torch

    typer.echo(_json.dumps(run_hotswap_bench(swaps=swaps, cells=cells, redis_url=redis_url)))


@bench_app.command("ingest")
def bench_ingest_cmd(
    entries: int = typer.Option(20_000, min=1, help="transitions in the stream"),
    read_count: int = typer.Option(2000, min=1, help="entries per XREADGROUP / chunk"),
    redis: str = typer.Option("single", help="single and/or cluster (comma-separated): a "
                              "private redis-server, or a private 3-master Redis Cluster "
                              "(6 stream shards)"),
) -> None:
    """Stream -> durable dataset drain rate of the trainer worker; one JSON line per backend."""

    from slicetwin.ops.bench.ingest import run_ingest_bench  # lazy: torch

    for backend in [b.strip() for b in redis.split(",") if b.strip()]:
        typer.echo(_json.dumps(run_ingest_bench(entries=entries, read_count=read_count,
                                                redis=backend)))
