"""The demo's terminal views: a ``rich.live`` dashboard, or plain progress lines (no TTY, CI).

Both take the same snapshot dict, built once per window by the loop (``demo_run._snapshot``):
``mode, controller, elapsed, window, cells, profile, limit, recent, serving, swaps, fallback,
explored, failed, latency, trainer, twin, events``.
"""

from __future__ import annotations

import math
import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from slicetwin.core.slices import SLICE_NAMES


def _f(x, fmt: str = ".3f", none: str = "-") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return none
    return format(x, fmt)


def _short(v: str | None) -> str:
    return "-" if v is None else v


SHORT = {"equal": "equal", "proportional": "prop", "tuned_proportional": "tuned",
         "best_fixed": "best fixed"}


def shadow_line(fig: dict | None, side: str = "policy_cells") -> str:
    """Served utility and its margin over each shadow baseline on the same cell-windows, e.g.
    ``1.912 vs equal 1.801 (+6.2 %), ..., best fixed [1, 34, 65] 1.95 (-1.9 %)``."""
    d = (fig or {}).get(side) or {}
    if not d.get("baselines"):
        return "-"
    parts = []
    for name, b in d["baselines"].items():
        units = f" {b['units']}" if "units" in b else ""
        where = (f"; on {b['cells']} cells, served there {_f(b['served_same_cells'])}"
                 if "units" in b else "")
        parts.append(f"{SHORT.get(name, name)}{units} {_f(b['utility'])} "
                     f"({_f(100 * b['margin'], '+.1f')} %{where})")
    return f"{_f(d['served'])} vs " + ", ".join(parts)


def twin_line(tw: dict | None) -> str:
    if not tw:
        return "not fitted yet"
    return (f"next-state RMSE {_f(tw.get('next_state_rmse'))} (persistence "
            f"{_f(tw.get('persistence_rmse'))}), utility RMSE {_f(tw.get('utility_rmse'))}")


class PlainView:
    """One progress line every ``every_s`` seconds; events (swaps, cycles) as they happen."""

    def __init__(self, every_s: float = 5.0, stream=None, skip_events: int = 0):
        self.every_s = every_s
        self.stream = stream or sys.stdout
        self._last = -1e9
        self._events_seen = skip_events  # already printed while starting

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def update(self, snap: dict, force: bool = False) -> None:
        ev = snap.get("events", [])
        total = snap.get("events_total", len(ev))
        new = total - self._events_seen
        for t, text in ev[-new:] if new > 0 else []:
            self.print(f"[{t:6.1f}s] {text}")
        self._events_seen = total
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        r = snap.get("recent") or {}
        ssr = r.get("ssr") or [math.nan] * len(SLICE_NAMES)
        share = r.get("share") or [math.nan] * len(SLICE_NAMES)
        sl = " ".join(f"{n}:{_f(a, '.2f')}/{_f(s, '.2f')}" for n, a, s
                      in zip(SLICE_NAMES, share, ssr, strict=True))
        lat = snap.get("latency") or {}
        tr = snap.get("trainer") or {}
        tw = snap.get("twin") or {}
        twin = (f" | twin RMSE state {_f(tw.get('next_state_rmse'), '.3f')} utility "
                f"{_f(tw.get('utility_rmse'), '.3f')}" if tw else "")
        sh = snap.get("shadow") or {}
        margins = (f" | policy vs baselines: {shadow_line(sh.get('overall'))}"
                   if sh.get("overall") else "")
        self.print(
            f"[{snap['elapsed']:6.1f}s] window {snap['window']:5d} | policy "
            f"{_short(snap.get('serving'))} (swaps {snap.get('swaps', 0)}) | utility "
            f"{_f(r.get('utility_policy'))} | share/SSR {sl} | fallback {snap.get('fallback', 0)}"
            f" failed {snap.get('failed', 0)} | latency p50 {_f(lat.get('p50'), '.2f')} ms p99 "
            f"{_f(lat.get('p99'), '.2f')} ms{twin} | trainer: {tr.get('status', '-')}{margins}")


