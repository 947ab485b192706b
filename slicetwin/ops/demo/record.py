"""What the demo saw, window by window, and what it writes at the end.

A window's KPIs are the result of the allocation *in force* during it, which the controller chose
at the previous window; so each window is attributed to the policy version (and the explored /
fallback flags) of the answers that set its allocations. ``utility_policy`` averages only the
cells whose allocation came from the policy itself (not ε-exploration, not the fallback): that is
the figure compared before and after a swap.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slicetwin.core.slices import SLICE_NAMES


@dataclass
class WindowRow:
    k: int  # window number since the start of the demo
    t: float  # seconds since the loop started (end of the window's requests)
    utility: float  # mean over all cells
    utility_policy: float  # mean over cells whose allocation came from the policy (NaN if none)
    ssr: list[float]  # per slice, mean over cells
    share: list[float]  # per slice, mean share of the carrier in force
    version: str  # policy version of most allocations in force
    requests: int = 0
    failed: int = 0
    fallback: int = 0  # answers of this window flagged fallback
    explored: int = 0  # answers of this window flagged explored
    baselines: dict = field(default_factory=dict)  # shadow baseline -> its utility, all cells
    latency_ms_p50: float = float("nan")
    latency_ms_max: float = float("nan")


@dataclass
class SwapEvent:
    window: int  # first window answered by the new version
    t: float  # seconds since the loop started
    old: str
    new: str
    promoted_t: float | None = None  # when the trainer promoted it (seconds since loop start)
    cycle: dict = field(default_factory=dict)  # the trainer cycle's figures for this version


def _nanmean(x) -> float:
    a = np.asarray(x, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def _clean(x):
    """JSON-safe: NaN/inf -> None, numpy -> python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class Recorder:
    def __init__(self, cells: int):
        self.cells = cells
        self.rows: list[WindowRow] = []
        self.swaps: list[SwapEvent] = []
        self.latencies_ms: list[float] = []
        self.requests = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.invariant_violations = 0
        self.decisions = 0
        self.fallback_decisions = 0
        self.explored_decisions = 0
        self.answer_versions: Counter[str] = Counter()
        self.serving: str | None = None  # the latest version seen in answers (not fallback)
        # shadow best fixed split in hindsight, its per-window utility and the served utility of
        # the same cells (for the plot)
        self.best_fixed: tuple[list[int], np.ndarray, np.ndarray] | None = None
        self.shadow_summary: dict | None = None  # summary.json's shadow_baselines (plot caption)

    # ------------------------------------------------------------------ feeding
    def note_answer_version(self, version: str, k: int, t: float) -> SwapEvent | None:
        """Track the version answers come from; returns a SwapEvent when it changes."""
        self.answer_versions[version] += 1
        if version == self.serving:
            return None
        if version == "fallback":  # the heuristic at a cold start, or an inference-error answer
            if self.serving is None:
                self.serving = version  # a cold start: its first promotion is a hot-swap too
            return None
        ev = None
        if self.serving is not None:
            ev = SwapEvent(window=k, t=t, old=self.serving, new=version)
            self.swaps.append(ev)
        self.serving = version
        return ev

    def add(self, row: WindowRow) -> None:
        self.rows.append(row)

    # ------------------------------------------------------------------ figures
    def recent(self, n: int = 10) -> dict:
        rows = self.rows[-n:]
        if not rows:
            return {}
        return {"utility": _nanmean([r.utility for r in rows]),
                "utility_policy": _nanmean([r.utility_policy for r in rows]),
                "ssr": np.nanmean([r.ssr for r in rows], axis=0).tolist(),
                "share": np.nanmean([r.share for r in rows], axis=0).tolist()}

    def latency(self, last: int | None = None) -> dict:
        lat = self.latencies_ms[-last:] if last else self.latencies_ms
        if not lat:
            return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
        a = np.asarray(lat)
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                "max": float(a.max())}

    def segments(self) -> list[dict]:
        """Consecutive runs of windows whose allocations came from one version."""
        segs: list[dict] = []
        for r in self.rows:
            if not segs or segs[-1]["version"] != r.version:
                segs.append({"version": r.version, "rows": []})
            segs[-1]["rows"].append(r)
        out = []
        for s in segs:
            rows = s["rows"]
            out.append({"version": s["version"], "from_window": rows[0].k,
                        "to_window": rows[-1].k, "windows": len(rows),
                        "from_t_s": rows[0].t, "to_t_s": rows[-1].t,
                        "utility_policy": _nanmean([r.utility_policy for r in rows]),
                        "utility": _nanmean([r.utility for r in rows]),
                        "ssr": dict(zip(SLICE_NAMES, np.nanmean([r.ssr for r in rows],
                                                                axis=0).tolist(), strict=True)),
                        "share": dict(zip(SLICE_NAMES, np.nanmean([r.share for r in rows],
                                                                  axis=0).tolist(), strict=True))})
        return out

    def swap_figures(self) -> list[dict]:
        """Each swap with the mean utility/SSR of the old version's and new version's windows
        around it (the whole segment each version served, up to the next swap)."""
        segs = self.segments()
        out = []
        for ev in self.swaps:
            before = next((s for s in reversed(segs) if s["version"] == ev.old
                           and s["from_window"] <= ev.window), None)
            after = next((s for s in segs if s["version"] == ev.new
                          and s["from_window"] >= ev.window), None)
            d = {"window": ev.window, "t_s": ev.t, "from": ev.old, "to": ev.new,
                 "promoted_t_s": ev.promoted_t,
                 "promote_to_serve_s": (ev.t - ev.promoted_t if ev.promoted_t is not None
                                        else None),
                 "utility_before": before["utility_policy"] if before else None,
                 "utility_after": after["utility_policy"] if after else None,
                 "windows_before": before["windows"] if before else 0,
                 "windows_after": after["windows"] if after else 0,
                 "ssr_before": before["ssr"] if before else None,
                 "ssr_after": after["ssr"] if after else None}
            if ev.cycle:
                d["trainer_cycle"] = ev.cycle
            out.append(d)
        return out

    # ------------------------------------------------------------------ output
    def summary(self, extra: dict) -> dict:
        rows = self.rows
        s = {
            **extra,
            "windows": len(rows),
            "loop_seconds": rows[-1].t if rows else 0.0,
            "requests": self.requests, "failed_requests": self.failed,
            "errors": dict(self.errors), "invariant_violations": self.invariant_violations,
            "decisions": self.decisions, "fallback_decisions": self.fallback_decisions,
            "explored_decisions": self.explored_decisions,
            "latency_ms": self.latency(),
            "utility_mean": _nanmean([r.utility for r in rows]),
            "utility_policy_mean": _nanmean([r.utility_policy for r in rows]),
            "ssr_mean": (dict(zip(SLICE_NAMES, np.nanmean([r.ssr for r in rows], axis=0).tolist(),
                                  strict=True)) if rows else {}),
            "answers_by_version": dict(self.answer_versions),
            "versions_served": self.segments(),
            "swaps": self.swap_figures(),
            "first_swap_s": self.swaps[0].t if self.swaps else None,
        }
        return _clean(s)

    def write(self, out: Path, summary: dict) -> list[str]:
        out.mkdir(parents=True, exist_ok=True)
        written = [self._csv(out / "windows.csv")]
        try:
            written += plot(self, out)
        except Exception as e:  # noqa: BLE001 - plots are a bonus; never lose the summary
            summary["plot_error"] = f"{type(e).__name__}: {e}"
        summary["files"] = [Path(p).name for p in written] + ["summary.json"]
        (out / "summary.json").write_text(json.dumps(_clean(summary), indent=2) + "\n")
        return written + [str(out / "summary.json")]

    def baseline_names(self) -> list[str]:
        return list(self.rows[0].baselines) if self.rows else []

    def _csv(self, path: Path) -> str:
        names = self.baseline_names()
        best = self.best_fixed[1] if self.best_fixed is not None else None
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["window", "t_s", "utility", "utility_policy",
                        *[f"ssr_{n}" for n in SLICE_NAMES], *[f"share_{n}" for n in SLICE_NAMES],
                        "version", "requests", "failed", "fallback", "explored",
                        "latency_ms_p50", "latency_ms_max",
                        *[f"shadow_{n}" for n in names],
                        *(["shadow_best_fixed"] if best is not None else [])])
            for i, r in enumerate(self.rows):
                d = asdict(r)
                w.writerow([r.k, f"{r.t:.3f}", r.utility, r.utility_policy, *r.ssr, *r.share,
                            r.version, d["requests"], d["failed"], d["fallback"], d["explored"],
                            r.latency_ms_p50, r.latency_ms_max,
                            *[r.baselines.get(n, "") for n in names],
                            *([best[i] if i < len(best) else ""] if best is not None else [])])
        return str(path)


