"""Probe one learned run on TUNING traffic: training seed i, evaluation seed 1000 + i (the
protocol's probe range), so settings chosen from it never touch report seeds. One JSON line.

    .venv/bin/python scripts/probe_learned.py ALGO VARIANT PROFILE INDEX ['{"train_every": 0.5}'] [ROUNDS]

The agent overrides are merged over the online experiment's defaults (eps_decay_steps 400,
gamma 0.5). Results of the factored-DDQN probe: docs/figures/factored_probe_tuning_seeds.jsonl.
"""

from __future__ import annotations

import json
import sys

from slicetwin.experiments.compare import CompareConfig, LearnedRun, learned_run


def main() -> None:
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    algo, variant, profile, idx = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    agent = {"eps_decay_steps": 400, "gamma": 0.5,
             **(json.loads(sys.argv[5]) if len(sys.argv) > 5 else {})}
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 10
    cfg = CompareConfig(profiles=(profile,), seeds=5, algos=(algo,), rounds=rounds, workers=1,
                        first_report_seed=1000, allow_any_seeds=True, online={"agent": agent})
    run = LearnedRun(profile, algo, variant, idx, cfg.train_seeds[idx], cfg.report_seeds[idx],
                     cfg)
    row = learned_run(run, "runs/probe")
    print(json.dumps({**row, "agent": agent, "rounds": rounds}), flush=True)


if __name__ == "__main__":
    main()
