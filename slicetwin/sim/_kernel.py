"""Numba kernel: one 400-slot window for many cells at once.

Random numbers: every cell owns a splitmix64 stream for traffic (on/off, arrivals, sizes), and a
counter-based hash ``(channel key, slot, user)`` for fading. Traffic draws never depend on the
allocation and fading is a pure function of the slot, so copies of one cell stepped with
different allocations see identical arrivals and channels (common random numbers for the oracle).

Work is event/active-user driven: arrivals of the window are generated per user up front and
bucketed by slot; a slot only touches slices that have backlogged users.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import numpy as np

from slicetwin.core.extras import SIM_FEATURE, missing

try:
    from numba import njit, prange
except ModuleNotFoundError as e:  # the `sim` extra (the controller image has no numba)
    raise missing(e, ("numba", "llvmlite"), "sim", SIM_FEATURE) from None

_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K_SLOT = np.uint64(0xD1B54A32D192ED03)
_K_USER = np.uint64(0xABC98388FB8FAC03)
_INV53 = 1.0 / 9007199254740992.0
N_HIST = 2000  # latency histogram: 0.1 ms bins up to 200 ms, plus the running max
HIST_BIN_S = 1e-4

# indices into the float parameter vector P
(P_SLOT, P_NSLOT, P_RB_HZ, P_SE_CAP, P_SE_MULT, P_LOG_BASE, P_SHADOW, P_CARRY, P_QCAP,
 P_LAT_ACCESS, P_RATE_TX, P_BW, P_ALPHA, P_DISCARD) = range(14)
N_P = 17  # P_DISCARD .. P_DISCARD + 2: per-slice discard of packets past their latency SLA


@njit(cache=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _u01(rng, c):
    """Uniform in (0, 1] from cell c's traffic stream (advances it)."""
    s = rng[c] + _GOLD
    rng[c] = s
    return float((_mix(s) >> np.uint64(11)) + np.uint64(1)) * _INV53


@njit(cache=True)
def _hash_u01(key, slot, user, salt):
    z = _mix(key + np.uint64(slot) * _K_SLOT + np.uint64(user) * _K_USER + np.uint64(salt) * _GOLD)
    return float((z >> np.uint64(11)) + np.uint64(1)) * _INV53


@njit(cache=True)
def _normal(rng, c):
    u1 = _u01(rng, c)
    u2 = _u01(rng, c)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)
def _sample(rng, c, d):
    """One draw from an encoded Dist row [kind, p0, p1, p2, d0, d1]."""
    k = int(d[0])
    if k == 0:
        return d[1]
    u = _u01(rng, c)
    v = 1.0 - u  # in [0, 1)
    if k == 1:
        return d[1] + (d[2] - d[1]) * v
    if k == 2:
        return -d[1] * np.log(1.0 - v * d[4])
    if k == 3:  # truncated Pareto: xm / (1 - v c)^(1/a)
        return d[2] / (1.0 - v * d[4]) ** d[5]
    if k == 4:  # capped Lomax: min(scale * (u^(-1/a) - 1), cap)
        x = d[2] * (u ** d[5] - 1.0)
        return x if x < d[3] else d[3]
    if k == 5:  # log-normal conditioned on x <= max (rejection; max is far in the tail)
        for _ in range(1000):
            x = np.exp(d[1] + d[2] * _normal(rng, c))
            if x <= d[3]:
                return x
        return d[3]
    # k == 6: uniform choice over n values
    n = d[3]
    j = np.floor(v * n)
    if j >= n:
        j = n - 1.0
    return d[1] + d[2] * j


@njit(cache=True)
def _dist_max(d):
    k = int(d[0])
    if k == 0:
        return d[1]
    if k == 1 or k == 2:
        return d[2]
    if k == 6:
        return d[1] + d[2] * (d[3] - 1.0)
    return d[3]


