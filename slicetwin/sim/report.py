"""Files of a yardstick run: ``summary.json``, a markdown table and a bar plot per profile."""

from __future__ import annotations

import json
from pathlib import Path

from slicetwin.sim.yardstick import REFERENCE, markdown_table

COLOURS = {"baseline": "#8c8c8c", "ceiling": "#1f4e79", "learned": "#d95f02",
           "served": "#e6ab02"}


def write_report(out: Path, result: dict, stem: str = "baselines") -> list[Path]:
    """Write ``summary.json``, ``<stem>.md`` and ``<stem>_<profile>.png`` (when matplotlib is
    installed) into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "summary.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=2))
    paths[1].write_text("\n".join(markdown_table(s) for s in result["profiles"].values()))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the torch-free install has no matplotlib: tables only
        return paths
    for name, s in result["profiles"].items():
        rows = sorted(s["policies"].items(), key=lambda kv: kv[1]["mean"])
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.5))
        y = range(len(rows))
        ax.barh(list(y), [r["mean"] for _, r in rows],
                xerr=[r["ci95"] or 0 for _, r in rows],
                color=[COLOURS.get(r["kind"], "#999") for _, r in rows], capsize=3)
        ax.set_yticks(list(y), [k for k, _ in rows])
        ref = s["policies"][REFERENCE]["mean"]
        ax.axvline(ref, color="k", lw=0.8, ls="--", label="best fixed (hindsight)")
        lo = min(r["mean"] - (r["ci95"] or 0) for _, r in rows)
        ax.set_xlim(max(0.0, lo - 0.1), None)
        ax.set_xlabel(f"mean utility per cell-window, report seeds "
                      f"{s['protocol']['report_seeds'][0]}..{s['protocol']['report_seeds'][-1]}"
                      f" (95 % CI)")
        ax.set_title(f"{name}: oracle {s['margins']['oracle_over_best_fixed_hindsight']:+.1%}, "
                     f"planner {s['margins']['planner_over_best_fixed_hindsight']:+.1%} over "
                     f"best fixed (hindsight)")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        p = out / f"{stem}_{name.replace(':', '_').replace(',', '_')}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
