"""A fresh install serves a safe heuristic, never a random network, until a trained policy has
passed the gate; the gate's first comparison is with that heuristic (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from controller.app import create_app
from controller.settings import ControllerSettings
from slicetwin.core.actions import ActionCodec
from slicetwin.core.fallback import DemandProportional, StaticSplit, cold_start_policy
from slicetwin.core.state import STATE_SCALES
from slicetwin.registry.store import MemoryRegistry
from tests.support.controller import assert_allocation_ok, report
from trainer.worker import TrainerWorker, WorkerSettings

ARRIVED = [(100, 1000, 10), (5, 3000, 0), (400, 0, 40)]


@pytest.fixture()
def fresh_install(monkeypatch):
    monkeypatch.delenv("SLICETWIN_COLD_START", raising=False)  # the suite's default is init


def _answers(settings: ControllerSettings) -> list[dict]:
    with TestClient(create_app(settings)) as c:
        out = []
        for i, a in enumerate(ARRIVED):
            r = c.post("/v1/reports", json=report(f"cell-{i}", 1, arrived=a))
            assert r.status_code == 200, r.text
            out.append(r.json())
        policy = c.get("/v1/policy").json()
        ready = c.get("/readyz")
        policy["metrics"] = c.get("/metrics").text
    return out, policy, ready


def test_a_fresh_install_serves_the_demand_proportional_heuristic(fresh_install):
    s = ControllerSettings()
    assert s.cold_start == "proportional" and s.model_source == "auto"
    answers, policy, ready = _answers(s)
    codec = ActionCodec()
    heuristic = DemandProportional(codec)
    for a, ans in zip(ARRIVED, answers, strict=True):
        assert ans["fallback"] is True and ans["policy_version"] == "fallback"
        assert ans["action"] == int(heuristic.act(np.asarray(a, float)))  # never a random net
        assert_allocation_ok(ans)
    assert policy["version"] is None and policy["origin"] == "none"
    # the dashboard's "policy in service" panel names the heuristic
    assert ('slicetwin_policy_info{origin="cold-start",sha256="",version="heuristic-proportional"}'
            in policy["metrics"]), policy["metrics"][:2000]
    # it answers, so it is ready (a Service keeps routing to it); the body says with what
    assert ready.status_code == 200 and ready.json()["serving"] == "heuristic-proportional"
    assert ready.json()["checks"]["model_loaded"] is False


def test_the_operator_can_configure_a_static_split(fresh_install):
    answers, _, _ = _answers(ControllerSettings(cold_start="static", static_split="0.2,0.7,0.1"))
    want = ActionCodec().encode(ActionCodec().from_weights(np.array([0.2, 0.7, 0.1])))
    assert {a["action"] for a in answers} == {int(want)}
    with pytest.raises(ValueError, match="static_split"):
        ControllerSettings(cold_start="static")
    with pytest.raises(ValueError, match="three non-negative"):
        ControllerSettings(cold_start="static", static_split="1,2")


def test_cold_start_init_still_serves_a_random_student(fresh_install):
    answers, policy, _ = _answers(ControllerSettings(cold_start="init"))
    assert policy["version"] == "init-0" and not any(a["fallback"] for a in answers)


def test_the_gate_judges_the_first_candidate_against_the_heuristic(fresh_install, tmp_path):
    w = TrainerWorker(WorkerSettings(data_dir=str(tmp_path)), registry=MemoryRegistry())
    act, version, promoted = w._current_policy()
    assert version == "heuristic-proportional" and promoted is False
    states = np.asarray(ARRIVED, np.float32) / STATE_SCALES
    want = DemandProportional(ActionCodec()).act(np.asarray(ARRIVED, float))
    assert act(states).tolist() == list(want)
    static = TrainerWorker(WorkerSettings(data_dir=str(tmp_path / "s"), cold_start="static",
                                          static_split="1,1,1"), registry=MemoryRegistry())
    act, version, _ = static._current_policy()
    assert version == "heuristic-static"
    assert set(act(states).tolist()) == {StaticSplit(ActionCodec(), [1, 1, 1]).action}
    assert isinstance(cold_start_policy(ActionCodec(), "proportional"), DemandProportional)


@pytest.mark.parametrize("batch", [False, True])
def test_a_cold_start_explores_within_the_radius_of_the_heuristic(fresh_install, batch):
    """The trainer needs varied actions before any policy exists; the heuristic is the one
    served, so exploration moves a few units from its split, as it would from a policy's."""
    s = ControllerSettings(explore_epsilon=1.0, explore_budget_per_cell=10**6,
                           explore_radius_units=4, explore_seed=5)
    codec, heuristic = ActionCodec(), DemandProportional(ActionCodec())
    reps = [report(f"c{i}", 1, arrived=a) for i, a in enumerate(ARRIVED * 4)]
    with TestClient(create_app(s)) as c:
        if batch:
            got = c.post("/v1/reports:batch", json={"reports": reps}).json()["decisions"]
        else:
            got = [c.post("/v1/reports", json=r).json() for r in reps]
    for a, ans in zip(ARRIVED * 4, got, strict=True):
        assert ans["fallback"] is True and ans["explored"] is True
        moved = codec.decode(ans["action"]) - codec.decode(int(heuristic.act(np.asarray(a, float))))
        assert moved.sum() == 0 and 1 <= np.abs(moved).sum() // 2 <= 4
        assert_allocation_ok(ans)
