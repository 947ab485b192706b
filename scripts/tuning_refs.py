"""Reference utilities on TUNING traffic (seeds 1000-1004, 4 cells x 150 windows) for probes:
best fixed split in hindsight over those seeds, and demand-proportional, per seed. One JSON line.

    .venv/bin/python scripts/tuning_refs.py diurnal
"""

from __future__ import annotations

import json
import sys

from slicetwin.core.protocol import seeds_for
from slicetwin.sim import SimConfig
from slicetwin.sim.baselines import DemandProportionalPolicy, FixedPolicy, best_fixed, run_policy


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    profile = sys.argv[1]
    cfg = SimConfig.from_profile(profile)
    seeds = seeds_for("tune", 5)
    a, _ = best_fixed(cfg, 150, 4, seeds)
    fixed = FixedPolicy(cfg.codec.decode(a), cfg.codec)
    prop = DemandProportionalPolicy(cfg)
    print(json.dumps({
        "profile": profile, "seeds": seeds, "best_fixed_units": cfg.codec.decode(a).tolist(),
        "best_fixed_hindsight": [run_policy(fixed, cfg, 150, 4, s).mean_utility for s in seeds],
        "proportional": [run_policy(prop, cfg, 150, 4, s).mean_utility for s in seeds]}))


if __name__ == "__main__":
    main()
