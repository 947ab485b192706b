"""Simulator hyper-parameters in one dataclass, with the named profiles ``paper`` and ``reference``.

Every *choose* decision of ``shared/sim_spec.md`` is a field here; docs/simulator.md says why each
default was picked. Bad values raise ``ValueError`` with a message naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from slicetwin.core.actions import ActionCodec
from slicetwin.core.slices import DEFAULT_SLICES, N_SLICES, SliceSpec, slice_index
from slicetwin.core.utility import UtilityConfig
from slicetwin.sim.traffic import Dist

PROFILES = ("paper", "reference", "diurnal", "flash-crowd", "hetero", "foreign", "schedule")
# profiles with an arrival-rate load model or heterogeneous cells (docs/simulator.md "Profiles
# where adapting pays"); "schedule" is a sequence of phases (``SimConfig.schedule``)
LOAD_PROFILES = ("diurnal", "flash-crowd", "hetero")
GEOMETRIES = ("disc", "square")


@dataclass(frozen=True)
class SliceTraffic:
    """Per-user traffic of one slice plus its load dynamics.

    Load dynamics: each slice of each cell has a hidden two-state regime (0 quiet, 1 busy), a
    Markov chain stepped once per window (``regime_leave[r]`` = probability of leaving regime r).
    Each user is ON or OFF; once per window it keeps its state with probability ``on_persist``,
    otherwise it is redrawn ON with probability ``on_prob[regime]``. OFF users emit no packets
    (a user turning ON starts at a forward-recurrence time, so ON periods see a stationary
    renewal process; see ``_kernel._sample_fwd``).
    """

    interarrival: Dist  # seconds
    size: Dist  # bits
    on_prob: tuple[float, float] = (1.0, 1.0)
    regime_leave: tuple[float, float] = (0.0, 0.0)
    on_persist: float = 0.0

    def __post_init__(self) -> None:
        for name in ("on_prob", "regime_leave"):
            v = getattr(self, name)
            if len(v) != 2 or not all(0.0 <= x <= 1.0 for x in v):
                raise ValueError(f"{name} must be two probabilities in [0, 1], got {v}")
        if not 0.0 <= self.on_persist <= 1.0:
            raise ValueError(f"on_persist must be in [0, 1], got {self.on_persist}")

    def regime_stationary(self) -> tuple[float, float]:
        a, b = self.regime_leave  # leave quiet, leave busy
        if a + b == 0:
            return (1.0, 0.0)
        return (b / (a + b), a / (a + b))

    def mean_on_fraction(self) -> float:
        pq, pb = self.regime_stationary()
        return pq * self.on_prob[0] + pb * self.on_prob[1]

    def mean_packets_per_user(self, window_s: float) -> float:
        """Analytic expected packets per user per window (stationary)."""
        return self.mean_on_fraction() * window_s / self.interarrival.mean()


# ---------------------------------------------------------------------------------------------
# Load models: an arrival-rate multiplier per cell, slice and window
# ---------------------------------------------------------------------------------------------
HOURS = 24
# Daily curves: the offered-load multiplier of each slice at each hour (00:00 .. 23:00, linear in
# between). VoLTE follows the working day; video is the evening and night service (19-06 h) and
# URLLC the factory's day shifts (07-18 h), each with (almost) no sessions outside its hours, so
# the best split turns over twice a day. Peak levels are where each slice gains most from the
# whole carrier (docs/simulator.md, "diurnal", calibration).
VOLTE_DAY = (0.3, 0.2, 0.15, 0.1, 0.1, 0.2, 0.5, 1.2, 2.0, 2.4, 2.5, 2.4,
             2.2, 2.4, 2.5, 2.4, 2.2, 2.0, 1.6, 1.2, 1.0, 0.8, 0.6, 0.4)
VIDEO_DAY = (0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.1, 0.001, 0.001, 0.001, 0.001, 0.001,
             0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.1, 0.6, 0.6, 0.6, 0.6, 0.6)
URLLC_DAY = (0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.3, 1.2, 1.2, 1.2, 1.2, 1.2,
             1.2, 1.2, 1.2, 1.2, 1.2, 1.2, 0.3, 0.001, 0.001, 0.001, 0.001, 0.001)


@dataclass(frozen=True)
class DiurnalLoad:
    """Each slice's offered load follows its own daily curve, one day = ``day_windows`` windows.

    m_n(w) = curve_n(hour(w)) * exp(noise_sd * z - noise_sd^2 / 2), z ~ N(0, 1) drawn per cell,
    slice and window (mean-one log-normal noise); hour(w) = 24 * ((offset + w) mod day_windows)
    / day_windows. m < 1 scales the share of the slice's users that are ON, m > 1 the ON users'
    arrival rate, so the expected arrivals are m times the paper profile's. ``offset`` is drawn
    per reset: per cell (the default: an evaluation batch samples cell-hours across the day) or
    one for all cells (``shared_clock``)."""

    day_windows: int = 3000  # 3,000 windows of 200 ms: a day in 10 minutes
    curves: tuple[tuple[float, ...], ...] = (VOLTE_DAY, VIDEO_DAY, URLLC_DAY)
    noise_sd: float = 0.25
    random_start: bool = True  # False: every reset starts at 00:00
    shared_clock: bool = False  # True: all cells of a simulator share one time of day

    def __post_init__(self) -> None:
        if not isinstance(self.day_windows, (int, np.integer)) or self.day_windows < 2:
            raise ValueError(f"day_windows must be an integer >= 2, got {self.day_windows!r}")
        if len(self.curves) != N_SLICES or any(len(c) != HOURS for c in self.curves):
            raise ValueError(f"curves must give {HOURS} hourly multipliers for each of "
                             f"{N_SLICES} slices")
        if any(not (math.isfinite(x) and x > 0) for c in self.curves for x in c):
            raise ValueError("curve multipliers must be positive and finite")
        if not (math.isfinite(self.noise_sd) and 0 <= self.noise_sd <= 2):
            raise ValueError(f"noise_sd must be in [0, 2], got {self.noise_sd}")

    def table(self) -> np.ndarray:
        """(3, 25) hourly multipliers with hour 24 = hour 0 (the kernel interpolates)."""
        c = np.asarray(self.curves, np.float64)
        return np.concatenate([c, c[:, :1]], axis=1)

    def curve(self, hour: np.ndarray | float) -> np.ndarray:
        """Mean multiplier per slice at ``hour`` (any shape) -> (..., 3)."""
        h = np.mod(np.asarray(hour, np.float64), HOURS)
        tab = self.table()
        i = np.floor(h).astype(np.int64)
        f = h - i
        return np.stack([tab[n, i] * (1 - f) + tab[n, i + 1] * f for n in range(N_SLICES)], -1)


@dataclass(frozen=True)
class FlashCrowds:
    """Random surges of one slice: onsets are Poisson (``rate`` per window per cell, only while no
    surge runs), the slice is drawn by ``slice_weights``, its arrival rate is multiplied by
    m ~ U[mult_min, mult_max] for d ~ U{dur_min .. dur_max} windows."""

    rate: float = 1 / 60  # onsets per window while idle: calm spells of 12 s on average
    mult_min: float = 3.0
    mult_max: float = 6.0
    dur_min: int = 30
    dur_max: int = 300
    slice_weights: tuple[float, ...] = (0.2, 1.0, 1.0)  # VoLTE crowds are rarer

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")
        if not 0 < self.mult_min <= self.mult_max:
            raise ValueError("need 0 < mult_min <= mult_max")
        if not 1 <= self.dur_min <= self.dur_max:
            raise ValueError("need 1 <= dur_min <= dur_max")
        w = self.slice_weights
        if len(w) != N_SLICES or min(w) < 0 or sum(w) <= 0:
            raise ValueError(f"slice_weights must be {N_SLICES} non-negative weights, sum > 0")

    @property
    def mean_duration(self) -> float:
        return 0.5 * (self.dur_min + self.dur_max)

    def surge_fraction(self) -> float:
        """Long-run share of windows inside a surge: the idle gap is geometric with mean
        1 / rate (an onset is tried in each idle window), then a surge of mean_duration."""
        return self.mean_duration / (self.mean_duration + 1.0 / self.rate)

    def encode(self) -> np.ndarray:
        w = np.asarray(self.slice_weights, np.float64)
        cw = np.cumsum(w / w.sum())
        return np.array([self.rate, self.mult_min, self.mult_max, self.dur_min, self.dur_max,
                         cw[0], cw[1], 1.0])


# ---------------------------------------------------------------------------------------------
# Traffic profiles
# ---------------------------------------------------------------------------------------------
def paper_traffic() -> tuple[SliceTraffic, SliceTraffic, SliceTraffic]:
    """Table of sim_spec.md (Li et al. 2018 / 3GPP TR 36.814) with documented choices.

    URLLC sizes keep the table's truncated log-normal *shape* (mean : std : max = 2 : 0.722 : 5)
    with the unit scaled from 1 MB to 15 kB (mean 30 kB): 2 MB cannot be delivered in 1 ms on
    20 MHz (16 Gbit/s); at 30 kB a mean packet needs most of the carrier for one or two slots,
    so URLLC's need swings from nothing to nearly everything. Load regimes (quiet, busy) make
    the best split state-dependent; see docs/simulator.md for the calibration.
    """
    kb = 8e3
    urllc_unit = 15 * kb
    return (
        SliceTraffic(Dist.uniform(0.0, 0.160), Dist.const(320.0),
                     on_prob=(0.3, 0.9), regime_leave=(0.2, 0.2), on_persist=0.8),
        SliceTraffic(Dist.tpareto_mean(1.2, 6e-3, 12.5e-3), Dist.tpareto_mean(1.2, 800.0, 2000.0),
                     on_prob=(0.0, 1.0), regime_leave=(0.3, 0.15), on_persist=0.5),
        SliceTraffic(Dist.exp(0.180),
                     Dist.tlognormal_mean(2 * urllc_unit, 0.722 * urllc_unit, 5 * urllc_unit),
                     on_prob=(0.0, 1.0), regime_leave=(0.3, 0.15), on_persist=0.5),
    )


def busy_traffic() -> tuple[SliceTraffic, SliceTraffic, SliceTraffic]:
    """``paper_traffic`` without quiet spells: each slice stays in its busy regime (load then
    varies only through a load model: daily curves, surges, per-cell mixes)."""
    return tuple(replace(t, on_prob=(t.on_prob[1], t.on_prob[1])) for t in paper_traffic())


def reference_traffic() -> tuple[SliceTraffic, SliceTraffic, SliceTraffic]:
    """GAN-DDQN reference code: always-on users, Lomax-capped video, URLLC 0.3..0.7 MB."""
    mb = 8e6
    return (
        SliceTraffic(Dist.uniform(0.0, 0.160), Dist.const(320.0)),
        SliceTraffic(Dist.lomax_capped(1.2, 6e-3, 12.5e-3), Dist.lomax_capped(1.2, 800.0, 2000.0)),
        SliceTraffic(Dist.exp(0.180), Dist.choice(0.3 * mb, 0.1 * mb, 5)),
    )


@dataclass(frozen=True)
class SimConfig:
    """All simulator parameters. Defaults = the ``paper`` profile."""

    profile: str = "paper"
    # geometry and users
    n_users: int = 100
    users_per_slice: tuple[int, ...] | Mapping[str, int] | None = (46, 46, 8)
    split_weights: tuple[float, ...] = (6.0, 6.0, 1.0)  # used when users_per_slice is None
    geometry: str = "disc"  # disc of radius_m, or the reference's square [-r, r]^2
    radius_m: float = 40.0
    min_distance_m: float = 5.0
    # carrier, action resolution, scheduling
    bandwidth_hz: float = 20e6
    n_units: int = 100  # allocation units (100 x 200 kHz -> 4851 actions; 20 -> 171)
    rb_hz: float = 200e3  # scheduling resource block; a slice gets floor(bw / rb_hz) RBs
    slot_s: float = 0.5e-3
    slots_per_window: int = 400
    carry_backlog: bool = True
    latency_check: str = "completion"  # completion: arrival -> last bit; access: -> first bit
    rate_check: str = "transmission"  # transmission: size / service time; slot: PHY rate at end
    buffer_packets: int = 32  # per-user FIFO; arrivals to a full buffer are dropped
    discard_late: tuple[bool, ...] = (False, False, False)  # per slice: drop packets past SLA
    # channel
    tx_power_dbm: float = 46.0
    noise_psd_dbm_hz: float = -174.0
    noise_figure_db: float = 9.0
    rx_gain_db: float = 0.0
    pathloss_a_db: float = 128.1  # PL = a + b log10(d / km)
    pathloss_b: float = 37.6
    rayleigh: bool = True  # |h|^2 ~ Exp(1) per user and slot
    shadowing_db: float = 0.0  # log-normal shadowing std, redrawn per slot (reference: 8)
    se_log_base: float = 2.0  # Shannon log2; the reference code uses log10
    se_cap: float | None = 7.4063  # per-layer cap: 3GPP CQI 15 (256-QAM, rate 948/1024)
    se_multiplier: float = 4.0  # spatial layers (4x4 MIMO); the reference uses 64
    # traffic and dynamics
    traffic: tuple[SliceTraffic, ...] | Mapping[str, SliceTraffic] = field(
        default_factory=paper_traffic)
    slices: tuple[SliceSpec, ...] = DEFAULT_SLICES
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    # load models and cell heterogeneity (profiles diurnal, flash-crowd, hetero)
    base_load: tuple[float, ...] = (1.0, 1.0, 1.0)  # offered-load multiplier per slice
    diurnal: DiurnalLoad | None = None  # daily arrival-rate curves per slice
    flash: FlashCrowds | None = None  # random surges of one slice
    mix_concentration: float | None = None  # per-cell user mix ~ Dirichlet(this * mean shares)
    radius_range_m: tuple[float, float] | None = None  # per-cell radius, log-uniform in range
    # phases of a schedule: (config, windows) pairs run in order; the last one stays
    schedule: tuple[tuple[SimConfig, int], ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        if self.latency_check not in ("access", "completion"):
            raise ValueError(f"latency_check must be 'access' or 'completion', "
                             f"got {self.latency_check!r}")
        if self.rate_check not in ("transmission", "slot"):
            raise ValueError(f"rate_check must be 'transmission' or 'slot', got {self.rate_check!r}")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"unknown geometry {self.geometry!r}; known: {', '.join(GEOMETRIES)}")
        # mappings keyed by slice name / S-NSSAI -> tuples in slice order
        if isinstance(self.traffic, Mapping):
            object.__setattr__(self, "traffic", self._by_slice(self.traffic, "traffic"))
        if isinstance(self.users_per_slice, Mapping):
            object.__setattr__(self, "users_per_slice",
                               self._by_slice(self.users_per_slice, "users_per_slice"))
        if len(self.slices) != N_SLICES:
            raise ValueError(f"slices must list {N_SLICES} slices (volte, video, urllc)")
        if len(self.traffic) != N_SLICES or not all(
                isinstance(t, SliceTraffic) for t in self.traffic):
            raise ValueError(f"traffic must give one SliceTraffic per slice ({N_SLICES})")
        pos = {"bandwidth_hz": self.bandwidth_hz, "rb_hz": self.rb_hz, "slot_s": self.slot_s,
               "radius_m": self.radius_m, "se_multiplier": self.se_multiplier}
        for k, v in pos.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{k} must be a positive finite number, got {v!r}")
        for k in ("n_units", "slots_per_window", "buffer_packets", "n_users"):
            v = getattr(self, k)
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if self.n_units < N_SLICES:
            raise ValueError(f"n_units must be >= {N_SLICES} (each slice gets >= 1 unit)")
        if self.rb_hz > self.bandwidth_hz / self.n_units + 1e-6:
            raise ValueError(f"rb_hz ({self.rb_hz}) must not exceed one allocation unit "
                             f"({self.bandwidth_hz / self.n_units} Hz)")
        if not 0 <= self.min_distance_m < self.radius_m:
            raise ValueError("min_distance_m must be in [0, radius_m)")
        if self.se_cap is not None and not self.se_cap > 0:
            raise ValueError(f"se_cap must be > 0 or None, got {self.se_cap}")
        if self.se_log_base <= 1:
            raise ValueError("se_log_base must be > 1")
        if self.shadowing_db < 0:
            raise ValueError("shadowing_db must be >= 0")
        if self.users_per_slice is not None:
            u = tuple(int(x) for x in self.users_per_slice)
            if len(u) != N_SLICES or min(u) < 0 or sum(u) != self.n_users:
                raise ValueError(f"users_per_slice must be {N_SLICES} non-negative counts summing "
                                 f"to n_users={self.n_users}, got {self.users_per_slice}")
            object.__setattr__(self, "users_per_slice", u)
        elif len(self.split_weights) != N_SLICES or min(self.split_weights) < 0 or sum(
                self.split_weights) <= 0:
            raise ValueError("split_weights must be 3 non-negative weights with a positive sum")
        if len(self.discard_late) != N_SLICES:
            raise ValueError(f"discard_late must have {N_SLICES} flags")
        if len(self.utility.beta) != N_SLICES:
            raise ValueError(f"utility.beta must have {N_SLICES} weights")
        if len(self.base_load) != N_SLICES or not all(
                math.isfinite(x) and x > 0 for x in self.base_load):
            raise ValueError(f"base_load must be {N_SLICES} positive multipliers, "
                             f"got {self.base_load}")
        object.__setattr__(self, "base_load", tuple(float(x) for x in self.base_load))
        if self.mix_concentration is not None and not (
                math.isfinite(self.mix_concentration) and self.mix_concentration > 0):
            raise ValueError(f"mix_concentration must be > 0 or None, got {self.mix_concentration}")
        if self.radius_range_m is not None:
            lo, hi = self.radius_range_m
            if not (math.isfinite(hi) and self.min_distance_m < lo <= hi):
                raise ValueError(f"radius_range_m must be (lo, hi) with min_distance_m < lo <= hi, "
                                 f"got {self.radius_range_m}")
        self._check_schedule()
        self.codec  # noqa: B018 -- validates bandwidth / units combination

    # fields every phase of a schedule must share (the carrier, channel and scheduler)
    _SHARED = ("bandwidth_hz", "n_units", "rb_hz", "slot_s", "slots_per_window", "carry_backlog",
               "latency_check", "rate_check", "buffer_packets", "discard_late", "tx_power_dbm",
               "noise_psd_dbm_hz", "noise_figure_db", "rx_gain_db", "pathloss_a_db",
               "pathloss_b", "rayleigh", "shadowing_db", "se_log_base", "se_cap",
               "se_multiplier", "slices", "utility", "n_users")
    # fields that define the cell population (users, mixes, distances): a phase change that
    # alters one of them redraws the users
    POPULATION = ("users_per_slice", "split_weights", "mix_concentration", "geometry",
                  "radius_m", "min_distance_m", "radius_range_m")

    def _check_schedule(self) -> None:
        if not self.schedule:
            if self.profile == "schedule":
                raise ValueError("profile 'schedule' needs at least one phase")
            return
        for i, item in enumerate(self.schedule):
            if len(item) != 2:
                raise ValueError(f"schedule phase {i} must be (SimConfig, windows)")
            cfg, n = item
            if not isinstance(cfg, SimConfig) or cfg.schedule:
                raise ValueError(f"schedule phase {i} must be a SimConfig without a schedule")
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"schedule phase {i}: windows must be a positive integer, got {n!r}")
            for k in self._SHARED:
                if getattr(cfg, k) != getattr(self, k):
                    raise ValueError(f"schedule phase {i} ({cfg.profile}) changes {k}; phases may "
                                     f"change traffic, load and users only")

    def phases(self) -> tuple[tuple[SimConfig, int], ...]:
        """(config, windows) per phase; a config without a schedule is one endless phase."""
        return self.schedule or ((self, 0),)

    def phase_at(self, window: int) -> int:
        """Index of the phase that runs window ``window`` (windows after the last phase's end stay
        in the last phase)."""
        end = 0
        for i, (_, n) in enumerate(self.schedule[:-1]):
            end += n
            if window < end:
                return i
        return max(len(self.schedule) - 1, 0)

    def population(self) -> tuple:
        return tuple(getattr(self, k) for k in self.POPULATION)

    @staticmethod
    def _by_slice(m: Mapping, what: str) -> tuple:
        out: dict[int, object] = {}
        for k, v in m.items():
            out[slice_index(k)] = v  # raises UnknownSliceError listing the known slices
        if len(out) != N_SLICES:
            missing = [s.name for i, s in enumerate(DEFAULT_SLICES) if i not in out]
            raise ValueError(f"{what}: missing slices {', '.join(missing)}")
        return tuple(out[i] for i in range(N_SLICES))

    # -- derived ------------------------------------------------------------------------------
    @property
    def codec(self) -> ActionCodec:
        return ActionCodec(total_bandwidth_hz=float(self.bandwidth_hz), n_units=int(self.n_units))

    @property
    def window_s(self) -> float:
        return self.slot_s * self.slots_per_window

    @property
    def unit_hz(self) -> float:
        return self.bandwidth_hz / self.n_units

    def mean_shares(self) -> np.ndarray:
        """Expected share of users per slice (the centre of a hetero cell's mix)."""
        if self.users_per_slice is None:
            w = np.asarray(self.split_weights, float)
        else:
            w = np.asarray(self.users_per_slice, float)
        return w / w.sum()

    def expected_arrivals(self, hour: float | np.ndarray | None = None) -> np.ndarray:
        """Analytic mean packets per slice per window at the stationary regime mix, for tests
        and scales. Load models: ``hour`` gives the diurnal curve's value at that hour (None: its
        daily mean); flash crowds add their long-run mean surge."""
        users = self.n_users * self.mean_shares()
        base = np.array([users[i] * t.mean_packets_per_user(self.window_s)
                         for i, t in enumerate(self.traffic)]) * np.asarray(self.base_load)
        if self.diurnal is not None:
            base = base * (np.asarray(self.diurnal.curves).mean(1) if hour is None
                           else self.diurnal.curve(hour))
        if self.flash is not None:
            f = self.flash
            w = np.asarray(f.slice_weights, float)
            share = f.surge_fraction() * w / w.sum()  # long-run share of windows in a surge
            base = base * (1.0 - share) + share * self.surge_arrivals(
                0.5 * (f.mult_min + f.mult_max))
        return base

    def surge_arrivals(self, mult: float | np.ndarray) -> np.ndarray:
        """Expected packets per slice per window while that slice is under a flash crowd of
        multiplier ``mult``: the slice is held busy (its busy regime's share of users ON) and
        the ON users' rate is multiplied (steady state, after the ON users have caught up)."""
        users = self.n_users * self.mean_shares()
        busy = np.array([users[i] * t.on_prob[1] * self.window_s / t.interarrival.mean()
                         for i, t in enumerate(self.traffic)])
        return busy * np.asarray(self.base_load) * np.asarray(mult, np.float64)

    def with_(self, **kw) -> SimConfig:
        return replace(self, **kw)

    @classmethod
    def from_profile(cls, name: str = "paper", **overrides) -> SimConfig:
        """A named profile (``PROFILES``) or a schedule string such as
        ``"paper:2000,flash-crowd:2000"`` or ``"paper:1000,mix=20/70/10:1000"``."""
        if ":" in name or "," in name:
            return parse_schedule(name, **overrides)
        if name == "paper":
            return cls(**overrides)
        if name == "diurnal":
            return cls(**{"profile": "diurnal", "traffic": busy_traffic(),
                          "diurnal": DiurnalLoad(), **overrides})
        if name == "flash-crowd":
            return cls(**{"profile": "flash-crowd", "base_load": FLASH_BASE_LOAD,
                          "flash": FlashCrowds(), **overrides})
        if name == "hetero":
            return cls(**{"profile": "hetero", "traffic": busy_traffic(),
                          "base_load": HETERO_BASE_LOAD,
                          "mix_concentration": HETERO_CONCENTRATION,
                          "radius_range_m": HETERO_RADIUS_M, **overrides})
        if name == "foreign":
            return cls(**{"profile": "foreign", **FOREIGN, "diurnal": DiurnalLoad(), **overrides})
        if name.startswith("mix="):
            return cls(**{"users_per_slice": _parse_mix(name[4:]), **overrides})
        if name == "reference":
            base = dict(
                profile="reference", users_per_slice=None, split_weights=(6.0, 6.0, 1.0),
                geometry="square", rb_hz=180e3, carry_backlog=False, buffer_packets=5,
                noise_figure_db=0.0, rx_gain_db=20.0, pathloss_a_db=145.4, pathloss_b=37.5,
                latency_check="completion", rate_check="slot",
                rayleigh=False, shadowing_db=8.0, se_log_base=10.0, se_cap=None,
                se_multiplier=64.0, traffic=reference_traffic(),
                slices=(DEFAULT_SLICES[0], DEFAULT_SLICES[1],
                        replace(DEFAULT_SLICES[2], latency_sla_s=3e-3)),
                utility=UtilityConfig(alpha=0.01, beta=(1.0, 4.0, 6.0)),
            )
            base.update(overrides)
            return cls(**base)
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES[:-1])}, "
                         f"mix=A/B/C, or a schedule like 'paper:2000,flash-crowd:2000'")


