"""``slicetwin experiment compare``: learned policies against the yardstick, on report traffic.

Per profile:

1. the yardstick's baselines (``slicetwin.sim.yardstick``) on report seeds 10000 + i;
2. every learned variant (DQN, DDQN, Dueling GAN-DDQN; plain, twin-enhanced (Algorithm 1),
   the same-updates baseline ``baseline-matched`` and the same-exploration baseline
   ``baseline-twin-eps``) trained on training seed i of the same profile (``online._train``,
   the online experiment's runs), then distilled into the 16-unit student, exported to ONNX and
   loaded with the controller's runner;
3. the teacher (greedy Q-network) and the served student measured on report seed 10000 + i, the
   same traffic as every baseline; training seed i and report seed 10000 + i form pair i of the
   per-seed statistics.

Nothing here is tuned on report seeds: the agents' and Algorithm 1's settings are the online
experiment's defaults, chosen by earlier probes on seeds < 10000.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slicetwin.core import protocol
from slicetwin.experiments.distill import write_csv
from slicetwin.experiments.online import (
    OnlineExperimentConfig,
    ServedPolicy,
    _train,
    init_torch_worker,
    make_env,
    serve,
    specs,
)
from slicetwin.sim.baselines import run_policy
from slicetwin.sim.config import SimConfig
from slicetwin.sim.report import write_report
from slicetwin.sim.yardstick import (
    PolicyEval,
    YardstickConfig,
    evaluate_baselines,
    summarise,
)
from trainer.distill import pool_states

ALGOS = ("dqn", "ddqn", "gan-ddqn")  # the default grid
KNOWN_ALGOS = (*ALGOS, "factored-ddqn")
VARIANTS = ("baseline", "twin", "baseline-matched", "baseline-twin-eps")


@dataclass
class CompareConfig:
    profiles: tuple[str, ...] = ("paper", "diurnal", "flash-crowd", "hetero")
    seeds: int = 5  # pairs (training seed i, report seed 10000 + i)
    algos: tuple[str, ...] = ALGOS
    variants: tuple[str, ...] = VARIANTS
    rounds: int = 10  # rounds of 200 real interactions per learned run
    student_hidden: int = 16
    distill_rounds: int = 2000
    workers: int = 2
    first_report_seed: int = protocol.RANGES["report"][0]
    allow_any_seeds: bool = False
    yardstick: dict = field(default_factory=lambda: {
        "windows": 150, "cells": 4, "train_seeds": 3, "train_windows": 150,
        "planner_futures": 8})
    online: dict = field(default_factory=dict)  # OnlineExperimentConfig overrides
    baselines_from: tuple[str, ...] = ()  # `slicetwin baselines --out` folders to reuse

    def __post_init__(self) -> None:
        bad = [a for a in self.algos if a not in KNOWN_ALGOS]
        if bad:
            raise ValueError(f"unknown algo(s) {bad}; choose from {list(KNOWN_ALGOS)}")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
        if self.seeds < 1 or self.rounds < 1:
            raise ValueError("seeds and rounds must be >= 1")
        for p in self.profiles:
            SimConfig.from_profile(p)  # raises a ValueError naming the choices
        protocol.check_seeds("report", self.report_seeds, self.allow_any_seeds)

    @property
    def report_seeds(self) -> list[int]:
        return list(range(self.first_report_seed, self.first_report_seed + self.seeds))

    @property
    def train_seeds(self) -> list[int]:
        return protocol.seeds_for("train", self.seeds)

    def yardstick_config(self) -> YardstickConfig:
        return YardstickConfig(report_seeds=self.seeds, first_report_seed=self.first_report_seed,
                               allow_any_seeds=self.allow_any_seeds, **self.yardstick)

    @classmethod
    def quick(cls, **kw) -> CompareConfig:
        """Smoke run (the fast test suite): one profile, two algorithms, tiny networks."""
        base = dict(profiles=("diurnal",), seeds=2, algos=("ddqn", "gan-ddqn"),
                    variants=("baseline", "twin"), rounds=1, distill_rounds=100, workers=1,
                    yardstick={"windows": 12, "cells": 2, "train_seeds": 1,
                               "train_windows": 12, "planner_futures": 2},  # as baselines --quick
                    online={"quick": True})
        base.update(kw)
        return cls(**base)


@dataclass
class LearnedRun:
    profile: str
    algo: str
    variant: str
    index: int  # pair index: training seed train_seeds[i], report seed report_seeds[i]
    train_seed: int
    report_seed: int
    cfg: CompareConfig

    @property
    def name(self) -> str:
        return f"{self.profile}/{self.algo}_{self.variant}_seed{self.train_seed}"


class GreedyPolicy:
    """``act(sim, state)`` of a trained agent's greedy Q-network (the teacher)."""

    def __init__(self, agent):
        self.agent = agent

    def act(self, sim, state: np.ndarray) -> np.ndarray:
        return np.asarray(self.agent.greedy(np.asarray(state, np.float32)), np.int64)