@njit(cache=True)
def _sample_fwd(rng, c, d):
    """Forward recurrence time of a stationary renewal process with inter-arrival law d:
    U * X with X length-biased (rejection on X / max; exact). Used when a user turns ON, so ON
    periods see stationary arrivals without running the clocks of OFF users."""
    k = int(d[0])
    if k == 2 and d[2] == np.inf:
        return _sample(rng, c, d)  # memoryless
    mx = _dist_max(d)
    for _ in range(100000):
        x = _sample(rng, c, d)
        if _u01(rng, c) * mx <= x:
            return _u01(rng, c) * x
    return _u01(rng, c) * mx


@njit(cache=True)
def sample_fwd_many(seed, d, n):
    rng = np.empty(1, np.uint64)
    rng[0] = np.uint64(seed)
    out = np.empty(n)
    for i in range(n):
        out[i] = _sample_fwd(rng, 0, d)
    return out


@njit(cache=True)
def sample_many(seed, d, n):
    """n draws of an encoded Dist (test helper for the conformance tests)."""
    rng = np.empty(1, np.uint64)
    rng[0] = np.uint64(seed)
    out = np.empty(n)
    for i in range(n):
        out[i] = _sample(rng, 0, d)
    return out


@njit(cache=True)
def warm_start(rng, slice_of, on, next_arr, inter):
    """Stationary start: each ON user's first arrival is a forward recurrence time."""
    C, U = next_arr.shape
    for c in range(C):
        for u in range(U):
            if on[c, u] == 1:
                next_arr[c, u] = _sample_fwd(rng, c, inter[slice_of[c, u]])


class Traffic(NamedTuple):
    """One phase's per-slice traffic and SLAs, encoded (``simulator._PhaseParams``)."""

    inter: np.ndarray  # encoded inter-arrival distribution per slice
    size: np.ndarray  # encoded packet-size distribution per slice
    rate_sla: np.ndarray
    lat_sla: np.ndarray
    reg_leave: np.ndarray  # regime leave probability per window
    on_prob: np.ndarray
    on_persist: np.ndarray
    beta: np.ndarray  # utility SLA weights


class Cells(NamedTuple):
    """Per-cell state the kernel advances in place (``simulator.SimState``)."""

    rng: np.ndarray
    chan_key: np.ndarray
    now: np.ndarray
    win: np.ndarray
    regime: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    snr: np.ndarray
    uthr: np.ndarray
    on: np.ndarray
    next_arr: np.ndarray
    load: np.ndarray
    crowd: np.ndarray


class Queues(NamedTuple):
    """Per-cell packet queues (``simulator.SimState``)."""

    qa: np.ndarray
    qb: np.ndarray
    qz: np.ndarray
    qs: np.ndarray
    qh: np.ndarray
    qn: np.ndarray
    rr: np.ndarray


class WindowOut(NamedTuple):
    """The window's KPIs, written per cell."""

    arrived: np.ndarray
    delivered: np.ndarray
    met: np.ndarray
    dropped: np.ndarray
    bits: np.ndarray
    lat_mean: np.ndarray
    lat_p95: np.ndarray
    backlog: np.ndarray
    ssr: np.ndarray
    se_out: np.ndarray
    util: np.ndarray


