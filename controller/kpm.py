"""O-RAN-shaped adapter: E2SM-KPM-style measurements in, RRMPolicyRatio (slice PRB quota) out.

A KPM report is a list of (measurement name, value) per S-NSSAI. Both per-slice forms seen in the
wild are accepted: a ``sliceID`` label ``{"sST": 1, "sD": "000001"}`` on the measurement, or the
S-NSSAI as a name suffix (``DRB.UEThpDl.1-000001``; ``1000001`` / ``01000001`` hex forms and the
slice name also work). Every name carries its unit (table below, docs/api.md); unknown names are
refused with the list of known ones, never silently ignored. The report becomes a ``KPIReport``
and takes exactly the same decision path as ``POST /v1/reports``; the answer is rendered as a
3GPP TS 28.541 RRMPolicyRatio per S-NSSAI (dedicated / min / max ratios in whole percent).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from slicetwin.core.actions import ActionCodec
from slicetwin.core.schemas import KPIReport
from slicetwin.core.slices import DEFAULT_SLICES, SLICE_NAMES, SliceSpec


@dataclass(frozen=True)
class Measurement:
    unit: str
    field: str | None  # SliceKPI field it feeds (None: accepted, informational)
    scale: float = 1.0  # value * scale = our unit
    required: bool = False


# 3GPP TS 28.552 names with the units O-RAN KPM carries; SliceTwin.* are the paper's counters
# (no standard per-slice packet counters exist; a vendor-specific namespace, as 28.552 allows).
MEASUREMENTS: dict[str, Measurement] = {
    "DRB.UEThpDl": Measurement("kbit/s", "throughput_bps", 1e3),
    "DRB.RlcSduDelayDl": Measurement("0.1 ms", "latency_mean_ms", 0.1),
    "DRB.PdcpSduVolumeDL": Measurement("kbit", None),
    "DRB.RlcPacketDropRateDl": Measurement("fraction x 1e6", None),
    "RRU.PrbUsedDl": Measurement("PRB count", None),
    "RRU.PrbAvailDl": Measurement("PRB count", None),
    "RRU.PrbTotDl": Measurement("percent", None),
    "SliceTwin.PktArrivedDl": Measurement("packets", "arrived_packets", required=True),
    "SliceTwin.PktDeliveredDl": Measurement("packets", "delivered_packets", required=True),
    "SliceTwin.PktSlaMetDl": Measurement("packets", "sla_met_packets", required=True),
    "SliceTwin.SpectralEfficiencyDl": Measurement("bit/s/Hz", "spectral_efficiency"),
    "SliceTwin.RlcSduDelayP95Dl": Measurement("0.1 ms", "latency_p95_ms", 0.1),
}
_COUNT_FIELDS = {"arrived_packets", "delivered_packets", "sla_met_packets"}
_SD_RE = re.compile(r"^[0-9a-fA-F]{6}$")


class KpmError(ValueError):
    def __init__(self, loc: list, message: str):
        super().__init__(message)
        self.loc = loc


class SliceIdLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sST: int = Field(ge=0, le=255)
    sD: str | None = Field(default=None, description="6 hex digits")


class KpmLabels(BaseModel):
    model_config = ConfigDict(extra="allow")
    sliceID: SliceIdLabel | None = None


class KpmMeasurement(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=128, description="3GPP TS 28.552 name, optionally "
                      "suffixed with .<S-NSSAI>")
    value: float
    labels: KpmLabels | None = None


class KpmReport(BaseModel):
    """An E2SM-KPM-style indication for one cell and one granularity period."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    cell_id: str = Field(min_length=1, max_length=128)
    window: int = Field(ge=0, le=2**53 - 1, description="collection period counter, increasing "
                        "per cell")
    granularity_period_ms: float = Field(200.0, gt=0, le=60_000)
    measurements: list[KpmMeasurement] = Field(min_length=1, max_length=10_000)


def _snssai_of(sst: int, sd: str | None, slices: tuple[SliceSpec, ...]) -> int | None:
    for i, s in enumerate(slices):
        if s.sst == sst and (s.sd or "").lower() == (sd or "").lower():
            return i
    return None


def _slice_from_suffix(suffix: str, slices: tuple[SliceSpec, ...]) -> int | None:
    t = suffix.strip().lower()
    for i, s in enumerate(slices):
        if t in (s.name, s.snssai.lower()):
            return i
    m = re.fullmatch(r"([0-9a-f]{1,2})-?([0-9a-f]{6})?", t)
    if m:
        sst_txt, sd = m.group(1), m.group(2)
        # "1000001": SST as decimal, "01000001": SST as two hex digits (O-RAN octet string)
        sst = int(sst_txt, 16) if len(sst_txt) == 2 else int(sst_txt)
        return _snssai_of(sst, sd, slices)
    return None


