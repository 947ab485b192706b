"""Batched RAN slicing simulator: ``RanSimulator`` (many independent cells) and ``WindowKPIs``.

One ``step`` = one decision window (400 slots of 0.5 ms) for every cell. The true state of all
cells lives in numpy arrays (``SimState``) that a numba kernel advances in place; ``snapshot``/
``restore`` copy it (RNG included) and ``replicate`` clones one cell into many with common random
numbers, which is how the clairvoyant oracle scores all 4851 actions in one vectorised step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from slicetwin.core.schemas import KPIReport, SliceAllocation, SliceKPI
from slicetwin.core.slices import N_SLICES
from slicetwin.core.state import state_from_arrivals
from slicetwin.sim import _kernel as K
from slicetwin.sim.config import SimConfig


@dataclass
class SimState:
    """Full true state of a batch of cells (first axis = cell)."""

    rng: np.ndarray  # (C,) uint64 traffic stream
    chan_key: np.ndarray  # (C,) uint64 fading key
    now: np.ndarray  # (C,) float64 window start time, s
    win: np.ndarray  # (C,) int64 windows simulated (incl. the warm-up window)
    regime: np.ndarray  # (C, 3) int64 hidden load regime per slice
    lo: np.ndarray  # (C, 3) int64 first user of each slice
    hi: np.ndarray  # (C, 3) int64 one past the last user
    snr: np.ndarray  # (C, U) mean SNR (linear)
    uthr: np.ndarray  # (C, U) fading shortcut threshold (-1: no Rayleigh)
    on: np.ndarray  # (C, U) int8 user ON/OFF
    next_arr: np.ndarray  # (C, U) next arrival time, s
    qa: np.ndarray  # (C, U, Q) packet arrival times (ring buffers)
    qb: np.ndarray  # (C, U, Q) remaining bits
    qz: np.ndarray  # (C, U, Q) packet size, bits
    qs: np.ndarray  # (C, U, Q) time of first service (-1: not started)
    qh: np.ndarray  # (C, U) ring head
    qn: np.ndarray  # (C, U) queued packets
    rr: np.ndarray  # (C, 3) round-robin pointer per slice
    last_arrived: np.ndarray  # (C, 3) arrivals of the last window (the observation)
    # load model (docs/simulator.md "Profiles where adapting pays")
    day0: np.ndarray  # (C,) int64 window offset of the daily clock (same for all cells)
    load: np.ndarray  # (C, 3) arrival-rate multiplier of the last window
    surge_left: np.ndarray  # (C,) int64 windows left in the running flash crowd (0: none)
    surge_slice: np.ndarray  # (C,) int64 slice of the running flash crowd
    surge_mult: np.ndarray  # (C,) float64 its rate multiplier
    crowd: np.ndarray  # (C,) int64 slice under a surge in the last window (-1: none)
    phase: np.ndarray  # (C,) int64 schedule phase of the last window

    def copy(self) -> SimState:
        return SimState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def take(self, idx: np.ndarray) -> SimState:
        """Rows ``idx`` (fancy indexing copies), e.g. ``np.full(n, c)`` replicates cell c."""
        return SimState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def put(self, idx: np.ndarray, other: SimState, rows: np.ndarray | None = None) -> None:
        """Overwrite cells ``idx`` with ``other``'s rows ``rows`` (default: all, in order)."""
        for f in fields(self):
            src = getattr(other, f.name)
            getattr(self, f.name)[idx] = src if rows is None else src[rows]

    @property
    def n_cells(self) -> int:
        return int(self.rng.shape[0])