@njit(cache=True)
def _cell_window(c, P, rbs, inter, size, rate_sla, lat_sla, reg_leave, on_prob, on_persist, beta,
                 rng, chan_key, now, win, regime, lo, hi, snr, uthr, on, next_arr, load, crowd,
                 qa, qb, qz, qs, qh, qn, rr,
                 arrived, delivered, met, dropped, bits, lat_mean, lat_p95, backlog, ssr,
                 se_out, util):
    """One window of cell ``c``. Parameters after ``rbs`` are the fields of :class:`Traffic`,
    :class:`Cells`, :class:`Queues` and :class:`WindowOut`, in order (checked at import)."""
    slot = P[P_SLOT]
    n_slots = int(P[P_NSLOT])
    rb_hz = P[P_RB_HZ]
    se_cap = P[P_SE_CAP]
    se_mult = P[P_SE_MULT]
    inv_log_base = 1.0 / np.log(P[P_LOG_BASE])
    shadow = P[P_SHADOW]
    carry = P[P_CARRY] > 0.5
    lat_access = P[P_LAT_ACCESS] > 0.5  # latency SLA on access delay (else completion delay)
    rate_tx = P[P_RATE_TX] > 0.5  # rate SLA on size / transmission time (else slot PHY rate)
    Q = qa.shape[2]
    T = n_slots * slot
    t0 = now[c]
    t1 = t0 + T
    for n in range(3):
        arrived[c, n] = 0
        delivered[c, n] = 0
        met[c, n] = 0
        dropped[c, n] = 0
        bits[c, n] = 0.0
        lat_mean[c, n] = 0.0
        lat_p95[c, n] = np.nan

    # ---- load dynamics: slice regime, then per-user on/off ---------------------------------
    # load model: offered-load multiplier m = load[c, n]; m < 1 scales the share of users that
    # turn ON (fewer sessions), m > 1 the ON users' arrival rate; a flash crowd also holds its
    # slice busy
    for n in range(3):
        if _u01(rng, c) < reg_leave[n, regime[c, n]]:
            regime[c, n] = 1 - regime[c, n]
        if crowd[c] == n:
            regime[c, n] = 1
        m = load[c, n]
        p_on = on_prob[n, regime[c, n]] * (m if m < 1.0 else 1.0)
        lrate = m if m > 1.0 else 1.0
        for u in range(lo[c, n], hi[c, n]):
            if _u01(rng, c) >= on_persist[n]:
                was = on[c, u]
                on[c, u] = 1 if _u01(rng, c) < p_on else 0
                if on[c, u] == 1 and was == 0:
                    next_arr[c, u] = t0 + _sample_fwd(rng, c, inter[n]) / lrate

    # ---- arrivals of the window, generated per user then bucketed by slot --------------------
    cap = 4096
    ev_u = np.empty(cap, np.int64)
    ev_t = np.empty(cap, np.float64)
    ev_b = np.empty(cap, np.float64)
    ne = 0
    for n in range(3):
        d_i = inter[n]
        d_s = size[n]
        lrate = load[c, n] if load[c, n] > 1.0 else 1.0  # ON users' arrival-rate multiplier
        for u in range(lo[c, n], hi[c, n]):
            if on[c, u] == 0:
                continue  # OFF: no arrivals; the clock restarts stationary when it turns ON
            ta = next_arr[c, u]
            while ta < t1:
                if ne == cap:
                    cap *= 2
                    e1 = np.empty(cap, np.int64)
                    e2 = np.empty(cap, np.float64)
                    e3 = np.empty(cap, np.float64)
                    e1[:ne] = ev_u[:ne]
                    e2[:ne] = ev_t[:ne]
                    e3[:ne] = ev_b[:ne]
                    ev_u, ev_t, ev_b = e1, e2, e3
                ev_u[ne] = u
                ev_t[ne] = ta
                ev_b[ne] = _sample(rng, c, d_s)
                ne += 1
                arrived[c, n] += 1
                ta += _sample(rng, c, d_i) / lrate
            next_arr[c, u] = ta
    start = np.zeros(n_slots + 1, np.int64)
    ev_slot = np.empty(ne, np.int64)
    for e in range(ne):
        s = int((ev_t[e] - t0) / slot)
        if s >= n_slots:
            s = n_slots - 1
        elif s < 0:
            s = 0
        ev_slot[e] = s
        start[s + 1] += 1
    for s in range(n_slots):
        start[s + 1] += start[s]
    order = np.empty(ne, np.int64)
    fill = start[:n_slots].copy()
    for e in range(ne):  # stable counting sort keeps each user's packets in time order
        s = ev_slot[e]
        order[fill[s]] = e
        fill[s] += 1

    # ---- slot loop --------------------------------------------------------------------------
    nact = np.zeros(3, np.int64)
    for n in range(3):
        for u in range(lo[c, n], hi[c, n]):
            if qn[c, u] > 0:
                nact[n] += 1
    hist = np.zeros((3, N_HIST), np.int64)
    lat_max = np.zeros(3)
    key = chan_key[c]
    slot0 = win[c] * n_slots
    for s in range(n_slots):
        t_end = t0 + (s + 1) * slot
        for n in range(3):
            m = nact[n]
            k = rbs[c, n]
            if m == 0 or k == 0:
                continue
            nu = hi[c, n] - lo[c, n]
            if m <= k:
                base = k // m
                extra = k - base * m
            else:
                base = 0
                extra = k
            p = rr[c, n]
            seen = 0
            given = 0
            last = -1
            for j in range(nu):
                if seen == m:
                    break
                i = p + j
                if i >= nu:
                    i -= nu
                u = lo[c, n] + i
                if qn[c, u] == 0:
                    continue
                seen += 1
                b = base
                if given < extra:
                    b += 1
                    given += 1
                    last = i
                if b == 0:
                    break
                # channel: |h|^2 ~ Exp(1) (Rayleigh) x optional log-normal shadowing
                hu = _hash_u01(key, slot0 + s, u, 0)
                if shadow > 0.0:
                    hz1 = _hash_u01(key, slot0 + s, u, 1)
                    hz2 = _hash_u01(key, slot0 + s, u, 2)
                    z = np.sqrt(-2.0 * np.log(hz1)) * np.cos(2.0 * np.pi * hz2)
                    g = 10.0 ** (shadow * z / 10.0)
                    if uthr[c, u] >= 0.0:  # rayleigh flag encoded as uthr >= 0
                        g *= -np.log(hu)
                    se = np.log(1.0 + snr[c, u] * g) * inv_log_base
                    if se > se_cap:
                        se = se_cap
                elif uthr[c, u] < 0.0:  # no fading at all
                    se = np.log(1.0 + snr[c, u]) * inv_log_base
                    if se > se_cap:
                        se = se_cap
                elif hu <= uthr[c, u]:  # deep enough draw: capped (exact shortcut)
                    se = se_cap
                else:
                    se = np.log(1.0 - snr[c, u] * np.log(hu)) * inv_log_base
                    if se > se_cap:
                        se = se_cap
                rate = b * rb_hz * se * se_mult
                budget = rate * slot
                ts = t_end - slot
                used = 0.0
                while used < budget and qn[c, u] > 0:
                    h = qh[c, u]
                    rem = qb[c, u, h]
                    if P[P_DISCARD + n] > 0.5 and ts + used / rate - qa[c, u, h] > lat_sla[n]:
                        # discard timer: the packet can no longer meet its deadline
                        dropped[c, n] += 1
                        h += 1
                        if h == Q:
                            h = 0
                        qh[c, u] = h
                        qn[c, u] -= 1
                        if qn[c, u] == 0:
                            nact[n] -= 1
                        continue
                    if qs[c, u, h] < 0.0:
                        qs[c, u, h] = ts + used / rate
                    if rem <= (budget - used) * (1.0 + 1e-12):
                        used += rem
                        bits[c, n] += rem
                        t_done = ts + used / rate
                        delay = t_done - qa[c, u, h]
                        delivered[c, n] += 1
                        lat_ok = (qs[c, u, h] - qa[c, u, h] if lat_access else delay) <= (
                            lat_sla[n] * (1.0 + 1e-9))
                        if rate_tx:
                            rate_ok = qz[c, u, h] >= rate_sla[n] * (t_done - qs[c, u, h]) * (
                                1.0 - 1e-9)
                        else:
                            rate_ok = rate >= rate_sla[n]
                        if lat_ok and rate_ok:
                            met[c, n] += 1
                        lat_mean[c, n] += delay
                        hb = int(delay / HIST_BIN_S)
                        if hb >= N_HIST:
                            hb = N_HIST - 1
                        hist[n, hb] += 1
                        if delay > lat_max[n]:
                            lat_max[n] = delay
                        h += 1
                        if h == Q:
                            h = 0
                        qh[c, u] = h
                        qn[c, u] -= 1
                        if qn[c, u] == 0:
                            nact[n] -= 1
                    else:
                        qb[c, u, h] = rem - (budget - used)
                        bits[c, n] += budget - used
                        used = budget
            if last >= 0:
                rr[c, n] = last + 1 if last + 1 < nu else 0
        # packets that arrived during slot s become schedulable from slot s + 1
        for e in range(start[s], start[s + 1]):
            ev = order[e]
            u = ev_u[ev]
            if qn[c, u] >= Q:
                for n in range(3):
                    if lo[c, n] <= u < hi[c, n]:
                        dropped[c, n] += 1
                continue
            tail = qh[c, u] + qn[c, u]
            if tail >= Q:
                tail -= Q
            qa[c, u, tail] = ev_t[ev]
            qb[c, u, tail] = ev_b[ev]
            qz[c, u, tail] = ev_b[ev]
            qs[c, u, tail] = -1.0
            if qn[c, u] == 0:
                for n in range(3):
                    if lo[c, n] <= u < hi[c, n]:
                        nact[n] += 1
            qn[c, u] += 1

    # ---- window end -------------------------------------------------------------------------
    if not carry:
        for n in range(3):
            for u in range(lo[c, n], hi[c, n]):
                dropped[c, n] += qn[c, u]
                qn[c, u] = 0
                qh[c, u] = 0
    tot_bits = 0.0
    u_sum = 0.0
    for n in range(3):
        dn = delivered[c, n]
        if dn > 0:
            lat_mean[c, n] /= dn
            target = 0.95 * dn
            acc = 0
            for b in range(N_HIST):
                acc += hist[n, b]
                if acc >= target:
                    v = (b + 1) * HIST_BIN_S
                    lat_p95[c, n] = v if v < lat_max[n] else lat_max[n]
                    break
        else:
            lat_mean[c, n] = np.nan
        q = 0
        for u in range(lo[c, n], hi[c, n]):
            q += qn[c, u]
        backlog[c, n] = q
        a = arrived[c, n]
        if a > 0:
            r = met[c, n] / a
            ssr[c, n] = r if r < 1.0 else 1.0
        else:
            ssr[c, n] = 1.0
        u_sum += beta[n] * ssr[c, n]
        tot_bits += bits[c, n]
        bits[c, n] /= T  # -> throughput, bit/s
    se_out[c] = tot_bits / (T * P[P_BW])
    util[c] = P[P_ALPHA] * se_out[c] + u_sum
    now[c] = t1
    win[c] += 1