def _rolling(x: np.ndarray, n: int) -> np.ndarray:
    """Trailing mean over up to ``n`` windows, NaN-aware."""
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        out[i] = _nanmean(x[max(0, i - n + 1):i + 1])
    return out


BASELINE_STYLE = {"equal": ("tab:gray", ":"), "proportional": ("tab:olive", "--"),
                  "tuned_proportional": ("tab:cyan", "--"), "best_fixed": ("tab:purple", "-.")}


def _plot_baselines(ax, rec: Recorder, k: np.ndarray, util_all: np.ndarray, smooth: int) -> None:
    """The shadow baselines' utility on the same traffic (all cells, rolling means) and the
    served loop's margin over each, overall, in the legend."""
    served = float(np.nanmean(util_all))
    n = max(smooth, 50)

    def label(name: str, u: np.ndarray, extra: str = "", ref: float = served) -> str:
        base = float(np.nanmean(u))
        return f"{name}{extra} (served {100 * (ref / base - 1):+.1f} %)"

    for name in rec.baseline_names():
        u = np.array([r.baselines.get(name, np.nan) for r in rec.rows], dtype=float)
        colour, ls = BASELINE_STYLE.get(name, ("tab:brown", "--"))
        ax.plot(k, _rolling(u, n), color=colour, ls=ls, lw=1.2,
                label=label(name, u) + f", {n}-window mean")
    if rec.best_fixed is not None:
        units, u, same = rec.best_fixed
        m = min(len(k), len(u))  # an interrupt can land between the shadows' step and the row
        u, same = u[:m], same[:m]
        colour, ls = BASELINE_STYLE["best_fixed"]
        ax.plot(k[:m], _rolling(u, n), color=colour, ls=ls, lw=1.4,
                label=label("best fixed in hindsight", u, f" {units}, its cells",
                            float(np.mean(same))))
    if rec.baseline_names():
        ax.plot(k, _rolling(util_all, n), color="tab:red", lw=1.2,
                label=f"served, all cells ({n}-window mean)")
    caption = _margin_caption(rec.shadow_summary)
    if caption:
        ax.text(0.01, 0.02, caption, transform=ax.transAxes, fontsize=7, va="bottom",
                family="monospace", bbox={"facecolor": "white", "alpha": 0.7, "lw": 0})


