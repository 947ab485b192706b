"""Slice catalogue: names, S-NSSAI identities and SLAs.

The slice order (VoLTE, video, URLLC) is fixed everywhere: state vectors, actions, reports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SliceSpec:
    name: str
    rate_sla_bps: float  # per-user rate a packet must be served at to count as SLA-met
    latency_sla_s: float  # packet delay bound (arrival -> fully delivered)
    sst: int  # 3GPP slice/service type (1 eMBB, 2 URLLC, 3 MIoT, 4 V2X)
    sd: str | None = None  # 24-bit slice differentiator as 6 hex digits

    @property
    def snssai(self) -> str:
        """S-NSSAI rendered as ``SST`` or ``SST-SD`` (e.g. ``1-000001``)."""
        return f"{self.sst}" if self.sd is None else f"{self.sst}-{self.sd}"


DEFAULT_SLICES: tuple[SliceSpec, ...] = (
    SliceSpec("volte", rate_sla_bps=51e3, latency_sla_s=10e-3, sst=1, sd="000001"),
    SliceSpec("video", rate_sla_bps=100e6, latency_sla_s=10e-3, sst=1, sd="000002"),
    SliceSpec("urllc", rate_sla_bps=10e6, latency_sla_s=1e-3, sst=2, sd="000003"),
)

SLICE_NAMES: tuple[str, ...] = tuple(s.name for s in DEFAULT_SLICES)
N_SLICES = len(DEFAULT_SLICES)


class UnknownSliceError(ValueError):
    pass


def slice_index(key: str, slices: tuple[SliceSpec, ...] = DEFAULT_SLICES) -> int:
    """Index of a slice given its name (case-insensitive) or its S-NSSAI (``1-000001``)."""
    k = key.strip().lower()
    for i, s in enumerate(slices):
        if k == s.name or k == s.snssai.lower():
            return i
    known = ", ".join(f"{s.name} ({s.snssai})" for s in slices)
    raise UnknownSliceError(f"unknown slice {key!r}; known slices: {known}")