@njit(cache=True, parallel=True)
def step_cells(P, rbs, inter, size, rate_sla, lat_sla, reg_leave, on_prob, on_persist, beta,
               rng, chan_key, now, win, regime, lo, hi, snr, uthr, on, next_arr, load, crowd,
               qa, qb, qz, qs, qh, qn, rr,
               arrived, delivered, met, dropped, bits, lat_mean, lat_p95, backlog, ssr, se_out,
               util):
    for c in prange(rbs.shape[0]):
        _cell_window(c, P, rbs, inter, size, rate_sla, lat_sla, reg_leave, on_prob, on_persist,
                     beta, rng, chan_key, now, win, regime, lo, hi, snr, uthr, on, next_arr, load,
                     crowd, qa, qb, qz, qs, qh, qn, rr, arrived, delivered, met, dropped, bits,
                     lat_mean, lat_p95, backlog, ssr, se_out, util)


@njit(cache=True)
def step_cells_serial(P, rbs, inter, size, rate_sla, lat_sla, reg_leave, on_prob, on_persist,
                      beta, rng, chan_key, now, win, regime, lo, hi, snr, uthr, on, next_arr,
                      load, crowd, qa, qb, qz, qs, qh, qn, rr, arrived, delivered, met, dropped,
                      bits, lat_mean, lat_p95, backlog, ssr, se_out, util):
    for c in range(rbs.shape[0]):
        _cell_window(c, P, rbs, inter, size, rate_sla, lat_sla, reg_leave, on_prob, on_persist,
                     beta, rng, chan_key, now, win, regime, lo, hi, snr, uthr, on, next_arr, load,
                     crowd, qa, qb, qz, qs, qh, qn, rr, arrived, delivered, met, dropped, bits,
                     lat_mean, lat_p95, backlog, ssr, se_out, util)