@dataclass
class WindowKPIs:
    """Per-window KPIs of every cell; counts are packets, slice axis in the fixed order."""

    arrived: np.ndarray  # (n, 3) int64 packets that arrived in the window
    delivered: np.ndarray  # (n, 3) int64 packets completed in the window (any arrival time)
    sla_met: np.ndarray  # (n, 3) int64 completed within latency SLA at >= rate SLA
    dropped: np.ndarray  # (n, 3) int64 lost to full buffers (or cleared without carry)
    throughput_bps: np.ndarray  # (n, 3) served bits / window length
    latency_mean_s: np.ndarray  # (n, 3) NaN when nothing was delivered
    latency_p95_s: np.ndarray  # (n, 3) NaN when nothing was delivered (0.1 ms histogram)
    spectral_efficiency: np.ndarray  # (n,) total served bit/s per Hz of carrier
    ssr: np.ndarray  # (n, 3) min(sla_met / arrived, 1); 1 when nothing arrived
    utility: np.ndarray  # (n,) alpha * SE + sum beta * SSR
    backlog: np.ndarray  # (n, 3) packets queued at the window end
    config: SimConfig | None = field(default=None, repr=False)  # the simulator's, for reports

    @property
    def n_cells(self) -> int:
        return int(self.arrived.shape[0])

    def cell(self, i: int) -> dict:
        """Plain dict of one cell's KPIs (used as gymnasium ``info``)."""
        return {
            "arrived": self.arrived[i].copy(), "delivered": self.delivered[i].copy(),
            "sla_met": self.sla_met[i].copy(), "dropped": self.dropped[i].copy(),
            "throughput_bps": self.throughput_bps[i].copy(),
            "latency_mean_s": self.latency_mean_s[i].copy(),
            "latency_p95_s": self.latency_p95_s[i].copy(),
            "se": float(self.spectral_efficiency[i]), "ssr": self.ssr[i].copy(),
            "utility": float(self.utility[i]), "backlog": self.backlog[i].copy(),
        }

    def to_reports(self, cell_ids, window: int | np.ndarray, units: np.ndarray | None = None,
                   config: SimConfig | None = None) -> list:
        """KPIReport per cell, as a gNB would post them (docs/api.md, the report schema)."""

        cfg = config or self.config or SimConfig()
        n = self.n_cells
        ids = [str(x) for x in cell_ids]
        if len(ids) != n:
            raise ValueError(f"need {n} cell ids, got {len(ids)}")
        wins = np.broadcast_to(np.asarray(window, dtype=np.int64), (n,))
        unit_hz = cfg.unit_hz
        out = []
        for i in range(n):
            alloc = None
            if units is not None:
                u = np.asarray(units)[i]
                alloc = [SliceAllocation(slice=s.name, bandwidth_hz=float(u[j] * unit_hz),
                                         prb_ratio=float(u[j] / cfg.n_units))
                         for j, s in enumerate(cfg.slices)]
            slices = []
            for j, s in enumerate(cfg.slices):
                lm, lp = self.latency_mean_s[i, j], self.latency_p95_s[i, j]
                slices.append(SliceKPI(
                    slice=s.name, arrived_packets=int(self.arrived[i, j]),
                    delivered_packets=int(self.delivered[i, j]),
                    sla_met_packets=int(self.sla_met[i, j]),
                    throughput_bps=float(self.throughput_bps[i, j]),
                    spectral_efficiency=float(self.throughput_bps[i, j] / cfg.bandwidth_hz),
                    latency_mean_ms=None if math.isnan(lm) else float(lm * 1e3),
                    latency_p95_ms=None if math.isnan(lp) else float(lp * 1e3)))
            out.append(KPIReport(cell_id=ids[i], window=int(wins[i]),
                                 window_ms=cfg.window_s * 1e3, allocation=alloc, slices=slices))
        return out


