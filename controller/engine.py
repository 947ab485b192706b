"""The decision path, independent of HTTP: report(s) in, allocation(s) out, transitions recorded.

Per report (docs/api.md): state s_t from arrived packets; utility and shaped reward from
the window's KPIs; close the cell's previous transition (s_{t-1}, a_{t-1}, r, s_t) when the
window follows the previous one; choose a_t (student argmax, optional epsilon exploration,
demand-proportional fallback when no model or inference fails); remember (s_t, a_t). Answers are
rendered to JSON bytes here with a per-action cache of the allocation fragment, because JSON
encoding is the largest per-decision cost of the batch endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _q  # = json.dumps(str), without its overhead

import numpy as np

from controller.cells import CellMemory, Close, WindowConflict
from controller.schemas import Columns
from slicetwin.core.actions import ActionCodec
from slicetwin.core.fallback import DemandProportional
from slicetwin.core.schemas import KPIReport
from slicetwin.core.slices import SLICE_NAMES, slice_index
from slicetwin.core.state import STATE_SCALES
from slicetwin.core.transition_wire import Transition, TransitionBatch, compact_json
from slicetwin.core.utility import RewardShaper, UtilityConfig
from slicetwin.core.utility import ssr as ssr_of

log = logging.getLogger(__name__)

FALLBACK_VERSION = "fallback"


def observe_many(hist, values: np.ndarray) -> None:
    """Histogram.observe for a whole array: one bucket count per bucket, not per value."""
    try:
        bounds = hist._upper_bounds
        counts = np.bincount(np.searchsorted(bounds, values, side="left"),
                             minlength=len(bounds))
        for b, c in zip(hist._buckets, counts.tolist(), strict=False):
            if c:
                b.inc(c)
        hist._sum.inc(float(np.sum(values)))
    except AttributeError:  # prometheus_client internals moved: the slow, public way
        for v in np.asarray(values).tolist():
            hist.observe(v)


class ReportError(ValueError):
    """A report that parses but cannot be used (422); ``loc`` names the field."""

    def __init__(self, loc: list, message: str, kind: str = "validation"):
        super().__init__(message)
        self.loc, self.kind = loc, kind


@dataclass
class _BatchKpis:
    """What a batch's reports say, per report."""

    ssr: np.ndarray
    utility: np.ndarray
    reward: np.ndarray
    states64: np.ndarray  # memory and transitions
    states: np.ndarray  # float32, the model's input
    states64_l: list


@dataclass
class _BatchDecisions:
    version: str  # the model's (or the fallback's) version
    actions: np.ndarray
    fb_l: list
    ex_l: list
    act_l: list
    versions: list = field(init=False)  # per decision
    mixed: bool = field(init=False)  # some fell back or explored

    def __post_init__(self) -> None:
        any_fb = any(self.fb_l)
        self.mixed = any_fb or any(self.ex_l)
        self.versions = ([FALLBACK_VERSION if f else self.version for f in self.fb_l] if any_fb
                         else [self.version] * len(self.fb_l))