# foreign: a gNB unlike the one every policy here was trained on (issue 15, part 4): a 10 MHz
# carrier allocated in 1 MHz units (36 splits, not 4,851) and scheduled on 180 kHz NR resource
# blocks, 50 users in another mix, the diurnal load, and 2 spatial layers instead of 4 (half the
# spectral-efficiency scale)
FOREIGN = {"bandwidth_hz": 10e6, "n_units": 10, "rb_hz": 180e3, "n_users": 50,
           "users_per_slice": (20, 24, 6), "se_multiplier": 2.0}

# flash-crowd: paper's regimes with lighter video and URLLC (0.2 and 0.1 of paper's load) between
# crowds, so a crowd (x3-6) takes its slice from a modest need to needing the whole carrier
FLASH_BASE_LOAD = (1.0, 0.2, 0.1)
# hetero: per-cell mix ~ Dirichlet(2 * (0.46, 0.46, 0.08)) (sd of the video share ~0.29), a
# per-cell radius log-uniform in 40..1000 m (beyond ~500 m the cell edge's SNR leaves the
# CQI-15 cap), always-busy slices, video at 0.3 of paper's per-user load
HETERO_CONCENTRATION = 2.0
HETERO_RADIUS_M = (40.0, 1000.0)
HETERO_BASE_LOAD = (1.0, 0.3, 1.0)