def _margin_caption(sb: dict | None) -> str:
    """Margin of the policy's decisions over each baseline, whole run and last 5 minutes."""
    lines = []
    for key, title in (("overall", "whole run"), ("last_5min", "last 5 min")):
        fig = ((sb or {}).get(key) or {}).get("policy_cells") or {}
        if fig.get("baselines"):
            parts = ", ".join(f"{name} {100 * b['margin']:+.1f} %"
                              for name, b in fig["baselines"].items() if b.get("margin") is not None)
            lines.append(f"policy decisions vs baselines, {title} "
                         f"({sb[key]['windows']} windows): {parts}")
    return "\n".join(lines)


def plot(rec: Recorder, out: Path, smooth: int = 10) -> list[str]:
    """utility_ssr.png (utility and per-slice SSR, swap markers) and allocation.png (shares)."""
    import matplotlib  # lazy: matplotlib, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib, only when plotting

    rows = rec.rows
    if not rows:
        return []
    k = np.array([r.k for r in rows])
    util = np.array([r.utility_policy for r in rows], dtype=float)
    util_all = np.array([r.utility for r in rows], dtype=float)
    ssr = np.array([r.ssr for r in rows], dtype=float)
    share = np.array([r.share for r in rows], dtype=float)
    colours = ["tab:blue", "tab:orange", "tab:green"]

    def swap_lines(ax, label: bool) -> None:
        for i, ev in enumerate(rec.swaps):
            ax.axvline(ev.window, color="crimson", ls="--", lw=1.2,
                       label="hot-swap" if (label and i == 0) else None)
            if label:
                ax.annotate(ev.new[-12:], (ev.window, 1.0), xycoords=("data", "axes fraction"),
                            rotation=90, va="top", ha="right", fontsize=7, color="crimson")

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    a1.plot(k, util_all, color="0.8", lw=0.8, label="utility, all cells")
    a1.plot(k, _rolling(util, smooth), color="black", lw=1.8,
            label=f"utility of policy decisions ({smooth}-window mean)")
    _plot_baselines(a1, rec, k, util_all, smooth)
    swap_lines(a1, True)
    a1.set_ylabel("utility")
    a1.legend(loc="best", fontsize=7, ncol=2, framealpha=0.6)
    a1.set_title(f"SliceTwin demo: {rec.cells} cells, {len(rows)} windows, "
                 f"{len(rec.swaps)} hot-swap(s)")
    for j, name in enumerate(SLICE_NAMES):
        a2.plot(k, _rolling(ssr[:, j], smooth), color=colours[j % 3], label=f"SSR {name}")
    swap_lines(a2, False)
    a2.set_ylim(-0.02, 1.02)
    a2.set_ylabel(f"SLA satisfaction ratio ({smooth}-window mean)")
    a2.set_xlabel("window")
    a2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    p1 = out / "utility_ssr.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 4))
    smooth_share = np.stack([_rolling(share[:, j], max(1, smooth // 2))
                             for j in range(share.shape[1])])
    ax.stackplot(k, smooth_share, labels=list(SLICE_NAMES), colors=colours, alpha=0.85)
    swap_lines(ax, True)
    ax.set_ylim(0, 1)
    ax.set_xlabel("window")
    ax.set_ylabel("share of the carrier (mean over cells)")
    ax.set_title(f"Allocation in force per slice ({max(1, smooth // 2)}-window mean)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    p2 = out / "allocation.png"
    fig.savefig(p2, dpi=110)
    plt.close(fig)
    return [str(p1), str(p2)]
