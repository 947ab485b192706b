"""Simulator hyper-parameters in one dataclass, with the named profiles ``paper`` and ``reference``.

Every *choose* decision of ``shared/sim_spec.md`` is a field here; docs/simulator.md says why each
default was picked. Bad values raise ``ValueError`` with a message naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from slicetwin.actions import ActionCodec
from slicetwin.sim.traffic import Dist
from slicetwin.slices import DEFAULT_SLICES, N_SLICES, SliceSpec, slice_index
from slicetwin.utility import UtilityConfig

PROFILES = ("paper", "reference")
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
        self.codec  # noqa: B018 -- validates bandwidth / units combination

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

    def expected_arrivals(self) -> np.ndarray:
        """Analytic mean packets per slice per window (fixed user split), for tests and scales."""
        if self.users_per_slice is None:
            w = np.asarray(self.split_weights, float)
            users = self.n_users * w / w.sum()
        else:
            users = np.asarray(self.users_per_slice, float)
        return np.array([users[i] * t.mean_packets_per_user(self.window_s)
                         for i, t in enumerate(self.traffic)])

    def with_(self, **kw) -> SimConfig:
        return replace(self, **kw)

    @classmethod
    def from_profile(cls, name: str = "paper", **overrides) -> SimConfig:
        if name == "paper":
            return cls(**overrides)
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
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