def online_config(run: LearnedRun):
    over = dict(run.cfg.online)
    quick = over.pop("quick", False)
    make = OnlineExperimentConfig.quick if quick else OnlineExperimentConfig
    return make(algos=(run.algo,), twin=True, seeds=1, first_seed=run.train_seed,
                rounds=run.cfg.rounds, sim_profile=run.profile, eval_windows=0,
                oracle_windows=0, curve_windows=1, curve_every=10**9, **over)


def learned_run(run: LearnedRun, out_dir: str) -> dict:
    """Train one variant on its training seed, distil, export, and measure teacher and served
    student on its report seed."""
    import torch  # lazy: torch


    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ocfg = online_config(run)
    spec = next(s for s in specs(ocfg) if s.variant == run.variant)
    real = make_env(ocfg, run.train_seed)
    trained = _train(spec, real)
    agent = trained["agent"]
    sim_cfg = SimConfig.from_profile(run.profile)
    yc = run.cfg.yardstick_config()
    ev = dict(config=sim_cfg, windows=yc.windows, cells=yc.cells, seed=run.report_seed)
    teacher_u = run_policy(GreedyPolicy(agent), **ev).mean_utility
    path = Path(out_dir) / "models" / f"{run.name.replace('/', '_')}.onnx"
    student, agreement = serve(agent.q, pool_states(real.transitions()), path, sim_cfg.n_units,
                               run.cfg.student_hidden, run.cfg.distill_rounds, run.train_seed,
                               sim_cfg.utility, {"profile": run.profile})
    student_u = run_policy(ServedPolicy(student), **ev).mean_utility
    info = trained["info"]
    return {"profile": run.profile, "algo": run.algo, "variant": run.variant,
            "index": run.index, "train_seed": run.train_seed, "report_seed": run.report_seed,
            "teacher_utility": teacher_u, "student_utility": student_u,
            "agreement": round(agreement, 4),
            "grad_steps_per_real": round(info["grad_steps"] / max(real.interactions, 1), 4),
            "real_interactions": real.interactions, "onnx": path.name,
            "wall_time_s": round(time.perf_counter() - t0, 1)}


def baselines_job(profile: str, yc: YardstickConfig) -> tuple[str, dict[str, PolicyEval]]:
    return profile, evaluate_baselines(SimConfig.from_profile(profile), yc)