class DecisionEngine:
    def __init__(self, codec: ActionCodec, holder, cells, sink, metrics, *,
                 utility: UtilityConfig | None = None, shaper: RewardShaper | None = None,
                 explore_epsilon: float = 0.0, explore_budget: int = 0,
                 explore_seed: int | None = None, explore_radius: int = 0, fallback=None):
        """``fallback``: the safe heuristic served without a model (cold start) or when
        inference fails; demand-proportional by default (``slicetwin.core.fallback``).
        ``explore_radius``: an explored decision moves at most that many units between two
        slices of the served split (0: any action, uniformly)."""
        self.codec, self.holder, self.cells, self.sink, self.m = codec, holder, cells, sink, metrics
        # transitions the commit appended still need a replica's confirmation from the sink
        # (SINK_WAIT_REPLICAS > 0, e.g. a Redis Cluster): handed over, counted there
        self._confirm_written = bool(getattr(sink, "confirms_written", False))
        self.fallback = fallback if fallback is not None else DemandProportional(codec)
        # the one definition (slicetwin.core.utility): numpy forms for batches, pure-Python closures
        # with the constants bound for single reports (the same operations, the same bits)
        self.utility_config = utility or UtilityConfig()
        self.shaper = shaper or RewardShaper()
        self._utility = self.utility_config.scalar()
        self._reward = self.shaper.scalar()
        self.eps, self.budget, self.radius = explore_epsilon, explore_budget, explore_radius
        self.rng = np.random.default_rng(explore_seed)
        self._scales = [float(s) for s in STATE_SCALES]
        self._scales64 = STATE_SCALES.astype(np.float64)
        self._id_prefix = os.urandom(4).hex()
        self._counter = 0
        self._alloc_cache: dict[int, str] = {}
        self._units_table = codec.table
        self._unit_hz = codec.unit_hz
        # hot-path metrics accumulate in plain Python and reach prometheus at scrape time
        # (flush_metrics): a prometheus set/inc takes a lock and costs ~1 us; ten per request
        # were a third of the decision time
        self._last: tuple | None = None  # (action, utility, ssr) of the latest report
        self._pending_decisions: dict[tuple[str, bool], int] = {}
        self._pending_closed = 0
        self._pending_reward = 0.0
        self._pending_written = 0  # transitions the cell store wrote with the memory commit

    # ------------------------------------------------------------------ helpers
    def alloc_json(self, action: int) -> str:
        s = self._alloc_cache.get(action)
        if s is None:
            units = self._units_table[action]
            n = self.codec.n_units
            s = json.dumps([{"slice": name, "bandwidth_hz": float(u) * self._unit_hz,
                             "prb_ratio": float(u) / n}
                            for name, u in zip(SLICE_NAMES, units, strict=True)])
            self._alloc_cache[action] = s
        return s

    def _reported_action(self, rep: KPIReport) -> int | None:
        """Action index of the allocation the gNB says was in force (None if not reported)."""
        if rep.allocation is None:
            return None
        return self._action_of([(a.slice, a.bandwidth_hz) for a in rep.allocation],
                               ["body", "allocation"])

    def _action_of(self, pairs: list[tuple[str, float]], loc: list) -> int:
        """The action that ran: exact on our unit grid, else the nearest one (counted)."""
        bws = [0.0] * self.codec.n_slices
        seen = set()
        for i, (name, bw) in enumerate(pairs):
            try:
                j = slice_index(name)
            except ValueError as e:
                raise ReportError([*loc, i, "slice"], str(e)) from None
            if j in seen:
                raise ReportError([*loc, i, "slice"], f"slice {name!r} appears twice in allocation")
            seen.add(j)
            bws[j] = bw
        if len(seen) != self.codec.n_slices:
            raise ReportError(loc, "allocation must list every slice once")
        unit = self._unit_hz
        units = [round(b / unit) for b in bws]
        if (sum(units) == self.codec.n_units and min(units) >= self.codec.min_units
                and all(abs(b - u * unit) <= 1e-6 * unit for b, u in zip(bws, units, strict=True))):
            return int(self.codec.encode(units))
        try:
            action, off_hz = self.codec.nearest(bws)
        except ValueError as e:
            raise ReportError(loc, f"allocation does not fit the "
                              f"{self.codec.total_bandwidth_hz:g} Hz carrier: {e}") from None
        self.m.alloc_off_grid.inc()
        self.m.alloc_off_grid_hz.inc(off_hz)
        return action

    def _choose(self, cell_id: str, state: list, arrived: list) -> tuple[int, str, bool, bool]:
        """(action, policy_version, fallback, explored) for one state."""
        policy = self.holder.policy  # read once: this request finishes on this model
        if policy is None:  # cold start: the safe heuristic serves, and is explored around
            self.m.fallbacks.labels("no_model").inc()
            action = int(self.fallback.act(arrived))
            if self._explores(cell_id):
                return self._explore_from(action), FALLBACK_VERSION, True, True
            return action, FALLBACK_VERSION, True, False
        try:
            action = policy.act(state)
        except Exception as e:
            log.warning("inference failed (%s); fallback", e)
            self.m.errors.labels("inference").inc()
            self.m.fallbacks.labels("inference_error").inc()
            return int(self.fallback.act(arrived)), FALLBACK_VERSION, True, False
        if self._explores(cell_id):
            return self._explore_from(action), policy.version, False, True
        return action, policy.version, False, False

    def _explores(self, cell_id: str) -> bool:
        if self.eps > 0 and self.rng.random() < self.eps and self.cells.take_exploration(
                cell_id, self.budget):
            self.m.explored.inc()
            return True
        return False

    def _explore_from(self, served: int) -> int:
        return self.codec.explore(served, self.rng, self.radius)

    def _next_id(self) -> str:
        self._counter += 1
        return f"{self._id_prefix}-{self._counter}"

    @staticmethod
    def _closing(cell_id: str, window: int, reward: float, utility: float, state: list,
                 arrived: list, sla: list, se: float, now: float, reported: int | None) -> Close:
        """The report's half of the transition it may close, for a cell store that writes it
        with the memory commit (``controller.cells.Close``)."""
        return Close(compact_json([cell_id, window])[:-1] + ",",
                     compact_json([reward, utility, state, arrived, sla, se])[1:-1], repr(now),
                     -1 if reported is None else reported)

    def _close(self, cell_id: str, rep_window: int, prev: CellMemory | None, state: list,
               reported: int | None, utility: float, reward: float, arrived: list,
               sla: list, se: float, now: float, held, stored: bool = False) -> None:
        """Record the transition that this report closes, if the windows are consecutive
        (to the sink, or held by the cell store while its memory is not in Redis; ``stored``:
        the cell store already wrote it with the memory, and the sink only has it confirmed
        on a replica where one must confirm it)."""
        if prev is None:
            return
        if rep_window != prev.window + 1:
            self.m.window_gaps.inc()
            return
        action = prev.action
        if reported is not None and reported != prev.action:
            self.m.alloc_mismatch.inc()
            action = reported  # learn from what actually ran
        self._pending_closed += 1
        self._pending_reward += reward
        if stored and not self._confirm_written:
            self._pending_written += 1
            return
        t = Transition(cell_id, rep_window, prev.state, action, reward, utility, state, arrived,
                       sla, se, prev.policy_version, prev.fallback, prev.explored, now)
        if stored:
            self.sink.put_written(t)
        elif held is None:
            self.sink.put(t)
        else:
            self.cells.hold(held, t)

    _TEMPLATE = ('{"cell_id":%s,"window":%d,"decision_id":"%s","policy_version":%s,'
                 '"fallback":%s,"explored":%s,"action":%d,"allocation":%s}')
    # appended (in place of the closing brace) to an answer given without the shared cell memory
    DEGRADED = "cell_store"
    _DEGRADED_TAIL = ',"degraded":"cell_store"}'

    def _render(self, cell_id: str, window: int, did: str, version: str, fallback: bool,
                explored: bool, action: int) -> str:
        # printf-style template: measurably cheaper than json.dumps of a dict per decision
        return self._TEMPLATE % (  # noqa: UP031
            _q(cell_id), window, did, _q(version),
            "true" if fallback else "false", "true" if explored else "false", action,
            self.alloc_json(action))

    def _observe(self, action: int, utility: float, ssr: list) -> None:
        self._last = (action, utility, ssr)

    def _count(self, version: str, fallback: bool, n: int = 1) -> None:
        key = (version, fallback)
        self._pending_decisions[key] = self._pending_decisions.get(key, 0) + n

    def flush_metrics(self) -> None:
        """Move the accumulated hot-path figures into the prometheus metrics (on scrape)."""
        pend, self._pending_decisions = self._pending_decisions, {}
        for (version, fallback), n in pend.items():
            self.m.decision_counter(version, fallback).inc(n)
        closed, self._pending_closed = self._pending_closed, 0
        reward, self._pending_reward = self._pending_reward, 0.0
        written, self._pending_written = self._pending_written, 0
        if closed:
            self.m.transitions_closed.inc(closed)
            self.m.reward.inc(reward)
        if written:
            self.m.transitions_written.inc(written)
        if self._last is not None:
            action, utility, ssr = self._last
            units = self._units_table[action]
            n = self.codec.n_units
            for j in range(len(units)):
                u = float(units[j])
                self.m.prb_children[j].set(u / n)
                self.m.bw_children[j].set(u * self._unit_hz)
                self.m.ssr_children[j].set(ssr[j])
            self.m.utility.set(utility)

    # ------------------------------------------------------------------ single report
    def decide(self, rep: KPIReport) -> tuple[str, dict]:
        """One report -> (JSON answer, summary). Raises WindowConflict / ReportError.

        ``rep`` is a ``KPIReport`` or the msgspec struct of ``controller.schemas.fast_report``
        (same attribute names; slices in the fixed order either way)."""
        cell_id, window = rep.cell_id, rep.window
        prev = self.cells.peek(cell_id) if self.cells.name == "local" else None
        if prev is not None and window <= prev.window:  # fail fast before any work
            raise WindowConflict("duplicate_window" if window == prev.window
                                 else "window_backwards", cell_id, window, prev.window)
        reported = self._reported_action(rep)
        arrived, sla, ssr = [], [], []
        se = 0.0
        for k in rep.slices:
            a, mt = k.arrived_packets, k.sla_met_packets
            arrived.append(a)
            sla.append(mt)
            ssr.append(min(mt / a, 1.0) if a > 0 else 1.0)
            se += k.spectral_efficiency
        sc = self._scales
        state = [arrived[0] / sc[0], arrived[1] / sc[1], arrived[2] / sc[2]]
        utility = self._utility(se, ssr)
        reward = self._reward(utility, window)  # t = the report's window number
        action, version, fallback, explored = self._choose(cell_id, state, arrived)
        mem = CellMemory(window, state, action, version, fallback, explored)
        now = time.time()
        close = (self._closing(cell_id, window, reward, utility, state, arrived, sla, se, now,
                               reported) if self.cells.closes_transitions else None)
        prev, held = self.cells.record(cell_id, mem, close)  # atomic order check + store
        self._close(cell_id, window, prev, state, reported, utility, reward, arrived, sla, se,
                    now, held, stored=close is not None and held is None)
        self._observe(action, utility, ssr)
        self.m.utility_hist.observe(utility)
        self._count(version, fallback)
        did = self._next_id()
        body = self._render(cell_id, window, did, version, fallback, explored, action)
        degraded = None
        if held is not None:  # answered from the local cache: Redis unreachable
            self.m.degraded_cell_store.inc()
            degraded = self.DEGRADED
            body = body[:-1] + self._DEGRADED_TAIL
        return body, {"action": action, "version": version, "fallback": fallback,
                      "decision_id": did, "explored": explored, "degraded": degraded}

    # ------------------------------------------------------------------ batch
    def decide_batch(self, cols: Columns, columns: bool = False) -> list[str] | dict:
        """Many reports (distinct cells) -> JSON answers in order; all or nothing on conflict.

        ``columns=True`` returns the answers as one dict of per-cell lists (columnar endpoint).
        """
        n = len(cols)
        if n == 0:
            return {} if columns else []
        self._check_batch_order(cols)
        reported = [None if al is None else self._action_of(
            [(x["slice"], x["bandwidth_hz"]) for x in al], ["body", "reports", i, "allocation"])
            for i, al in enumerate(cols.allocations)]
        k = self._batch_kpis(cols)
        policy = self.holder.policy  # read once: the whole batch runs on this model
        actions, fallback = self._batch_actions(policy, k.states, cols.arrived)
        explored = self._batch_explore(policy, cols.ids, actions, fallback)
        d = _BatchDecisions(policy.version if policy is not None else FALLBACK_VERSION,
                            actions, fallback.tolist(), explored.tolist(), actions.tolist())
        mems = [(cols.ids[i], CellMemory(cols.windows[i], k.states64_l[i], d.act_l[i],
                                          d.versions[i], d.fb_l[i], d.ex_l[i]))
                for i in range(n)]
        now = time.time()
        closes = (self._batch_closing(cols, k, reported, now) if self.cells.closes_transitions
                  else None)
        prevs, helds = self.cells.record_many(mems, closes)
        self._batch_close(cols, k, prevs, helds, reported, now,
                          stored=closes is not None and helds is None)
        self._batch_count(k, d, helds)
        c0 = self._counter
        self._counter += n
        return self._batch_answer(cols, d, c0, helds, columns)

    def _check_batch_order(self, cols: Columns) -> None:
        """A cell once per batch; with local memory, every window after the cell's last (the
        Redis store checks it atomically when it records)."""
        ids, wins, n = cols.ids, cols.windows, len(cols)
        if len(set(ids)) != n:
            seen: dict[str, int] = {}
            for i, c in enumerate(ids):
                if c in seen:
                    raise ReportError(["body", "reports", i, "cell_id"],
                                      f"cell {c!r} appears twice in one batch (first at "
                                      f"{seen[c]}); send its windows in separate requests")
                seen[c] = i
        if self.cells.name == "local":
            peek = self.cells.peek
            for i in range(n):
                p = peek(ids[i])
                if p is not None and wins[i] <= p.window:
                    raise WindowConflict("duplicate_window" if wins[i] == p.window
                                         else "window_backwards", ids[i], wins[i], p.window, i)

    def _batch_kpis(self, cols: Columns) -> _BatchKpis:
        ssr = ssr_of(cols.sla, cols.arrived)
        utility = self.utility_config.utility(cols.se, ssr)
        # t = each report's window number
        reward = self.shaper.reward(utility, np.asarray(cols.windows, dtype=np.float64))
        # float64 states for memory and transitions (the same numbers as the single-report
        # path, and their short decimal reprs keep the transition writer cheap: a float32
        # value printed as float64 takes 17 digits); float32 only for the model
        states64 = cols.arrived / self._scales64
        return _BatchKpis(ssr, utility, reward, states64, states64.astype(np.float32),
                          states64.tolist())

    def _batch_actions(self, policy, states: np.ndarray, arrived: np.ndarray):
        n = len(states)
        fallback = np.zeros(n, dtype=bool)
        if policy is None:
            fallback[:] = True
            self.m.fallbacks.labels("no_model").inc(n)
            return np.asarray(self.fallback.act(arrived)).reshape(n), fallback
        try:
            return policy.act_batch(states), fallback
        except Exception as e:
            log.warning("batch inference failed (%s); fallback", e)
            self.m.errors.labels("inference").inc()
            self.m.fallbacks.labels("inference_error").inc(n)
            fallback[:] = True
            return np.asarray(self.fallback.act(arrived)).reshape(n), fallback

    def _batch_explore(self, policy, ids: list, actions: np.ndarray,
                       fallback: np.ndarray) -> np.ndarray:
        explored = np.zeros(len(ids), dtype=bool)
        if self.eps > 0:  # around the policy, or around the heuristic at a cold start
            for i in np.flatnonzero(self.rng.random(len(ids)) < self.eps):
                failed = fallback[i] and policy is not None  # an inference error: no exploring
                if not failed and self.cells.take_exploration(ids[i], self.budget):
                    actions[i] = self._explore_from(int(actions[i]))
                    explored[i] = True
            self.m.explored.inc(int(explored.sum()))
        return explored

    def _batch_closing(self, cols: Columns, k: _BatchKpis, reported: list, now: float
                       ) -> list[Close]:
        """Every report's half of the transition it may close (``_closing``, per row)."""
        enc, ids, wins, st = compact_json, cols.ids, cols.windows, k.states64_l
        rew, utl, se = k.reward.tolist(), k.utility.tolist(), cols.se.tolist()
        arr, sla = cols.arrived.tolist(), cols.sla.tolist()
        ts = repr(now)
        return [Close(enc([ids[i], wins[i]])[:-1] + ",",
                      enc([rew[i], utl[i], st[i], arr[i], sla[i], se[i]])[1:-1], ts,
                      -1 if reported[i] is None else reported[i]) for i in range(len(ids))]

    def _batch_close(self, cols: Columns, k: _BatchKpis, prevs: list, helds, reported,
                     now: float, stored: bool = False) -> None:
        """Close the transitions of consecutive windows. The request path only selects rows;
        the sink's writer thread turns the arrays into per-transition entries (held instead
        while the cell memory is away; when ``stored`` the cell store wrote them with the
        memory: only counted, or handed to the sink for a replica's confirmation)."""
        ids, wins = cols.ids, cols.windows
        idx, prev_states, acts, pvers, pfb, pex = [], [], [], [], [], []
        gaps = mism = 0
        for i, p in enumerate(prevs):
            if p is None:
                continue
            if wins[i] != p.window + 1:
                gaps += 1
                continue
            a = p.action
            if reported[i] is not None and reported[i] != a:
                mism += 1
                a = reported[i]
            idx.append(i)
            prev_states.append(p.state)
            acts.append(a)
            pvers.append(p.policy_version)
            pfb.append(p.fallback)
            pex.append(p.explored)
        if idx and stored and not self._confirm_written:
            self._pending_closed += len(idx)
            self._pending_written += len(idx)
            self._pending_reward += float(k.reward[np.asarray(idx)].sum())
        elif idx:
            sel = np.asarray(idx)
            r_sel = k.reward[sel]
            tb = TransitionBatch(
                [ids[i] for i in idx], [wins[i] for i in idx], prev_states, acts, r_sel,
                k.utility[sel], k.states64[sel], cols.arrived[sel], cols.sla[sel],
                cols.se[sel], pvers, pfb, pex, now)
            if stored:
                self.sink.put_written_batch(tb)
            elif helds is None:
                self.sink.put_batch(tb)
            else:
                for i, t in zip(idx, tb.expand(), strict=True):
                    self.cells.hold(helds[i], t)
            self._pending_closed += len(idx)
            self._pending_reward += float(r_sel.sum())
        if gaps:
            self.m.window_gaps.inc(gaps)
        if mism:
            self.m.alloc_mismatch.inc(mism)

    def _batch_count(self, k: _BatchKpis, d: _BatchDecisions, helds) -> None:
        n = len(d.act_l)
        self._observe(d.act_l[-1], float(k.utility[-1]), k.ssr[-1].tolist())
        observe_many(self.m.utility_hist, k.utility)
        nf = sum(d.fb_l)
        if n - nf:
            self._count(d.version, False, n - nf)
        if nf:
            self._count(FALLBACK_VERSION, True, nf)
        if helds is not None:
            self.m.degraded_cell_store.inc(n)

    def _batch_answer(self, cols: Columns, d: _BatchDecisions, c0: int, helds,
                      columns: bool) -> list[str] | dict:
        ids, wins, n = cols.ids, cols.windows, len(cols)
        if columns:
            units = self._units_table[d.actions]
            out = {"decision_id_prefix": self._id_prefix, "decision_seq_first": c0 + 1,
                   "cell_id": ids, "window": wins, "policy_version": d.versions,
                   "fallback": d.fb_l, "explored": d.ex_l, "action": d.act_l,
                   "bandwidth_hz": (units * self._unit_hz).tolist(),
                   "prb_ratio": (units / self.codec.n_units).tolist()}
            if helds is not None:
                out["degraded"] = self.DEGRADED
            return out
        body = self._render_batch(n, ids, wins, c0, d.version, d.fb_l, d.ex_l, d.act_l,
                                  d.mixed)
        if helds is not None:
            return [x[:-1] + self._DEGRADED_TAIL for x in body]
        return body

    def _render_batch(self, n: int, ids: list, wins: list, c0: int, version: str, fb_l: list,
                      ex_l: list, act_l: list, mixed: bool) -> list[str]:
        # render: per-batch constants hoisted, one template fill per decision
        pre = self._id_prefix
        vj = _q(version)
        fbj = _q(FALLBACK_VERSION)
        alloc = self.alloc_json
        tmpl = self._TEMPLATE
        dumps = _q
        if not mixed:
            return [tmpl % (dumps(ids[i]), wins[i], f"{pre}-{c0 + i + 1}", vj, "false", "false",
                            act_l[i], alloc(act_l[i])) for i in range(n)]
        return [tmpl % (dumps(ids[i]), wins[i], f"{pre}-{c0 + i + 1}", fbj if fb_l[i] else vj,
                        "true" if fb_l[i] else "false", "true" if ex_l[i] else "false",
                        act_l[i], alloc(act_l[i])) for i in range(n)]