class LiveView:
    """A ``rich.live`` dashboard redrawn a few times a second."""

    def __init__(self, refresh_per_second: float = 4.0):
        self.console = Console()
        self._live = None
        self._rps = refresh_per_second

    def __enter__(self):
        self._live = Live(self._render(None), console=self.console,
                          refresh_per_second=self._rps, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        return False

    def print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def update(self, snap: dict, force: bool = False) -> None:
        if self._live is not None:
            self._live.update(self._render(snap))

    def _render(self, snap: dict | None):
        if snap is None:
            return Panel("starting ...", title="SliceTwin demo")
        r = snap.get("recent") or {}
        head = Text.assemble(
            ("SliceTwin closed loop", "bold"), f"  mode {snap['mode']}  controller ",
            (snap["controller"], "cyan"), f"  cells {snap['cells']}  profile "
            f"{snap.get('profile', 'paper')}  window {snap['window']}  ",
            f"{snap['elapsed']:.0f} s / {snap['limit']}")

        t = Table(expand=True, title="per slice (last 10 windows, mean over cells)")
        t.add_column("slice")
        t.add_column("allocation share", justify="right")
        t.add_column("", ratio=2)
        t.add_column("SSR", justify="right")
        ssr = r.get("ssr") or [math.nan] * len(SLICE_NAMES)
        share = r.get("share") or [math.nan] * len(SLICE_NAMES)
        for n, a, s in zip(SLICE_NAMES, share, ssr, strict=True):
            bar = "" if math.isnan(a) else "█" * int(round(a * 30))
            style = "green" if not math.isnan(s) and s >= 0.9 else (
                "yellow" if not math.isnan(s) and s >= 0.5 else "red")
            t.add_row(n, _f(a, ".1%"), bar, Text(_f(s, ".3f"), style=style))

        lat = snap.get("latency") or {}
        tr = snap.get("trainer") or {}
        k = Table.grid(padding=(0, 2))
        k.add_column(style="bold")
        k.add_column()
        k.add_row("utility", f"{_f(r.get('utility_policy'))} (policy decisions), "
                  f"{_f(r.get('utility'))} (all cells)")
        sh = snap.get("shadow")
        if sh:
            rec = sh.get("recent") or {}
            k.add_row("vs baselines, all", shadow_line(sh.get("overall")) + " (policy decisions); "
                      + shadow_line(sh.get("overall"), "all_cells") + " (all cells)")
            k.add_row(f"last {rec.get('windows', 0)} windows",
                      shadow_line(rec) + " (policy decisions)")
        k.add_row("policy in service", Text(f"{_short(snap.get('serving'))}  (hot-swaps: "
                  f"{snap.get('swaps', 0)})", style="bold magenta" if snap.get("swaps") else ""))
        k.add_row("fallback / explored", f"{snap.get('fallback', 0)} / "
                  f"{snap.get('explored', 0)} decisions")
        k.add_row("requests", f"{snap.get('requests', 0)} ok, {snap.get('failed', 0)} failed; "
                  f"latency p50 {_f(lat.get('p50'), '.2f')} ms, p99 {_f(lat.get('p99'), '.2f')} ms")
        k.add_row("twin error", twin_line(snap.get("twin")))
        ts = snap.get("twin_service")
        if ts is not None:
            k.add_row("twin service", f"{ts['url']} {ts.get('state', '')}")
        k.add_row("trainer", tr.get("status", "-"))
        ev = Table.grid()
        ev.add_column()
        for when, text in (snap.get("events") or [])[-6:]:
            ev.add_row(Text(f"{when:6.1f}s  {text}",
                            style="bold magenta" if "HOT-SWAP" in text else ""))
        return Panel(Group(head, t, k, Panel(ev, title="events")), title="SliceTwin demo",
                     subtitle="Ctrl-C stops (summary is still written)")
