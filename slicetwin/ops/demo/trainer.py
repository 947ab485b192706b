"""The demo's trainer: the real trainer worker, as a process (Redis mode) or a thread (embedded).

Both expose what the demo shows: ``status()`` (one line), ``cycles`` (brief figures per cycle),
``by_version`` (cycle figures of each candidate policy), ``twin`` (held-out error of the last twin
fit), ``failed``, ``transitions`` and ``stop(timeout)``.

- :class:`TrainerProcess` runs ``slicetwin trainer`` exactly as the compose stack does (settings as
  ``SLICETWIN_*`` variables) and reads the one JSON line it prints per cycle. Its own process keeps
  torch's CPU and GIL time away from the gNB loop, so the request latencies the demo shows are
  the controller's.
- :class:`TrainerThread` runs :class:`trainer.worker.TrainerWorker` in a thread, reading the
  controller's in-memory sink and promoting into the shared in-memory registry.

Both are built without importing torch here, so the loop starts while torch loads.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

from slicetwin.platform.redis_client import connect, is_cluster
from slicetwin.platform.stream_shards import resolve_shards, shard_keys
from trainer.worker import TrainerWorker

log = logging.getLogger("slicetwin.cli.demo")


def cycle_brief(d: dict) -> dict:
    """The figures of one trainer cycle the demo keeps (from ``CycleResult.to_dict()``)."""
    g = d.get("gate") or {}
    return {"cycle": d.get("cycle"), "policy_version": d.get("policy_version"),
            "promoted": d.get("promoted"), "skipped": d.get("skipped"),
            "dataset": d.get("dataset"), "twin_version": d.get("twin_version"),
            "twin_published": d.get("twin_published"), "twin_error": d.get("twin_error"),
            "twin_backend": d.get("twin_backend"),
            "gate_candidate": g.get("candidate"), "gate_current": g.get("current"),
            "gate_reason": g.get("reason"), "gate_decided_on": g.get("decided_on") or [],
            "agreement": ((d.get("training") or {}).get("distill") or {}).get("agreement"),
            "labels": ((d.get("training") or {}).get("distill") or {}).get("labels"),
            "seconds": d.get("seconds")}


_GATE_NAMES = {"sim_utility": "sim utility", "real_heldout_utility": "real-data estimate"}


def _r(x):
    return None if x is None else round(float(x), 3)


class _Base:
    def __init__(self, settings, events):
        self.s = settings
        self.events = events
        self.cycles: list[dict] = []
        self.by_version: dict[str, dict] = {}
        self.twin: dict | None = None
        self.failed: str | None = None
        self._lock = threading.Lock()

    def _record(self, d: dict) -> None:
        b = cycle_brief(d)
        with self._lock:
            if d.get("skipped") and not d.get("policy_version"):
                return
            self.cycles.append(b)
            if d.get("twin_error"):
                self.twin = d["twin_error"]
            if b["policy_version"]:
                self.by_version[b["policy_version"]] = b
        cand, cur = b.get("gate_candidate") or {}, b.get("gate_current") or {}
        verdict = "PROMOTED" if b["promoted"] else "refused by the gate"
        secs = (b.get("seconds") or {}).get("total") or 0
        held = "; ".join(f"held-out {_GATE_NAMES.get(k, k)} {_r(cand.get(k))} vs {_r(cur.get(k))}"
                         for k in b.get("gate_decided_on") or []) or "no held-out figure"
        self.events.add(f"trainer cycle {b['cycle']} ({secs:.0f} s, {b['dataset']} transitions):"
                        f" {b['policy_version']} {verdict} ({held} in service; twin "
                        f"{_r(cand.get('twin_utility'))} vs {_r(cur.get('twin_utility'))}, "
                        f"reported only; {self._taught(b)})")

    def _taught(self, b: dict) -> str:
        if self.s.teacher == "planner":
            return f"student fitted to {b.get('labels')} planner labels of the simulator"
        if self.s.teacher == "twin":
            return f"student fitted to the twin's ratings of every split at {b.get('labels')} " \
                   "live states"
        return (f"student agreement {_r(b.get('agreement'))}; agent 2 trained in the "
                f"{b.get('twin_backend') or 'local'} twin")

    def _status(self, n: int | None, running_s: float | None) -> str:
        if self.failed:
            return f"stopped: {self.failed}"
        if running_s is not None:
            steps = {"planner": "fit twin -> label with the simulator's planner -> fit student",
                     "twin": "fit twin -> twin rates every split at live states -> fit student",
                     }.get(self.s.teacher, "fit twin -> agent 2 in twin -> fine-tune -> distil")
            return (f"cycle {len(self.cycles) + 1} running for {running_s:.0f} s on "
                    f"{n} transitions ({steps} -> ONNX -> gate)")
        if not self.cycles:
            return f"collecting live transitions: {n}/{self.s.min_transitions} before cycle 1"
        last = self.cycles[-1]
        nxt = (last.get("dataset") or 0) + self.s.min_new_transitions
        return (f"cycle {last['cycle']} done ({'promoted' if last.get('promoted') else 'refused'})"
                f"; next at {nxt} transitions ({n} now)")


class TrainerThread(_Base):
    """``TrainerWorker`` in a thread of this process (embedded mode)."""

    def __init__(self, settings, registry, source, events):
        super().__init__(settings, events)
        self.registry, self.source = registry, source
        self.worker = None
        self.cycle_started: float | None = None
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="trainer", daemon=True)

    def start(self) -> TrainerThread:
        self.thread.start()
        return self

    def _build(self):
        demo = self

        class DemoWorker(TrainerWorker):
            def run_cycle(self):
                demo.cycle_started = time.monotonic()
                try:
                    return super().run_cycle()
                finally:
                    demo.cycle_started = None

        return DemoWorker(self.s, registry=self.registry, source=self.source,
                          stop_event=self.stop_event, on_cycle=lambda r: self._record(r.to_dict()))

    def _run(self) -> None:
        try:
            self.worker = self._build()
            if self.stop_event.is_set():
                return
            self.events.add("trainer ready (torch loaded); ingesting live transitions")
            self.worker.run()
        except Exception as e:  # noqa: BLE001 - shown in the view and the summary
            self.failed = f"{type(e).__name__}: {e}"
            log.exception("trainer stopped")
            self.events.add(f"trainer stopped: {self.failed}")

    @property
    def transitions(self) -> int | None:
        try:
            return len(self.worker.store) if self.worker is not None else 0
        except Exception:  # noqa: BLE001 - display only
            return None

    def status(self) -> str:
        if self.worker is None and not self.failed:
            return "loading (importing torch) ..."
        started = self.cycle_started
        return self._status(self.transitions,
                            None if started is None else time.monotonic() - started)

    def stop(self, timeout: float) -> bool:
        """True if the thread ended within ``timeout`` (a cycle stops at its next check)."""
        self.stop_event.set()
        if self.thread.ident is not None:
            self.thread.join(timeout)
        alive = self.thread.is_alive()
        if not alive and self.worker is not None:
            try:
                self.worker.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the trainer failed")
        return not alive


def settings_env(settings) -> dict[str, str]:
    """``SLICETWIN_*`` variables that reproduce ``settings`` in ``slicetwin trainer``."""
    env = {}
    for name in type(settings).model_fields:
        v = getattr(settings, name)
        if v is None:
            continue
        if hasattr(v, "get_secret_value"):
            v = v.get_secret_value()
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, list | tuple | dict):
            v = json.dumps(list(v) if not isinstance(v, dict) else v)
        env[f"SLICETWIN_{name.upper()}"] = str(v)
    return env


class TrainerProcess(_Base):
    """``slicetwin trainer`` as a child process (Redis mode), as the compose stack runs it."""

    def __init__(self, settings, events, base_env: dict[str, str], log_path: Path):
        super().__init__(settings, events)
        self.env = {k: v for k, v in base_env.items() if not k.startswith("SLICETWIN_")}
        self.env.update(settings_env(settings))
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._reader: threading.Thread | None = None
        self._r = None
        self._n_cache: tuple[float, int | None] = (0.0, None)
        self._due_since: float | None = None
        self._stopping = False

    def start(self) -> TrainerProcess:
        self._r = connect(self.s.redis_url, socket_timeout=2.0)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "slicetwin.cli.main", "trainer"],
                                     env=self.env, stdout=subprocess.PIPE, stderr=self._log,
                                     start_new_session=True, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name="trainer-stdout", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                d = json.loads(line)
            except ValueError:
                log.warning("unparsable trainer line: %s", line[:200])
                continue
            self._due_since = None
            self._record(d)
        code = self.proc.wait()
        if code != 0 and not self._stopping and self.failed is None:
            self.failed = f"slicetwin trainer exited with status {code} (see trainer.log)"
            self.events.add(f"trainer stopped: {self.failed}")

    @property
    def transitions(self) -> int | None:
        """Entries in the transitions stream, all shards (refreshed at most once a second)."""
        t, n = self._n_cache
        if time.monotonic() - t > 1.0 and self._r is not None:
            try:
                keys = shard_keys(self.s.stream_key,
                                  resolve_shards(self.s.transition_shards, is_cluster(self._r)))
                n = sum(int(self._r.xlen(k)) for k in keys)
            except Exception:  # noqa: BLE001 - display only
                n = None
            self._n_cache = (time.monotonic(), n)
        return n

    def status(self) -> str:
        n = self.transitions
        if n is None:
            return self._status(n, None)
        due = (self.s.min_transitions if not self.cycles
               else (self.cycles[-1].get("dataset") or 0) + self.s.min_new_transitions)
        if n >= due and not self.failed:
            if self._due_since is None:
                self._due_since = time.monotonic()
            return self._status(n, time.monotonic() - self._due_since)
        return self._status(n, None)

    def stop(self, timeout: float) -> bool:
        """SIGTERM (the worker stops at its next check), SIGKILL after ``timeout``."""
        ok = True
        self._stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                ok = False
        if self._reader is not None:
            self._reader.join(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._r is not None:
            self._r.close()
        return ok
