"""The load generator's requests (``slicetwin.ops.loadgen``): which cells and windows each
request reports, in single and batch form, and the ``X-Cell-Id`` header for a balancer's
affinity. A cell's windows must go out in order on one connection."""

from __future__ import annotations

import asyncio
import json

import pytest

from slicetwin.ops.loadgen import LoadConfig, _Bodies, drive


def _split(raw: bytes) -> tuple[list[str], dict]:
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
    assert length == len(body)
    return lines, json.loads(body)


def test_single_reports_walk_the_cells_then_the_windows():
    b = _Bodies(LoadConfig(cells=4, connections=2))
    got = []
    for i in range(8):
        lines, body = _split(b.request(i))
        assert lines[0] == "POST /v1/reports HTTP/1.1"
        assert not any(x.startswith("X-Cell-Id") for x in lines)
        got.append((body["cell_id"], body["window"]))
        assert b.answer_head(i) == b'{"cell_id":"%s","window":%d,' % (
            body["cell_id"].encode(), body["window"])
    assert got == [(f"soak-{i % 4}", i // 4) for i in range(8)]


def test_batches_carry_a_group_of_cells_and_the_header_names_the_first():
    b = _Bodies(LoadConfig(cells=8, connections=2, batch=2, cell_header=True, api_key="k" * 20))
    lines, body = _split(b.request(5))  # group 5 % 4 = 1, window 5 // 4 = 1
    assert lines[0] == "POST /v1/reports:batch HTTP/1.1"
    assert "X-Cell-Id: soak-2" in lines and f"Authorization: Bearer {'k' * 20}" in lines
    assert [(r["cell_id"], r["window"]) for r in body["reports"]] == [("soak-2", 1),
                                                                     ("soak-3", 1)]
    assert b.answer_head(5) == b'{"decisions":[{"cell_id":"soak-2","window":1,'


@pytest.mark.parametrize("cells, connections, batch", [(10, 4, 1), (8, 2, 3)])
def test_cells_that_would_share_connections_out_of_order_are_refused(cells, connections, batch):
    with pytest.raises(ValueError, match="multiple of connections"):
        asyncio.run(drive(1, LoadConfig(cells=cells, connections=connections, batch=batch)))
