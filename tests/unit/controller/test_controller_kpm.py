"""O-RAN adapter: KPM measurements (label and name-suffix forms) -> RRMPolicyRatio."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from controller.app import create_app
from controller.settings import ControllerSettings

SNSSAI = {"volte": (1, "000001"), "video": (1, "000002"), "urllc": (2, "000003")}
VALUES = {"volte": (100, 95, 90, 50.0), "video": (1000, 800, 400, 20000.0),
          "urllc": (10, 9, 5, 8000.0)}


def kpm(cell: str, window: int, form: str) -> dict:
    ms = []
    for name, (sst, sd) in SNSSAI.items():
        arr, dlv, met, thp = VALUES[name]
        for meas, v in (("SliceTwin.PktArrivedDl", arr), ("SliceTwin.PktDeliveredDl", dlv),
                        ("SliceTwin.PktSlaMetDl", met), ("DRB.UEThpDl", thp),
                        ("DRB.RlcSduDelayDl", 42), ("RRU.PrbUsedDl", 30)):
            if form == "label":
                ms.append({"name": meas, "value": v, "labels": {"sliceID": {"sST": sst,
                                                                            "sD": sd}}})
            elif form == "suffix":
                ms.append({"name": f"{meas}.{sst}-{sd}", "value": v})
            else:  # O-RAN hex octets: SST as 2 hex digits + SD
                ms.append({"name": f"{meas}.{sst:02x}{sd}", "value": v})
    return {"cell_id": cell, "window": window, "granularity_period_ms": 200, "measurements": ms}


@pytest.fixture()
def client():
    app = create_app(ControllerSettings(rrm_max_headroom_pct=10))
    with TestClient(app) as c:
        yield c


def test_label_suffix_and_hex_forms_decide_the_same(client):
    got = [client.post("/v1/e2/kpm", json=kpm(f"k-{f}", 0, f)) for f in
           ("label", "suffix", "hex")]
    for r in got:
        assert r.status_code == 200, r.text
    lists = [r.json()["rrmPolicyRatioList"] for r in got]
    assert lists[0] == lists[1] == lists[2]
    # and the same decision as the plain JSON report with the same KPIs
    plain = {"cell_id": "plain", "window": 0, "slices": [
        {"slice": n, "arrived_packets": a, "delivered_packets": d, "sla_met_packets": m,
         "throughput_bps": t * 1e3, "spectral_efficiency": t * 1e3 / 20e6, "latency_mean_ms": 4.2}
        for n, (a, d, m, t) in VALUES.items()]}
    ans = client.post("/v1/reports", json=plain).json()
    pct = [round(a["prb_ratio"] * 100) for a in ans["allocation"]]
    assert [x["rRMPolicyDedicatedRatio"] for x in lists[0]] == pct


def test_rrm_policy_ratio_rules(client):
    body = client.post("/v1/e2/kpm", json=kpm("rules", 0, "label")).json()
    lst = body["rrmPolicyRatioList"]
    assert [x["rRMPolicyMemberList"][0]["snssai"] for x in lst] == [
        {"sST": 1, "sD": "000001"}, {"sST": 1, "sD": "000002"}, {"sST": 2, "sD": "000003"}]
    assert all(x["rRMPolicyMemberList"][0]["plmnId"] == "00101" for x in lst)
    for x in lst:
        ded, mn, mx = x["rRMPolicyDedicatedRatio"], x["rRMPolicyMinRatio"], x["rRMPolicyMaxRatio"]
        assert 0 <= ded <= mn <= mx <= 100 and isinstance(ded, int)
        assert mx == min(100, ded + 10)  # configured head-room
    assert sum(x["rRMPolicyDedicatedRatio"] for x in lst) <= 100
    assert abs(sum(x["bandwidthHz"] for x in lst) - 20e6) < 1
    assert body["policy_version"] == "init-0" and body["fallback"] is False


@pytest.mark.parametrize("mutate,needle", [
    (lambda b: b["measurements"].append({"name": "DRB.Bogus.1-000001", "value": 1}),
     "unknown measurement"),
    (lambda b: b["measurements"].append({"name": "DRB.UEThpDl.9-ffffff", "value": 1}),
     "unknown S-NSSAI"),
    (lambda b: b["measurements"].append({"name": "DRB.UEThpDl", "value": 1}), "no slice"),
    (lambda b: b["measurements"].__setitem__(0, {**b["measurements"][0], "value": -1}),
     ">= 0"),
    (lambda b: b.__setitem__("measurements", [m for m in b["measurements"]
                                              if "PktSlaMetDl.2-" not in m["name"]]),
     "lacks required measurements: SliceTwin.PktSlaMetDl"),
    (lambda b: b["measurements"].append(dict(b["measurements"][0])), "reported twice"),
    (lambda b: b["measurements"].__setitem__(0, {**b["measurements"][0], "value": 1.5}),
     "whole packet count"),
])
def test_bad_kpm_refused_then_next_served(client, mutate, needle):
    b = kpm("bad", 0, "suffix")
    mutate(b)
    r = client.post("/v1/e2/kpm", json=b)
    assert r.status_code == 422 and needle in r.json()["message"], r.text
    assert client.post("/v1/e2/kpm", json=kpm("bad", 0, "suffix")).status_code == 200
