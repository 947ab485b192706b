"""One utility and reward definition (issue 13, item 5): the simulator, twin, trainer and
controller compute utility and shaped reward the same way, with one set of defaults; the
operator's weights (alpha, beta) are validated settings, shown in /v1/policy and /metrics,
recorded in a model's metadata, and a model trained for other weights is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from controller.app import create_app
from controller.settings import ControllerSettings
from slicetwin.core.utility import RewardShaper, UtilityConfig, parse_beta, shaped_reward, ssr
from slicetwin.registry.store import MemoryRegistry
from slicetwin.runtime.onnx_policy import (
    ModelRejected,
    OnnxPolicy,
    build_mlp_onnx,
    default_metadata,
    fresh_policy_onnx,
    init_mlp_weights,
)
from tests.support.controller import controller_process, report

KEY = "utility-test-key"
URLLC_FIRST = (1.0, 4.0, 6.0)  # the GAN-DDQN reference code's weights


# ----------------------------------------------------------------------------- the definition
def test_scalar_and_vector_forms_agree_to_the_bit():
    rng = np.random.default_rng(0)
    for u_cfg, shaper in ((UtilityConfig(), RewardShaper()),
                          (UtilityConfig(0.05, URLLC_FIRST), RewardShaper(2.0, 9.0, 0.3))):
        se = rng.uniform(0, 40, 2000)
        s = rng.uniform(0, 1, (2000, 3))
        s[::7] = 1.0
        u_vec = u_cfg.utility(se, s)
        u_one = u_cfg.scalar()
        assert [u_one(float(a), b.tolist()) for a, b in zip(se, s, strict=True)] == u_vec.tolist()
        t = rng.integers(0, 100_000, 2000)
        t[:5] = [0, 1, 2**40, 10**15, 7]
        utilities = np.concatenate([u_vec[:1000], rng.uniform(0, 12, 1000)])
        utilities[:4] = [shaper.gamma_min, shaper.gamma_max, 0.0, 11.0]  # the edges
        r_vec = shaper.reward(utilities, t)
        r_one = shaper.scalar()
        assert [r_one(float(u), int(k)) for u, k in zip(utilities, t, strict=True)] == \
            r_vec.tolist()
        assert np.array_equal(r_vec, shaped_reward(utilities, t, shaper.gamma_min,
                                                   shaper.gamma_max, shaper.sigma))
        assert set(np.unique(r_vec[r_vec <= 1])) <= {0.0, 1.0} and (r_vec > 1).any()


def test_utility_config_is_validated_with_the_field_named():
    assert UtilityConfig(0, [1, 4, 6]).beta == URLLC_FIRST  # numbers normalised to floats
    for kw, match in (({"alpha": -0.1}, "alpha must be >= 0"),
                      ({"alpha": float("nan")}, "alpha must be finite"),
                      ({"alpha": "0.01"}, "alpha must be a number"),
                      ({"beta": (1.0, 1.0)}, "beta must have 3 weights"),
                      ({"beta": (1.0, -1.0, 1.0)}, "beta weights must be >= 0"),
                      ({"beta": (0.0, 0.0, 0.0)}, "beta weights must have a positive sum"),
                      ({"beta": (1.0, float("inf"), 1.0)}, r"beta\[1\] must be finite"),
                      ({"beta": "1,4,6"}, "beta must be a sequence")):
        with pytest.raises(ValueError, match=match):
            UtilityConfig(**kw)
    assert parse_beta("1,4,6") == parse_beta("[1, 4, 6]") == parse_beta(" 1 , 4 , 6 ") == \
        URLLC_FIRST
    with pytest.raises(ValueError, match="'x' is not a number"):
        parse_beta("1,x,6")


def test_controller_defaults_are_the_core_defaults():
    s = ControllerSettings()
    assert s.reward_shaper == RewardShaper() and s.utility == UtilityConfig()
    assert (s.reward_gamma_min, s.reward_gamma_max, s.reward_sigma) == (
        RewardShaper().gamma_min, RewardShaper().gamma_max, RewardShaper().sigma)


@pytest.mark.parametrize("settings_cls", ["controller", "worker", "twin"])
def test_weights_settings_parse_and_refuse_bad_values(settings_cls, monkeypatch):
    if settings_cls == "controller":
        cls = ControllerSettings
    elif settings_cls == "worker":
        from trainer.worker.settings import WorkerSettings as cls
    else:
        from twin_service.settings import TwinServiceSettings as cls
    assert cls().utility == UtilityConfig()
    for text in ("1,4,6", "[1, 4, 6]", "1.0, 4, 6.0"):
        monkeypatch.setenv("SLICETWIN_UTILITY_BETA", text)
        monkeypatch.setenv("SLICETWIN_UTILITY_ALPHA", "0.02")
        assert cls().utility == UtilityConfig(0.02, URLLC_FIRST)
    for name, bad, match in (("BETA", "1,4", "beta must have 3 weights"),
                             ("BETA", "1,4,6,8", "beta must have 3 weights"),
                             ("BETA", "1,-4,6", "beta weights must be >= 0"),
                             ("BETA", "1,four,6", "'four' is not a number"),
                             ("BETA", "[1, 4", "not a JSON list"),
                             ("BETA", "0,0,0", "positive sum"),
                             ("ALPHA", "-1", "alpha must be >= 0"),
                             ("ALPHA", "inf", "alpha must be finite"),
                             ("ALPHA", "much", "valid number")):
        monkeypatch.setenv("SLICETWIN_UTILITY_BETA", "1,1,1")
        monkeypatch.setenv("SLICETWIN_UTILITY_ALPHA", "0.01")
        monkeypatch.setenv(f"SLICETWIN_UTILITY_{name}", bad)
        with pytest.raises(ValidationError, match=match) as e:
            cls()
        assert f"utility_{name.lower()}" in str(e.value)


def test_bad_reward_settings_refused():
    with pytest.raises(ValidationError, match="reward_gamma_min / reward_gamma_max"):
        ControllerSettings(reward_gamma_min=2.0, reward_gamma_max=1.0)
    with pytest.raises(ValidationError, match="sigma must be >= 0"):
        ControllerSettings(reward_sigma=-1e-3)


def test_controller_cli_start_up_error_names_the_variable(tmp_path):
    import os
    import subprocess
    import sys

    from tests.support.controller import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLICETWIN_UTILITY_BETA": "1,4",
           "SLICETWIN_PORT": "1"}
    p = subprocess.run([sys.executable, "-m", "slicetwin.cli.main", "controller"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "SLICETWIN_UTILITY_BETA='1,4'" in p.stderr and "3 weights" in p.stderr
    assert "Traceback" not in p.stderr


# ----------------------------------------------------------------------------- sim -> controller
def _sim_through_controller(tmp_path: Path, beta: tuple[float, ...], shaper: RewardShaper,
                            env: dict) -> tuple[list[dict], dict]:
    """2 simulator cells x 10 windows (numbered 0..9) in closed loop with a real controller
    process (its allocation is applied to the next window); even windows go to /v1/reports,
    odd ones to /v1/reports:batch. Returns the recorded transitions and the simulator's
    (utility, reward) per (cell, window), the reward with t = the window number."""
    import httpx

    from slicetwin.sim.config import SimConfig
    from slicetwin.sim.simulator import RanSimulator

    sim = RanSimulator(SimConfig(utility=UtilityConfig(beta=beta)), n_cells=2, seed=11)
    sim.reset()
    cfg = sim.config
    units = np.tile(sim.codec.from_weights(np.ones(3)), (2, 1))  # an equal split first
    cells = ["sim-a", "sim-b"]
    expected = {}
    path = tmp_path / "transitions.jsonl"
    with controller_process(model_source="none", transitions_sink="file",
                            transitions_file=str(path), **env) as url, httpx.Client() as c:
        for w in range(10):
            _, k = sim.step(units)
            for i, cell in enumerate(cells):
                expected[cell, w] = (float(k.utility[i]),
                                     float(shaper.reward(k.utility[i], w)))
            reports = [r.model_dump(mode="json", exclude_none=True)
                       for r in k.to_reports(cells, w, units, cfg)]
            if w % 2 == 0:
                answers = [c.post(url + "/v1/reports", json=r) for r in reports]
                assert all(a.status_code == 200 for a in answers), answers[0].text
                answers = [a.json() for a in answers]
            else:
                a = c.post(url + "/v1/reports:batch", json={"reports": reports})
                assert a.status_code == 200, a.text
                answers = a.json()["decisions"]
            units = np.array([[round(x["bandwidth_hz"] / cfg.unit_hz) for x in ans["allocation"]]
                              for ans in answers])
        deadline = time.time() + 20
        rows: list[dict] = []
        while time.time() < deadline:
            rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
            if len(rows) >= 18:
                break
            time.sleep(0.05)
        policy = c.get(url + "/v1/policy").json()
    assert len(rows) == 18, rows  # windows 1..9 close one transition per cell
    return rows, {"expected": expected, "policy": policy}


def _assert_recorded_as_simulated(rows, expected) -> None:
    for r in rows:
        u, rew = expected[r["cell_id"], r["window"]]
        assert abs(r["utility"] - u) <= 1e-9, (r, u)
        assert abs(r["reward"] - rew) <= 1e-9, (r, rew)


def test_controller_records_the_simulators_utility_and_reward(tmp_path):
    shaper = RewardShaper()
    rows, out = _sim_through_controller(tmp_path, (1.0, 1.0, 1.0), shaper, {})
    _assert_recorded_as_simulated(rows, out["expected"])
    rewards = [rew for _, rew in out["expected"].values()]
    assert any(r == 0 for r in rewards) and any(r > 1 for r in rewards)  # not vacuous
    assert out["policy"]["reward"] == shaper.as_dict()


def test_controller_records_the_simulators_reward_with_operator_weights(tmp_path):
    # URLLC-first weights (utility 0..11) and a threshold that rises by 1 per window from 2 to
    # 10, so the reward depends on beta and on t = the window number
    shaper = RewardShaper(gamma_min=2.0, gamma_max=10.0, sigma=1.0)
    env = {"utility_beta": "1,4,6", "reward_gamma_min": "2", "reward_gamma_max": "10",
           "reward_sigma": "1"}
    rows, out = _sim_through_controller(tmp_path, URLLC_FIRST, shaper, env)
    _assert_recorded_as_simulated(rows, out["expected"])
    exp = out["expected"]
    u = np.array([exp[k][0] for k in sorted(exp)])
    t = np.array([k[1] for k in sorted(exp)])
    got = np.array([exp[k][1] for k in sorted(exp)])
    assert not np.array_equal(shaper.reward(u, t + 1), got)  # a t off by one would show
    assert not np.array_equal(RewardShaper().reward(u, t), got)
    assert out["policy"]["utility"] == {"alpha": 0.01, "beta": list(URLLC_FIRST)}


# ----------------------------------------------------------------------------- policy, metrics
def test_policy_and_metrics_show_the_weights():
    s = ControllerSettings(model_source="init", utility_alpha=0.02, utility_beta="1,4,6")
    with TestClient(create_app(s)) as c:
        p = c.get("/v1/policy").json()
        assert p["utility"] == {"alpha": 0.02, "beta": [1.0, 4.0, 6.0]}
        assert p["reward"] == {"gamma_min": 1.75, "gamma_max": 1.8, "sigma": 2.5e-5}
        # the fresh student carries the controller's own weights, so it is served
        assert p["version"] == "init-0"
        assert json.loads(p["metadata"]["slicetwin.utility_beta"]) == [1.0, 4.0, 6.0]
        fams = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
    assert fams["slicetwin_utility_alpha"].samples[0].value == 0.02
    assert {x.labels["slice"]: x.value for x in fams["slicetwin_utility_beta"].samples} == {
        "volte": 1.0, "video": 4.0, "urllc": 6.0}


# ----------------------------------------------------------------------------- model metadata
def _student_for(utility: UtilityConfig | None, version: str) -> bytes:
    import torch

    from trainer.export_onnx import to_onnx, validate_onnx
    from trainer.nets import StudentMLP

    torch.manual_seed(0)
    blob = to_onnx(StudentMLP(3, 4851, 16), n_units=100, version=version,
                   utility=utility).SerializeToString()
    meta = validate_onnx(blob)
    want = utility or UtilityConfig()
    assert float(meta["utility_alpha"]) == want.alpha
    assert tuple(json.loads(meta["utility_beta"])) == want.beta
    return blob


def _rejected(fams, reason: str) -> float:
    return sum(x.value for x in fams["slicetwin_models_rejected"].samples
               if x.name.endswith("_total") and x.labels["reason"] == reason)


def test_promoted_model_for_other_weights_is_refused():
    blob = _student_for(UtilityConfig(beta=URLLC_FIRST), "urllc-first")
    for beta, accepted in (("1,1,1", False), ("1,4,6", True)):
        reg = MemoryRegistry(KEY)
        app = create_app(ControllerSettings(hmac_key=KEY, model_source="auto",
                                            utility_beta=beta), registry=reg)
        with TestClient(app) as c:
            assert c.post("/v1/reports", json=report("m", 0)).json()["policy_version"] == "init-0"
            reg.publish("policy", blob, version="urllc-first", promote=True)
            deadline = time.time() + 10
            while app.state.holder.version != "urllc-first" and app.state.holder.rejected == 0:
                assert time.time() < deadline
                time.sleep(0.01)
            ans = c.post("/v1/reports", json=report("m", 1)).json()
            p = c.get("/v1/policy").json()
            fams = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
        if accepted:
            assert ans["policy_version"] == "urllc-first" and p["rejected"] == 0
            assert _rejected(fams, "utility") == 0
        else:  # the old model keeps serving; counted and explained like any refused model
            assert ans["policy_version"] == "init-0" and p["rejected"] == 1
            assert _rejected(fams, "utility") == 1
            assert "beta=[1.0, 4.0, 6.0]" in p["last_error"]
            assert "SLICETWIN_UTILITY_BETA" in p["last_error"]


def test_model_file_for_other_weights_is_refused_at_start(tmp_path):
    from tests.support.keys import sign_dev

    path = tmp_path / "p.onnx"
    path.write_bytes(_student_for(UtilityConfig(alpha=0.05), "alpha-5"))
    sign_dev(path, "policy")  # signed: refused for its weights only
    for alpha, served in (("0.01", None), ("0.05", "alpha-5")):
        app = create_app(ControllerSettings(model_source="file", model_path=str(path),
                                            utility_alpha=alpha))
        with TestClient(app):
            assert app.state.holder.version == served
            assert app.state.holder.rejected == (0 if served else 1)


def test_model_without_weights_counts_as_trained_for_the_defaults():
    from slicetwin.core.actions import ActionCodec

    codec = ActionCodec()
    old = build_mlp_onnx(init_mlp_weights((16, 16), codec.n_actions, 1),
                         default_metadata(codec, "old"))  # no utility_* keys
    assert "slicetwin.utility_alpha" not in OnnxPolicy(old).info.metadata
    OnnxPolicy(old, expect_codec=codec, expect_utility=UtilityConfig())  # accepted
    with pytest.raises(ModelRejected, match="records no weights") as e:
        OnnxPolicy(old, expect_codec=codec, expect_utility=UtilityConfig(beta=URLLC_FIRST))
    assert e.value.reason == "utility"
    # a fresh student labelled with the weights is accepted by a controller using them
    OnnxPolicy(fresh_policy_onnx("f", 1, utility=UtilityConfig(beta=URLLC_FIRST)),
               expect_utility=UtilityConfig(beta=URLLC_FIRST))
    bad = build_mlp_onnx(init_mlp_weights((16, 16), codec.n_actions, 1),
                         {**default_metadata(codec, "bad"), "slicetwin.utility_beta": "1,x,1"})
    with pytest.raises(ModelRejected, match="utility metadata") as e:
        OnnxPolicy(bad, expect_utility=UtilityConfig())
    assert e.value.reason == "metadata"


# ----------------------------------------------------------------------------- trainer, twin
def test_worker_exports_and_twins_with_its_weights(monkeypatch):
    """The trainer's twin computes utility with the settings' weights, the exported student
    records them, and the simulated feed records what such a controller would."""
    from slicetwin.ops.simfeed import sim_transitions
    from trainer.worker.settings import WorkerSettings

    monkeypatch.setenv("SLICETWIN_UTILITY_BETA", "1,4,6")
    s = WorkerSettings()
    assert s.utility == UtilityConfig(beta=URLLC_FIRST)
    feed = list(sim_transitions(cells=2, windows=3, seed=0, utility=s.utility))
    for tr in feed:
        arrived, sla = np.asarray(tr.arrived), np.asarray(tr.sla_met)
        u = s.utility.utility(tr.se, ssr(sla, arrived))
        assert abs(tr.utility - u) < 1e-9
        assert tr.reward == float(RewardShaper().reward(tr.utility, tr.window))

    import trainer.worker.learn as learn

    captured = {}

    class _Twin:
        def __init__(self, cfg, utility=None):
            captured["utility"] = utility

        def fit(self, train):
            return {}

    monkeypatch.setattr(learn, "Twin", _Twin)  # the name fit_twin looks up
    learn.fit_twin(None, s, 0)
    assert captured["utility"] == s.utility


def test_twin_service_refuses_a_twin_for_other_weights():
    from slicetwin.twin import Twin, TwinConfig
    from twin_service.model import TwinHolder

    cfg = TwinConfig(ensemble=2, lstm_hidden=8, head_hidden=8, reward_hidden=(8, 8))
    default_twin = Twin(cfg)
    urllc_twin = Twin(cfg, utility=UtilityConfig(beta=URLLC_FIRST))
    holder = TwinHolder(utility=UtilityConfig(beta=URLLC_FIRST))
    with pytest.raises(ValueError, match="SLICETWIN_UTILITY_BETA"):
        holder.load_blob(default_twin.to_bytes(), "v-default")
    assert holder.current is None
    holder.load_blob(urllc_twin.to_bytes(), "v-urllc")
    assert holder.current.version == "v-urllc"
    assert TwinHolder(utility=UtilityConfig()).load_twin(default_twin, "v").version == "v"