def kernel_args(traffic: Traffic, cells: Cells, queues: Queues, out: WindowOut) -> tuple:
    """The kernels' arguments after ``(P, rbs)``: the four structures' fields, in order. Build
    the structures by keyword; flat arguments keep numba's dispatch fast (a tuple of 39 arrays
    cost 40-150 us more per call, measured on one cell)."""
    return (*traffic, *cells, *queues, *out)


def _check_kernel_parameters() -> None:
    """The kernels' parameter order is the structures' field order: fail at import, never
    silently swap two arrays."""
    want = [*Traffic._fields, *Cells._fields, *Queues._fields, *WindowOut._fields]
    for fn, lead in ((_cell_window, ["c", "P", "rbs"]), (step_cells, ["P", "rbs"]),
                     (step_cells_serial, ["P", "rbs"])):
        got = list(inspect.signature(fn.py_func).parameters)
        if got != lead + want:
            raise TypeError(f"{fn.py_func.__name__}: parameters {got[len(lead):]} differ from "
                            f"the fields of Traffic, Cells, Queues, WindowOut {want}")


_check_kernel_parameters()


# salts of the load model's counter-based draws (distinct from the fading draws' 0..2)
_S_NOISE1, _S_NOISE2, _S_ONSET, _S_SLICE, _S_MULT, _S_DUR = 11, 12, 13, 14, 15, 16