def reuse_baselines(path: Path, profile: str, yc: YardstickConfig
                    ) -> dict[str, PolicyEval] | None:
    """The baselines of ``profile`` from a ``slicetwin baselines --out`` summary (the folder or
    its summary.json; an ``experiment compare`` summary too), if it was measured under the same
    protocol (seeds, windows, cells, fits, planner); else None."""
    f = Path(path)
    f = f if f.is_file() else f / "summary.json"
    if not f.exists():
        return None
    s = json.loads(f.read_text()).get("profiles", {}).get(profile)
    if s is None or s.get("config") != asdict(yc):
        return None
    keep = ("units", "weights", "offsets", "futures", "ms_per_decision", "copies_per_decision",
            "search", "distinct_splits")
    return {k: PolicyEval(k, v["per_seed"], v["kind"], {x: v[x] for x in keep if x in v})
            for k, v in s["policies"].items() if v["kind"] in ("baseline", "ceiling")}


def learned_evals(rows: list[dict], profile: str, cfg: CompareConfig) -> dict[str, PolicyEval]:
    """Per (algo, variant): the teacher's and the served student's per-report-seed utility."""
    out: dict[str, PolicyEval] = {}
    for algo in cfg.algos:
        for variant in cfg.variants:
            sel = sorted((r for r in rows if r["profile"] == profile and r["algo"] == algo
                          and r["variant"] == variant), key=lambda r: r["index"])
            if len(sel) != cfg.seeds:
                continue
            label = f"{algo}/{variant}"
            info = {"grad_steps_per_real": float(np.mean([r["grad_steps_per_real"] for r in sel])),
                    "agreement": float(np.mean([r["agreement"] for r in sel]))}
            out[f"{label} (student, served)"] = PolicyEval(
                f"{label} (student, served)", [r["student_utility"] for r in sel], "served", info)
            out[f"{label} (teacher)"] = PolicyEval(
                f"{label} (teacher)", [r["teacher_utility"] for r in sel], "learned", info)
    return out


def _record(journal: Path, row: dict) -> dict:
    with open(journal, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def _finished(journal: Path, cfg: CompareConfig) -> list[dict]:
    """Rows of an earlier, interrupted run with the same configuration (``--resume``)."""
    if not journal.exists():
        return []
    rows = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    ok = set(cfg.profiles), set(cfg.algos), set(cfg.variants)
    return [r for r in rows if r["profile"] in ok[0] and r["algo"] in ok[1]
            and r["variant"] in ok[2] and r["index"] < cfg.seeds
            and r["train_seed"] == cfg.train_seeds[r["index"]]
            and r["report_seed"] == cfg.report_seeds[r["index"]]]


def run_compare(cfg: CompareConfig, out: Path, progress: bool = True,
                resume: bool = False, report_only: bool = False) -> dict:
    """Run every baseline and learned run (``cfg.workers`` processes), then write
    ``summary.json``, ``compare.md``, ``runs.csv`` and a bar plot per profile. Each finished
    learned run is appended to ``runs.jsonl``; ``resume`` skips the runs found there;
    ``report_only`` trains nothing and summarises the journal (variants missing a seed are left
    out of the table)."""


    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # variant by variant across profiles: an interrupted run leaves whole variants everywhere
    runs = [LearnedRun(p, a, v, i, ts, rs, cfg)
            for a in cfg.algos for v in cfg.variants for p in cfg.profiles
            for i, (ts, rs) in enumerate(zip(cfg.train_seeds, cfg.report_seeds, strict=True))]
    t0 = time.perf_counter()
    journal = out / "runs.jsonl"  # one line per finished learned run: a crash loses nothing
    rows = _finished(journal, cfg) if resume or report_only else []
    done = {(r["profile"], r["algo"], r["variant"], r["index"]) for r in rows}
    runs = [] if report_only else [
        r for r in runs if (r.profile, r.algo, r.variant, r.index) not in done]
    if not (resume or report_only):
        journal.write_text("")
    bar = tqdm(total=len(runs), desc="experiment compare", disable=not progress)
    if cfg.workers <= 1:
        for r in runs:
            bar.set_postfix_str(r.name)
            rows.append(_record(journal, learned_run(r, str(out))))
            bar.update(1)
    else:
        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn"),
                                 initializer=init_torch_worker) as ex:
            futs = {ex.submit(learned_run, r, str(out)): r for r in runs}
            for f in as_completed(futs):
                rows.append(_record(journal, f.result()))
                bar.set_postfix_str(futs[f].name)
                bar.update(1)
    bar.close()
    # baselines last, so a `slicetwin baselines` run started beside this one can be reused
    base: dict[str, dict[str, PolicyEval]] = {}
    reused = []
    for p in cfg.profiles:
        found = [x for x in (reuse_baselines(Path(d), p, cfg.yardstick_config())
                 for d in cfg.baselines_from) if x]
        if found:
            reused.append(p)
        base[p] = found[0] if found else baselines_job(p, cfg.yardstick_config())[1]
    write_csv(out / "runs.csv", sorted(rows, key=lambda r: (r["profile"], r["algo"],
                                                            r["variant"], r["index"])))
    yc = cfg.yardstick_config()
    result: dict = {"experiment": "compare", "profiles": {}}
    for p in cfg.profiles:
        evals = {**base[p], **learned_evals(rows, p, cfg)}
        result["profiles"][p] = summarise(evals, SimConfig.from_profile(p), yc)
        result["profiles"][p]["best_served"] = best_served(result["profiles"][p])
    result["config"] = asdict(cfg)
    result["baselines_reused"] = reused
    result["train_seeds"] = cfg.train_seeds
    result["total_wall_time_s"] = round(time.perf_counter() - t0, 1)
    result["learned_run_wall_time_s"] = round(sum(r["wall_time_s"] for r in rows), 1)
    result["files"] = [p.name for p in write_report(out, result, stem="compare")]
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    return result