def _split_name(name: str) -> tuple[str, str | None]:
    if name in MEASUREMENTS:
        return name, None
    for base in MEASUREMENTS:
        if name.startswith(base + "."):
            return base, name[len(base) + 1:]
    return name, None


def to_kpi_report(rep: KpmReport, codec: ActionCodec,
                  slices: tuple[SliceSpec, ...] = DEFAULT_SLICES) -> KPIReport:
    """KPM measurements -> KPIReport (raises KpmError naming the measurement at fault)."""
    per: list[dict] = [{} for _ in slices]
    for i, m in enumerate(rep.measurements):
        loc = ["body", "measurements", i]
        base, suffix = _split_name(m.name)
        spec = MEASUREMENTS.get(base)
        if spec is None:
            raise KpmError(loc + ["name"], f"unknown measurement {m.name!r}; known: "
                           f"{', '.join(MEASUREMENTS)} (optionally .<S-NSSAI>)")
        label = m.labels.sliceID if m.labels is not None else None
        if label is not None and suffix is not None:
            raise KpmError(loc, f"{m.name!r}: give the slice either as sliceID label or as name "
                           "suffix, not both")
        if label is not None:
            if label.sD is not None and not _SD_RE.match(label.sD):
                raise KpmError(loc + ["labels", "sliceID", "sD"],
                               f"sD must be 6 hex digits, got {label.sD!r}")
            j = _snssai_of(label.sST, label.sD, slices)
            where = f"sST={label.sST} sD={label.sD}"
        elif suffix is not None:
            j = _slice_from_suffix(suffix, slices)
            where = suffix
        else:
            raise KpmError(loc, f"{m.name!r} has no slice: add labels.sliceID or a .<S-NSSAI> "
                           "suffix")
        if j is None:
            known = ", ".join(f"{s.name} ({s.snssai})" for s in slices)
            raise KpmError(loc, f"unknown S-NSSAI {where} in {m.name!r}; known slices: {known}")
        if not math.isfinite(m.value) or m.value < 0:
            raise KpmError(loc + ["value"], f"{m.name!r} must be a finite value >= 0 "
                           f"({spec.unit}), got {m.value}")
        if base in per[j]:
            raise KpmError(loc, f"{base} reported twice for slice {slices[j].name}")
        per[j][base] = m.value
    kpis = []
    for j, s in enumerate(slices):
        d = per[j]
        missing = [n for n, sp in MEASUREMENTS.items() if sp.required and n not in d]
        if missing:
            raise KpmError(["body", "measurements"],
                           f"slice {s.name} ({s.snssai}) lacks required measurements: "
                           f"{', '.join(missing)}")
        k: dict = {"slice": s.name}
        for n, v in d.items():
            sp = MEASUREMENTS[n]
            if sp.field is None:
                continue
            val = v * sp.scale
            if sp.field in _COUNT_FIELDS:
                if val != int(val):
                    raise KpmError(["body", "measurements"],
                                   f"{n} for {s.name} must be a whole packet count, got {v}")
                val = int(val)
            k[sp.field] = val
        k.setdefault("throughput_bps", 0.0)
        if "spectral_efficiency" not in k:  # slice share of the carrier's bit/s/Hz
            k["spectral_efficiency"] = k["throughput_bps"] / codec.total_bandwidth_hz
        kpis.append(k)
    return KPIReport(cell_id=rep.cell_id, window=rep.window,
                     window_ms=rep.granularity_period_ms, slices=kpis)


def rrm_policy_ratio_list(units, codec: ActionCodec, plmn_id: str, headroom_pct: int = 0,
                          slices: tuple[SliceSpec, ...] = DEFAULT_SLICES) -> list[dict]:
    """Units per slice -> TS 28.541 RRMPolicyRatio per S-NSSAI (whole percent).

    dedicated = min = floor(100 * units / n_units) (so the dedicated and min sums stay <= 100),
    max = min(100, dedicated + head-room); hence dedicated <= min <= max, each in 0..100.
    """
    out = []
    for name, u, s in zip(SLICE_NAMES, units, slices, strict=True):
        ded = int(100 * int(u) // codec.n_units)
        member = {"plmnId": plmn_id, "snssai": {"sST": s.sst, **({"sD": s.sd} if s.sd else {})}}
        out.append({"rRMPolicyMemberList": [member], "sliceName": name,
                    "rRMPolicyDedicatedRatio": ded, "rRMPolicyMinRatio": ded,
                    "rRMPolicyMaxRatio": min(100, ded + headroom_pct),
                    "bandwidthHz": float(u) * codec.unit_hz, "prbRatio": float(u) / codec.n_units})
    return out
