"""Probe profile variants for room to learn: oracle and planner over best-fixed-in-hindsight.

Runs on *tuning* seeds (slicetwin.core.protocol: 1000-1999), never report seeds, so the settings it
picks can be reported on report seeds afterwards without selection bias. One JSON line per
variant. Usage:

    .venv/bin/python scripts/calibrate_profiles.py --variant diurnal --variant diurnal-r200 \
        --seeds 2 --cells 8 --windows 150 [--planner]
    .venv/bin/python scripts/calibrate_profiles.py --list
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from slicetwin.core.protocol import seeds_for
from slicetwin.sim.baselines import OraclePolicy, PlannerPolicy, best_fixed, run_policy
from slicetwin.sim.config import DiurnalLoad, FlashCrowds, SimConfig


def _diurnal(**load) -> callable:
    return lambda **kw: SimConfig.from_profile("diurnal", diurnal=DiurnalLoad(**load), **kw)


def _flash(base=None, **crowd) -> callable:
    extra = {} if base is None else {"base_load": base}
    return lambda **kw: SimConfig.from_profile("flash-crowd", flash=FlashCrowds(**crowd),
                                               **extra, **kw)


def _hetero(**kw0) -> callable:
    return lambda **kw: SimConfig.from_profile("hetero", **kw0, **kw)


VARIANTS: dict[str, callable] = {
    "diurnal": _diurnal(),
    "diurnal-noise0.1": _diurnal(noise_sd=0.1),
    "flash-crowd": _flash(),
    "flash-rate1/30": _flash(rate=1 / 30),
    "flash-mult2-4": _flash(mult_min=2.0, mult_max=4.0),
    "flash-base0.15/0.1-mult3-5": _flash(base=(1.0, 0.15, 0.1), mult_min=3.0, mult_max=5.0),
    "flash-dur30-120": _flash(dur_min=30, dur_max=120),
    "flash-base0.1/0.03": _flash(base=(1.0, 0.1, 0.03)),
    "flash-base0.1/0.03-rate1/30": _flash(base=(1.0, 0.1, 0.03), rate=1 / 30),
    "flash-base0.15/0.05-rate1/30": _flash(base=(1.0, 0.15, 0.05), rate=1 / 30),
    "hetero": _hetero(),
    "hetero-r40-300": _hetero(radius_range_m=(40.0, 300.0)),
    "hetero-k1-r40-300": _hetero(mix_concentration=1.0, radius_range_m=(40.0, 300.0)),
    "hetero-k0.5-r40-150": _hetero(mix_concentration=0.5, radius_range_m=(40.0, 150.0)),
    "hetero-k0.5": _hetero(mix_concentration=0.5),
    "hetero-k1": _hetero(mix_concentration=1.0),
    "hetero-k0.5-r40-300": _hetero(mix_concentration=0.5, radius_range_m=(40.0, 300.0)),
    "hetero-k1-video0.5": _hetero(mix_concentration=1.0, base_load=(1.0, 0.5, 1.0)),
}


def parametric(name: str) -> callable:
    """``hetero:k=2;v=0.5;u=1;r=40-300`` or ``flash:vb=0.1;ub=0.03;rate=30;mult=3-6;dur=30-300``
    or ``diurnal:noise=0.1;r=40``: ad-hoc variants without editing VARIANTS."""
    kind, _, spec = name.partition(":")
    kv = dict(item.split("=") for item in spec.split(";") if item)
    rng = lambda x: tuple(float(y) for y in x.split("-"))  # noqa: E731
    if kind == "hetero":
        kw = {"mix_concentration": float(kv.get("k", 2.0)),
              "base_load": (1.0, float(kv.get("v", 0.3)), float(kv.get("u", 1.0)))}
        if "r" in kv:
            kw["radius_range_m"] = rng(kv["r"])
        return _hetero(**kw)
    if kind == "flash":
        crowd = {}
        if "rate" in kv:
            crowd["rate"] = 1 / float(kv["rate"])
        if "mult" in kv:
            crowd["mult_min"], crowd["mult_max"] = rng(kv["mult"])
        if "dur" in kv:
            lo, hi = rng(kv["dur"])
            crowd["dur_min"], crowd["dur_max"] = int(lo), int(hi)
        if "w" in kv:
            crowd["slice_weights"] = rng(kv["w"])
        return _flash(base=(1.0, float(kv.get("vb", 0.2)), float(kv.get("ub", 0.1))), **crowd)
    if kind == "diurnal":
        load = {"noise_sd": float(kv.get("noise", 0.25))}
        extra = {"radius_m": float(kv["r"])} if "r" in kv else {}
        return lambda **kw: SimConfig.from_profile("diurnal", diurnal=DiurnalLoad(**load),
                                                   **extra, **kw)
    raise ValueError(f"unknown variant {name!r}")


def probe(name: str, seeds: list[int], cells: int, windows: int, planner: bool,
          radius: float | None) -> dict:
    kw = {} if radius is None else {"radius_m": radius}
    cfg = (VARIANTS[name] if name in VARIANTS else parametric(name))(**kw)
    t0 = time.perf_counter()
    _, fixed = best_fixed(cfg, windows, cells, seeds)
    oracle = np.mean([run_policy(OraclePolicy("full"), cfg, windows, cells, s).mean_utility
                      for s in seeds])
    row = {"variant": name, "radius_m": radius, "seeds": seeds, "cells": cells,
           "windows": windows, "best_fixed_hindsight": round(fixed, 4),
           "oracle": round(float(oracle), 4),
           "oracle_margin_pct": round(100 * (oracle / fixed - 1), 2)}
    if planner:
        p = np.mean([run_policy(PlannerPolicy(8, seed=s), cfg, windows, cells, s).mean_utility
                     for s in seeds])
        row.update(planner=round(float(p), 4), planner_margin_pct=round(100 * (p / fixed - 1), 2))
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--windows", type=int, default=150)
    ap.add_argument("--planner", action="store_true", help="also the 8-future planner (slow)")
    ap.add_argument("--radius", type=float, default=None, help="override radius_m")
    a = ap.parse_args()
    if a.list:
        print("\n".join(VARIANTS))
        return
    seeds = seeds_for("tune", a.seeds)
    for name in a.variant or list(VARIANTS):
        print(json.dumps(probe(name, seeds, a.cells, a.windows, a.planner, a.radius)), flush=True)


if __name__ == "__main__":
    main()