def best_served(summary: dict) -> dict | None:
    """The served student with the highest mean, and its margin over best fixed (hindsight)."""
    served = {k: v for k, v in summary["policies"].items() if v["kind"] == "served"}
    if not served:
        return None
    name, row = max(served.items(), key=lambda kv: kv[1]["mean"])
    d = row["paired_diff_vs_best_fixed_hindsight"]
    return {"policy": name, "mean": row["mean"], "ci95": row["ci95"],
            "ratio_to_best_fixed_hindsight": row["ratio_to_best_fixed_hindsight"],
            "ratio_to_planner": row["ratio_to_planner"],
            "paired_diff_vs_best_fixed_hindsight": d,
            "beats_best_fixed_hindsight": bool(d["ci95"] is not None and d["mean"] - d["ci95"] > 0)}


def journal_from_summary(summary: dict, source: str) -> list[dict]:
    """Journal rows (``runs.jsonl``) rebuilt from a compare ``summary.json``: run directories
    are not committed, their summaries are, and ``--resume`` then runs only the missing cells
    of the grid. Utilities are as the summary rounded them (5 decimals); agreement and gradient
    steps per real interaction are the variant's means; wall time is unknown (0)."""
    cfg = summary["config"]
    train = summary["train_seeds"]
    report = [cfg["first_report_seed"] + i for i in range(cfg["seeds"])]
    served_tag, teacher_tag = " (student, served)", " (teacher)"
    rows = []
    for profile, block in summary["profiles"].items():
        pols = block["policies"]
        for name, served in pols.items():
            if not name.endswith(served_tag):
                continue
            label = name[: -len(served_tag)]
            algo, variant = label.split("/")
            teacher = pols[label + teacher_tag]
            for i, (s_u, t_u) in enumerate(zip(served["per_seed"], teacher["per_seed"],
                                               strict=True)):
                rows.append({"profile": profile, "algo": algo, "variant": variant, "index": i,
                             "train_seed": train[i], "report_seed": report[i],
                             "teacher_utility": t_u, "student_utility": s_u,
                             "agreement": served.get("agreement"),
                             "grad_steps_per_real": served.get("grad_steps_per_real"),
                             "wall_time_s": 0.0, "rebuilt_from": source})
    return rows