class RanSimulator:
    """Many independent cells of the RAN slicing scenario, advanced one window per ``step``."""

    def __init__(self, config: SimConfig | None = None, n_cells: int = 1, seed: int | None = None,
                 parallel: bool | None = None):
        self.config = config or SimConfig()
        if not isinstance(n_cells, (int, np.integer)) or n_cells <= 0:
            raise ValueError(f"n_cells must be a positive integer, got {n_cells!r}")
        self.n_cells = int(n_cells)
        self.codec = self.config.codec
        self._seed = seed
        # numba prange over cells pays off for big batches on idle cores; on this shared 2-core
        # machine serial was faster for 64 cells (docs/simulator.md), so it is the default there.
        self.parallel = (self.n_cells >= 256) if parallel is None else bool(parallel)
        cfg = self.config
        self._P = np.zeros(K.N_P)
        self._P[K.P_SLOT] = cfg.slot_s
        self._P[K.P_NSLOT] = cfg.slots_per_window
        self._P[K.P_RB_HZ] = cfg.rb_hz
        self._P[K.P_SE_CAP] = np.inf if cfg.se_cap is None else cfg.se_cap
        self._P[K.P_SE_MULT] = cfg.se_multiplier
        self._P[K.P_LOG_BASE] = cfg.se_log_base
        self._P[K.P_SHADOW] = cfg.shadowing_db
        self._P[K.P_CARRY] = 1.0 if cfg.carry_backlog else 0.0
        self._P[K.P_QCAP] = cfg.buffer_packets
        self._P[K.P_LAT_ACCESS] = 1.0 if cfg.latency_check == "access" else 0.0
        self._P[K.P_RATE_TX] = 1.0 if cfg.rate_check == "transmission" else 0.0
        self._P[K.P_BW] = cfg.bandwidth_hz
        self._P[K.P_ALPHA] = cfg.utility.alpha
        self._P[K.P_DISCARD:K.P_DISCARD + 3] = [1.0 if x else 0.0 for x in cfg.discard_late]
        self._rb_per_unit = cfg.unit_hz / cfg.rb_hz
        self._rate_sla = np.array([s.rate_sla_bps for s in cfg.slices], float)
        self._lat_sla = np.array([s.latency_sla_s for s in cfg.slices], float)
        self._beta = np.asarray(cfg.utility.beta, float)
        self._phases = [_PhaseParams.of(c) for c, _ in cfg.phases()]
        self.state: SimState | None = None
        self.t = 0
        self.last_units = np.zeros((self.n_cells, N_SLICES), np.int64)

    # -- lifecycle ------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> np.ndarray:
        """New users, channels and traffic; runs one warm-up window at an equal split.

        Returns the (n_cells, 3) float32 state of that warm-up window; ``t`` restarts at 0.
        """
        if seed is not None:
            self._seed = seed
        cfg = self.config
        C, U, Q = self.n_cells, cfg.n_users, cfg.buffer_packets
        ss = np.random.SeedSequence(self._seed)
        keys = ss.generate_state(2 * C, dtype=np.uint64)
        gen = np.random.default_rng(ss.spawn(1)[0])
        first = cfg.phases()[0][0]
        pop = _draw_population(first, C, gen)
        day0 = np.zeros(C, np.int64)
        days = [c.diurnal for c, _ in cfg.phases() if c.diurnal is not None]
        if days and days[0].random_start:  # a random time of day, per cell or shared
            day0[:] = gen.integers(0, days[0].day_windows, 1 if days[0].shared_clock else C)
        m0 = _initial_load(first, day0)
        if (m0 < 1).any():  # start ON states at the load model's level (fewer sessions)
            keep = gen.random(pop["on"].shape) < np.take_along_axis(
                np.minimum(m0, 1.0), pop["slice_of"], axis=1)
            pop["on"] = (pop["on"].astype(bool) & keep).astype(np.int8)
        st = SimState(
            rng=keys[:C].copy(), chan_key=keys[C:].copy(), now=np.zeros(C),
            win=np.zeros(C, np.int64), regime=pop["regime"], lo=pop["lo"], hi=pop["hi"],
            snr=pop["snr"], uthr=pop["uthr"], on=pop["on"],
            next_arr=np.zeros((C, U)), qa=np.zeros((C, U, Q)), qb=np.zeros((C, U, Q)),
            qz=np.zeros((C, U, Q)), qs=np.full((C, U, Q), -1.0),
            qh=np.zeros((C, U), np.int64), qn=np.zeros((C, U), np.int64),
            rr=np.zeros((C, N_SLICES), np.int64), last_arrived=np.zeros((C, N_SLICES), np.int64),
            day0=day0, load=np.ones((C, N_SLICES)),
            surge_left=np.zeros(C, np.int64), surge_slice=np.zeros(C, np.int64),
            surge_mult=np.ones(C), crowd=np.full(C, -1, np.int64), phase=np.zeros(C, np.int64))
        K.warm_start(st.rng, pop["slice_of"], st.on, st.next_arr, self._phases[0].inter)
        self.state = st
        self.t = 0
        eq = self.codec.from_weights(np.ones(N_SLICES))
        self._advance(st, np.tile(eq, (C, 1)), parallel=self.parallel)
        return state_from_arrivals(st.last_arrived)

    def step(self, units: np.ndarray) -> tuple[np.ndarray, WindowKPIs]:
        """Run one window with ``units`` (n_cells, 3) allocation units per slice."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        u = self.validate_units(units, self.n_cells)
        kpis = self._advance(self.state, u, parallel=self.parallel)
        self.t += 1
        self.last_units = u
        return state_from_arrivals(self.state.last_arrived), kpis

    def step_actions(self, actions: np.ndarray) -> tuple[np.ndarray, WindowKPIs]:
        """Same as ``step`` with action indices (n_cells,) decoded by the codec."""
        return self.step(self.codec.decode(np.asarray(actions, dtype=np.int64).reshape(-1)))

    def validate_units(self, units: np.ndarray, n_cells: int) -> np.ndarray:
        u = np.asarray(units)
        if u.dtype.kind not in "iu":
            raise TypeError(f"units must be integers, got dtype {u.dtype}")
        if u.ndim == 1 and n_cells == 1:
            u = u.reshape(1, -1)
        if u.shape != (n_cells, N_SLICES):
            raise ValueError(f"units must have shape ({n_cells}, {N_SLICES}), got {u.shape}")
        u = u.astype(np.int64, copy=False)
        c = self.codec
        bad = (u.sum(1) != c.n_units) | (u.min(1) < c.min_units)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"cell {i}: allocation {u[i].tolist()} must sum to {c.n_units} "
                             f"units with each slice >= {c.min_units}")
        return u

    # -- state handling -------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Full true state (RNG included) plus the window counter; restore() brings it back."""
        if self.state is None:
            raise RuntimeError("nothing to snapshot before reset()")
        return {"state": self.state.copy(), "t": self.t, "last_units": self.last_units.copy()}

    def restore(self, snap: dict) -> None:
        st = snap["state"]
        if st.n_cells != self.n_cells:
            raise ValueError(f"snapshot has {st.n_cells} cells, simulator has {self.n_cells}")
        self.state = st.copy()
        self.t = int(snap["t"])
        self.last_units = snap["last_units"].copy()

    def replicate(self, cell: int, n: int) -> RanSimulator:
        """A new simulator of ``n`` identical copies of ``cell``'s true state (common random
        numbers: the copies see the same arrivals and fading whatever their allocation)."""
        return self.replicate_many(np.full(n, cell, dtype=np.int64))

    def replicate_many(self, cells: np.ndarray) -> RanSimulator:
        if self.state is None:
            raise RuntimeError("call reset() before replicate()")
        cells = np.asarray(cells, dtype=np.int64)
        sim = RanSimulator(self.config, n_cells=len(cells), seed=self._seed)
        sim.state = self.state.take(cells)
        sim.t = self.t
        sim.last_units = self.last_units[cells].copy()
        return sim

    # -- kernel call ----------------------------------------------------------------------------
    def rbs_of(self, units: np.ndarray) -> np.ndarray:
        """Scheduling resource blocks per slice for allocation units."""
        return np.floor(units * self._rb_per_unit + 1e-9).astype(np.int64)

    def phase_index(self, st: SimState | None = None) -> int:
        """Schedule phase of the coming window (0 without a schedule)."""
        st = st or self.state
        if len(self._phases) == 1 or st is None:
            return 0
        return self.config.phase_at(max(int(st.win[0]) - 1, 0))

    def _enter_phase(self, st: SimState, i: int) -> None:
        """Cells move to schedule phase ``i``; a phase with another population redraws the users
        (mix, distances, ON states) from the cell's channel key and drops their queues."""
        new = self._phases[i].config
        for c in np.flatnonzero(st.phase != i):
            if self._phases[int(st.phase[c])].config.population() != new.population():
                gen = np.random.default_rng([int(st.chan_key[c]), i])
                pop = _draw_population(new, 1, gen)
                for k in ("lo", "hi", "snr", "uthr", "regime", "on"):
                    getattr(st, k)[c] = pop[k][0]
                st.qn[c] = 0
                st.qh[c] = 0
                st.qs[c] = -1.0
                st.rr[c] = 0
                nxt = np.zeros((1, new.n_users))
                rng = st.rng[c:c + 1].copy()
                K.warm_start(rng, pop["slice_of"], st.on[c:c + 1], nxt, self._phases[i].inter)
                st.rng[c] = rng[0]
                st.next_arr[c] = st.now[c] + nxt[0]
            st.phase[c] = i

    def _advance(self, st: SimState, units: np.ndarray, parallel: bool) -> WindowKPIs:
        C = st.n_cells
        i = self.phase_index(st)
        ph = self._phases[i]
        if len(self._phases) > 1 and (st.phase != i).any():
            self._enter_phase(st, i)
        K.update_load(st.chan_key, st.win, st.day0, st.load, st.surge_left, st.surge_slice,
                      st.surge_mult, st.crowd, ph.base, ph.day_tab, ph.day_windows, ph.noise_sd, ph.flash)
        i3 = np.empty((5, C, N_SLICES), np.int64)  # arrived, delivered, met, dropped, backlog
        f3 = np.empty((4, C, N_SLICES))  # throughput, latency mean, latency p95, ssr
        f1 = np.empty((2, C))  # se, utility
        fn = K.step_cells if parallel else K.step_cells_serial
        traffic = K.Traffic(inter=ph.inter, size=ph.size, rate_sla=self._rate_sla,
                            lat_sla=self._lat_sla, reg_leave=ph.reg_leave, on_prob=ph.on_prob,
                            on_persist=ph.on_persist, beta=self._beta)
        cells = K.Cells(rng=st.rng, chan_key=st.chan_key, now=st.now, win=st.win,
                        regime=st.regime, lo=st.lo, hi=st.hi, snr=st.snr, uthr=st.uthr, on=st.on,
                        next_arr=st.next_arr, load=st.load, crowd=st.crowd)
        queues = K.Queues(qa=st.qa, qb=st.qb, qz=st.qz, qs=st.qs, qh=st.qh, qn=st.qn, rr=st.rr)
        out = K.WindowOut(arrived=i3[0], delivered=i3[1], met=i3[2], dropped=i3[3],
                          bits=f3[0], lat_mean=f3[1], lat_p95=f3[2], backlog=i3[4], ssr=f3[3],
                          se_out=f1[0], util=f1[1])
        fn(self._P, self.rbs_of(units), *K.kernel_args(traffic, cells, queues, out))
        st.last_arrived = i3[0]
        return WindowKPIs(arrived=i3[0], delivered=i3[1], sla_met=i3[2], dropped=i3[3],
                          throughput_bps=f3[0], latency_mean_s=f3[1], latency_p95_s=f3[2],
                          spectral_efficiency=f1[0], ssr=f3[3], utility=f1[1], backlog=i3[4],
                          config=self.config)