@njit(cache=True)
def update_load(chan_key, win, day0, load, surge_left, surge_slice, surge_mult, crowd,
                base, day_tab, day_windows, noise_sd, flash):
    """Offered-load multipliers of the coming window, per cell and slice, into ``load``:
    base x daily curve x surge.

    Draws are hashes of (channel key, window), so copies of a cell (the oracle's) see the same
    load whatever their allocation, and a fresh channel key gives a fresh future (the planner's).
    ``day_windows`` 0: no daily curve; ``flash[0]`` 0: no surges. A surge lasts ``surge_left``
    more windows (counting the coming one); onsets are tried only while none runs; ``crowd[c]``
    is the slice under a surge in the coming window (-1: none).
    """
    C = load.shape[0]
    for c in range(C):
        key = chan_key[c]
        w = win[c]
        for n in range(3):
            load[c, n] = base[n]
        if day_windows > 0:
            pos = (day0[c] + w) % day_windows
            h = 24.0 * pos / day_windows
            i = int(h)
            f = h - i
            for n in range(3):
                m = day_tab[n, i] * (1.0 - f) + day_tab[n, i + 1] * f
                if noise_sd > 0.0:
                    u1 = _hash_u01(key, w, n, _S_NOISE1)
                    u2 = _hash_u01(key, w, n, _S_NOISE2)
                    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
                    m *= np.exp(noise_sd * z - 0.5 * noise_sd * noise_sd)
                load[c, n] = base[n] * m
        if flash[0] > 0.0:
            if surge_left[c] == 0 and _hash_u01(key, w, 0, _S_ONSET) <= flash[0]:
                v = _hash_u01(key, w, 0, _S_SLICE)
                k = 0
                while k < 2 and v > flash[5 + k]:
                    k += 1
                surge_slice[c] = k
                surge_mult[c] = flash[1] + (flash[2] - flash[1]) * (1.0 - _hash_u01(
                    key, w, 0, _S_MULT))
                span = flash[4] - flash[3] + 1.0
                d = flash[3] + np.floor((1.0 - _hash_u01(key, w, 0, _S_DUR)) * span)
                surge_left[c] = int(min(d, flash[4]))
            crowd[c] = -1
            if surge_left[c] > 0:
                load[c, surge_slice[c]] *= surge_mult[c]
                crowd[c] = surge_slice[c]
                surge_left[c] -= 1