def _parse_mix(text: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(x) for x in text.split("/"))
    except ValueError:
        parts = ()
    if len(parts) != N_SLICES:
        raise ValueError(f"mix must be {N_SLICES} user counts like 46/46/8, got {text!r}")
    return parts


def parse_schedule(text: str, **overrides) -> SimConfig:
    """``"paper:2000,flash-crowd:2000"`` -> a schedule config; each item is PROFILE[:WINDOWS]
    (a profile name or ``mix=A/B/C``); only the last item may omit its windows."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ValueError("empty schedule")
    phases = []
    for i, item in enumerate(items):
        name, _, n = item.rpartition(":") if ":" in item else (item, "", "")
        if not n:
            if i != len(items) - 1:
                raise ValueError(f"schedule item {item!r}: only the last phase may omit WINDOWS")
            n = "1"
        try:
            windows = int(n)
        except ValueError:
            raise ValueError(f"schedule item {item!r}: WINDOWS must be an integer") from None
        if windows < 1:
            raise ValueError(f"schedule item {item!r}: WINDOWS must be >= 1")
        if name == "schedule" or ":" in name or name == "reference":
            raise ValueError(f"schedule item {item!r}: phases are paper, diurnal, flash-crowd, "
                             f"hetero or mix=A/B/C")
        phases.append((SimConfig.from_profile(name, **overrides), windows))
    first = phases[0][0]
    return replace(first, profile="schedule", schedule=tuple(phases))