class _PhaseParams:
    """One phase's traffic and load parameters, encoded for the kernel."""

    def __init__(self, cfg: SimConfig):
        self.config = cfg
        self.inter = np.stack([t.interarrival.encode() for t in cfg.traffic])
        self.size = np.stack([t.size.encode() for t in cfg.traffic])
        self.reg_leave = np.array([t.regime_leave for t in cfg.traffic], float)
        self.on_prob = np.array([t.on_prob for t in cfg.traffic], float)
        self.on_persist = np.array([t.on_persist for t in cfg.traffic], float)
        self.base = np.asarray(cfg.base_load, np.float64)
        d = cfg.diurnal
        self.day_tab = d.table() if d is not None else np.ones((N_SLICES, 25))
        self.day_windows = int(d.day_windows) if d is not None else 0
        self.noise_sd = float(d.noise_sd) if d is not None else 0.0
        self.flash = cfg.flash.encode() if cfg.flash is not None else np.zeros(8)

    @classmethod
    def of(cls, cfg: SimConfig) -> _PhaseParams:
        return cls(cfg)


def _draw_population(cfg: SimConfig, C: int, gen: np.random.Generator) -> dict:
    """Users per slice, distances (-> mean SNR and the fading shortcut), initial regimes and ON
    states of ``C`` cells. ``hetero``: each cell draws its mix and radius."""
    U = cfg.n_users
    if cfg.mix_concentration is not None:
        shares = gen.dirichlet(cfg.mix_concentration * cfg.mean_shares(), size=C)
        counts = np.stack([gen.multinomial(U, p) for p in shares]).astype(np.int64)
    elif cfg.users_per_slice is not None:
        counts = np.tile(np.asarray(cfg.users_per_slice, np.int64), (C, 1))
    else:
        w = np.asarray(cfg.split_weights, float)
        counts = gen.multinomial(U, w / w.sum(), size=C).astype(np.int64)
    hi = np.cumsum(counts, axis=1)
    lo = hi - counts
    radius = np.full((C, 1), cfg.radius_m)
    if cfg.radius_range_m is not None:
        a, b = np.log(cfg.radius_range_m)
        radius = np.exp(gen.uniform(a, b, (C, 1)))
    if cfg.geometry == "disc":
        r = np.sqrt(gen.uniform(cfg.min_distance_m**2, radius**2, (C, U)))
    else:
        xy = gen.uniform(-radius[..., None], radius[..., None], (C, U, 2))
        r = np.maximum(np.hypot(xy[..., 0], xy[..., 1]), max(cfg.min_distance_m, 1.0))
    pl_db = cfg.pathloss_a_db + cfg.pathloss_b * np.log10(r / 1e3)
    psd_dbm = cfg.tx_power_dbm - 10 * np.log10(cfg.bandwidth_hz)
    snr_db = psd_dbm - pl_db + cfg.rx_gain_db - cfg.noise_psd_dbm_hz - cfg.noise_figure_db
    snr = 10.0 ** (snr_db / 10.0)
    if not cfg.rayleigh:
        uthr = np.full((C, U), -1.0)
    elif cfg.se_cap is None:
        uthr = np.zeros((C, U))
    else:
        thr = (cfg.se_log_base**cfg.se_cap - 1.0) / snr
        uthr = np.exp(-thr)
    # initial regimes and ON states from their stationary laws
    regime = np.zeros((C, N_SLICES), np.int64)
    on = np.zeros((C, U), np.int8)
    for n, tr in enumerate(cfg.traffic):
        regime[:, n] = gen.random(C) < tr.regime_stationary()[1]
        for c in range(C):
            sl = slice(lo[c, n], hi[c, n])
            on[c, sl] = gen.random(counts[c, n]) < tr.on_prob[regime[c, n]]
    slice_of = np.stack([np.repeat(np.arange(N_SLICES), counts[c]) for c in range(C)])
    return {"counts": counts, "lo": lo, "hi": hi, "snr": snr, "uthr": uthr, "regime": regime,
            "on": on, "slice_of": slice_of}


def _initial_load(cfg: SimConfig, day0: np.ndarray) -> np.ndarray:
    """Mean offered-load multiplier per cell and slice at reset (no noise, no surge)."""
    m = np.tile(np.asarray(cfg.base_load, np.float64), (len(day0), 1))
    if cfg.diurnal is not None:
        m = m * cfg.diurnal.curve(24.0 * (day0 % cfg.diurnal.day_windows) / cfg.diurnal.day_windows)
    return m
