"""The batch endpoint's msgspec fast path: same columns as the pydantic path on canonical
bodies, and it steps aside (None) for everything it does not handle exactly like pydantic."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from controller.schemas import BATCH_ADAPTER, columns, fast_batch_columns, fast_report
from slicetwin.ops.bench.controller import ReportMaker

pytest.importorskip("msgspec")


def _general(raw: bytes):
    return columns(BATCH_ADAPTER.validate_json(raw)["reports"])


def test_fast_path_matches_general_path():
    raw = ReportMaker(50, seed=3).batch(50)
    fast, ref = fast_batch_columns(raw), _general(raw)
    assert fast is not None
    assert fast.ids == ref.ids and fast.windows == ref.windows
    for k in ("arrived", "sla", "se"):
        np.testing.assert_array_equal(getattr(fast, k), getattr(ref, k))
    assert fast.allocations == ref.allocations == [None] * 50


def test_fast_path_keeps_allocations():
    body = json.loads(ReportMaker(2, seed=1).batch(2))
    alloc = [{"slice": s, "bandwidth_hz": bw, "prb_ratio": bw / 20e6}
             for s, bw in (("volte", 2e6), ("video", 16e6), ("urllc", 2e6))]
    body["reports"][1]["allocation"] = alloc
    raw = json.dumps(body).encode()
    assert fast_batch_columns(raw).allocations == _general(raw).allocations == [None, alloc]


@pytest.mark.parametrize("mutate", [
    lambda r: r.__setitem__("window", float(r["window"])),  # lax int: pydantic accepts
    lambda r: r["slices"].reverse(),  # other slice order: general path reorders
    lambda r: r["slices"][0].__setitem__("sla_met_packets", 10**6),  # > delivered: 422 there
    lambda r: r["slices"][0].__setitem__("arrived_packets", -1),  # invalid: 422 there
    lambda r: r.__setitem__("window_ms", None),  # null where pydantic refuses it
    lambda r: r.__setitem__("extra", 1),  # unknown field
    lambda r: r["slices"].pop(),  # missing slice
])
def test_fast_path_steps_aside(mutate):
    body = json.loads(ReportMaker(3, seed=2).batch(3))
    mutate(body["reports"][1])
    assert fast_batch_columns(json.dumps(body).encode()) is None


def test_fast_path_refuses_nan():
    raw = re.sub(rb'"spectral_efficiency":[-+.0-9e]+', b'"spectral_efficiency":NaN',
                 ReportMaker(1, seed=0).batch(1), count=1)
    assert b"NaN" in raw
    assert fast_batch_columns(raw) is None


def test_fast_report_matches_pydantic():
    from slicetwin.core.schemas import KPIReport

    mk = ReportMaker(4, seed=5)
    for _ in range(10):
        raw = mk.one()
        a, b = fast_report(raw), KPIReport.model_validate_json(raw)
        assert (a.cell_id, a.window, a.allocation) == (b.cell_id, b.window, b.allocation)
        for x, y in zip(a.slices, b.slices, strict=True):
            assert (x.slice, x.arrived_packets, x.delivered_packets, x.sla_met_packets,
                    x.spectral_efficiency) == (y.slice, y.arrived_packets, y.delivered_packets,
                                               y.sla_met_packets, y.spectral_efficiency)


@pytest.mark.parametrize("mutate", [
    lambda r: r["slices"].reverse(),
    lambda r: r["slices"][0].__setitem__("slice", "1-000001"),  # S-NSSAI: pydantic maps it
    lambda r: r["slices"][2].__setitem__("sla_met_packets", 10**6),
    lambda r: r.__setitem__("window", "7"),
    lambda r: r.__setitem__("extra", True),
])
def test_fast_report_steps_aside(mutate):
    body = json.loads(ReportMaker(1, seed=4).one())
    mutate(body)
    assert fast_report(json.dumps(body).encode()) is None
