"""Twin service: HTTP contract, clear 4xx on bad input, metrics; a real uvicorn process for the
end-to-end checks (HttpTwin == in-process twin for the same weights and seed)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from slicetwin.ops.procs import free_port
from slicetwin.twin import Twin, TwinConfig
from slicetwin.twin.wire import pack
from twin_service.app import create_app
from twin_service.model import TwinHolder
from twin_service.settings import TwinServiceSettings

CFG = TwinConfig(ensemble=3, lstm_hidden=16, head_hidden=16, reward_hidden=(32, 32), seed=3)


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin(CFG)  # weights do not matter for the HTTP contract; fitting is tested elsewhere


@pytest.fixture()
def client(twin):
    holder = TwinHolder()
    holder.load_twin(twin, "v-test")
    with TestClient(create_app(TwinServiceSettings(max_batch=1000), holder)) as c:
        yield c


def _step_body(**kw):
    body = {"states": [[0.5, 0.8, 0.6], [0.6, 0.7, 0.5]], "action": 10, "past_actions": [3],
            "seed": 1}
    body.update(kw)
    return body


def test_step_and_batch_answer(client, twin):
    r = client.post("/v1/twin/step", json=_step_body())
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["model_version"] == "v-test" and len(j["next_state"]) == 3
    assert set(j["kpis"]) == {"arrived", "sla_met", "ssr", "se"}
    direct = twin.predict(np.array([[[0.5, 0.8, 0.6], [0.6, 0.7, 0.5]]], np.float32),
                          np.array([[3, 10]]), seed=1)
    np.testing.assert_allclose(j["next_state"], direct["next_state"][0], rtol=1e-6)
    assert j["reward"] == pytest.approx(float(direct["reward"][0]))

    rng = np.random.default_rng(0)
    states = rng.uniform(0.2, 1.2, (5, 4, 3)).astype(np.float32)
    acts = rng.integers(0, twin.n_actions, 5)
    as_lists = client.post("/v1/twin/step:batch", json={
        "states": states.tolist(), "actions": acts.tolist(), "seed": 7}).json()
    packed = client.post("/v1/twin/step:batch", json={
        "states": pack(states), "actions": pack(acts), "seed": 7, "encoding": "packed"}).json()
    assert as_lists["n"] == packed["n"] == 5
    from slicetwin.twin.wire import unpack
    np.testing.assert_allclose(np.array(as_lists["next_state"]),
                               unpack(**packed["next_state"]), rtol=1e-6)


@pytest.mark.parametrize("path,body,fragment", [
    ("/v1/twin/step", _step_body(states=[[0.5, 0.8], [0.6, 0.7]]), "wrong state width"),
    ("/v1/twin/step", _step_body(states=[[0.5, 0.8, 0.6, 1.0]], past_actions=None),
     "wrong state width"),
    ("/v1/twin/step", _step_body(action=4851), "unknown action index 4851"),
    ("/v1/twin/step", _step_body(action=-2), "unknown action index -2"),
    ("/v1/twin/step", _step_body(past_actions=[99999]), "unknown action index in past_actions"),
    ("/v1/twin/step", _step_body(states=[], past_actions=None), "history is empty"),
    ("/v1/twin/step", _step_body(past_actions=[1, 2, 3]), "past_actions must have shape"),
    ("/v1/twin/step:batch", {"states": [[[0.1, 0.2]]], "actions": [1]}, "wrong state width"),
    ("/v1/twin/step:batch", {"states": [[]], "actions": [1]}, "history is empty"),
    ("/v1/twin/step:batch", {"states": [], "actions": []}, "empty"),
    ("/v1/twin/step:batch", {"states": [[[0.1, 0.2, 0.3]]], "actions": [5000]},
     "unknown action index 5000"),
    ("/v1/twin/step:batch", {"states": [[[0.1, 0.2, 0.3]]], "actions": [1, 2]},
     "one entry per rollout"),
    ("/v1/twin/step:batch", {"states": [[[0.1, 0.2, 0.3]], [[0.1, 0.2]]], "actions": [1, 2]},
     "states"),
    ("/v1/twin/step:batch", {"states": {"dtype": "float32", "shape": [1, 1, 3], "data": "AAAA"},
                             "actions": [1]}, "bytes"),
    ("/v1/twin/step:batch", {"states": {"dtype": "float32", "shape": [1, 1, 3], "data": "@@"},
                             "actions": [1]}, "base64"),
    ("/v1/twin/step:batch", {"states": np.zeros((1001, 1, 3)).tolist(), "actions": [0] * 1001},
     "max_batch"),
])
def test_bad_inputs_get_clear_4xx(client, path, body, fragment):
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert fragment in r.text, r.text


def test_nan_states_refused_in_json_and_packed(client):
    raw = '{"states": [[0.5, NaN, 0.6]], "action": 1}'
    r = client.post("/v1/twin/step", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "NaN" in r.text, r.text
    bad = np.full((2, 1, 3), np.nan, np.float32)
    r = client.post("/v1/twin/step:batch", json={"states": pack(bad), "actions": [1, 2]})
    assert r.status_code == 422 and "NaN" in r.text, r.text


def test_model_health_ready_metrics(client, twin):
    info = client.get("/v1/twin/model").json()
    assert info["version"] == "v-test" and info["history"] == CFG.history
    assert info["ensemble"] == 3 and info["n_actions"] == twin.n_actions
    assert "calibration_error" in info
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.post("/v1/twin/step", json=_step_body())
    client.post("/v1/twin/step", json=_step_body(action=-1))
    text = client.get("/metrics").text
    assert 'slicetwin_twin_requests_total{route="/v1/twin/step",status="200"} 1.0' in text
    assert 'slicetwin_twin_requests_total{route="/v1/twin/step",status="422"} 1.0' in text
    assert "slicetwin_twin_steps_total 1.0" in text
    assert "slicetwin_twin_request_duration_seconds_bucket" in text
    assert "slicetwin_twin_model_loaded 1.0" in text


def test_not_ready_without_model():
    with TestClient(create_app(TwinServiceSettings())) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        r = c.post("/v1/twin/step", json=_step_body())
        assert r.status_code == 503 and "no twin model loaded" in r.text


def test_bad_model_file_is_refused_and_old_model_keeps_serving(twin, tmp_path):
    holder = TwinHolder()
    holder.load_twin(twin, "v-good")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError):
        holder.load_file(bad)
    assert holder.current.version == "v-good"


def test_real_process_http_twin_matches_in_process_twin(twin, tmp_path):
    from slicetwin.ops.bench.twin import start_service
    from trainer.twin_client import HttpTwin

    path = tmp_path / "twin.pt"
    twin.save(path)
    port = free_port()
    proc = start_service(str(path), port)
    try:
        url = f"http://127.0.0.1:{port}"
        remote = HttpTwin(url)
        assert remote.history_len == twin.history_len
        local = Twin.load(path)
        rng = np.random.default_rng(5)
        s0 = rng.uniform(0.3, 1.2, (64, 3)).astype(np.float32)
        hist = rng.uniform(0.3, 1.2, (64, 2, 3)).astype(np.float32)
        for tw in (local, remote):
            tw.reset(s0, hist, seed=42, t=10)
        for _ in range(4):
            acts = rng.integers(0, twin.n_actions, 64)
            a, b = local.step(acts), remote.step(acts)
            np.testing.assert_allclose(a.next_state, b.next_state, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a.reward, b.reward, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a.utility, b.utility, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a.uncertainty, b.uncertainty, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a.kpis["sla_met"], b.kpis["sla_met"], rtol=1e-5, atol=1e-4)
        # counterfactual branch through the service: 64 rollouts x 5 actions in one batch call
        cf = rng.integers(0, twin.n_actions, (64, 5))
        a, b = local.branch(cf), remote.branch(cf)
        assert b.reward.shape == (320,)
        np.testing.assert_allclose(a.utility, b.utility, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.next_state, b.next_state, rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="unknown action index"):
            remote.step(np.full(64, twin.n_actions))
        with pytest.raises(NotImplementedError):
            remote.fit(None)
        import httpx
        r = httpx.post(f"{url}/v1/twin/step", json=_step_body(states=[[1.0, 2.0]]))
        assert r.status_code == 422 and "wrong state width" in r.text
        assert "slicetwin_twin_steps_total 576.0" in httpx.get(f"{url}/metrics").text
        remote.close()
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_version(client, want: str, timeout: float = 5.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        r = client.get("/v1/twin/model")
        got = r.json().get("version") if r.status_code == 200 else None
        if got == want:
            return got
        time.sleep(0.02)
    return got


def test_reloads_on_twin_registry_event_real_redis(twin, redis_url):
    from slicetwin.registry.store import RedisRegistry

    reg = RedisRegistry(redis_url, "test-key")
    reg.publish("twin", twin.to_bytes(), version="twin-v1", promote=True,
                metrics={"calibration_error": 0.05})
    settings = TwinServiceSettings(redis_url=redis_url, hmac_key="test-key")
    with TestClient(create_app(settings)) as c:
        assert _wait_version(c, "twin-v1") == "twin-v1"  # loaded at start from `current`
        assert c.get("/readyz").json()["checks"] == {"model_loaded": True, "registry": True}
        assert c.get("/v1/twin/model").json()["calibration_error"] == 0.05
        other = Twin(TwinConfig(ensemble=2, lstm_hidden=8, head_hidden=8, reward_hidden=(8,),
                                history=2, seed=9))
        reg.publish("twin", other.to_bytes(), version="twin-v2", promote=True)
        assert _wait_version(c, "twin-v2") == "twin-v2"  # hot swap on the event
        assert c.get("/v1/twin/model").json()["history"] == 2
        r = c.post("/v1/twin/step", json=_step_body())
        assert r.status_code == 200 and r.json()["model_version"] == "twin-v2"
        # a signed but broken blob is refused; the old twin keeps serving
        reg.publish("twin", b"not a twin at all", version="twin-v3", promote=True)
        import time
        time.sleep(0.5)
        assert c.get("/v1/twin/model").json()["version"] == "twin-v2"
        assert 'slicetwin_twin_model_reloads_total{result="error"} 1.0' in c.get("/metrics").text
        reg.rollback("twin")  # back to v2 -> already serving; then to v1
        reg.rollback("twin")
        assert _wait_version(c, "twin-v1") == "twin-v1"
    reg.close()


def test_unsigned_twin_is_refused(twin, redis_url):
    from slicetwin.registry.store import RedisRegistry

    RedisRegistry(redis_url, "attacker-key").publish("twin", twin.to_bytes(), version="evil",
                                                     promote=True)
    settings = TwinServiceSettings(redis_url=redis_url, hmac_key="real-key")
    with TestClient(create_app(settings)) as c:
        assert c.get("/readyz").status_code == 503
        assert c.get("/v1/twin/model").status_code == 503


def test_real_process_http_twin_fit_publishes_through_registry(twin, redis_url):
    """HttpTwin.fit -> local fit -> registry publish + promote -> the service process swaps."""
    from slicetwin.ops.bench.twin import start_service
    from slicetwin.registry.store import RedisRegistry
    from trainer.collect import collect_transitions
    from trainer.twin_client import HttpTwin, registry_publisher

    reg = RedisRegistry(redis_url, "k2")
    reg.publish("twin", twin.to_bytes(), version="twin-boot", promote=True)
    port = free_port()
    proc = start_service(None, port, extra_env={"REDIS_URL": redis_url,
                                                "SLICETWIN_HMAC_KEY": "k2"})
    try:
        remote = HttpTwin(f"http://127.0.0.1:{port}", publish=registry_publisher(reg),
                          twin_config=TwinConfig(ensemble=2, lstm_hidden=8, head_hidden=8,
                                                 reward_hidden=(16,), epochs=3, seed=1))
        assert remote.version == "twin-boot"
        data = collect_transitions(30, n_cells=2, seed=5)
        metrics = remote.fit(data)
        assert remote.version != "twin-boot" and remote.version == reg.current("twin")
        assert remote.info["ensemble"] == 2
        assert remote.metrics["next_state_rmse"] == pytest.approx(metrics["next_state_rmse"])
        s = remote.reset(data.state[:4], seed=0)
        assert remote.step(data.action[:4]).next_state.shape == s.shape
        remote.close()
    finally:
        proc.terminate()
        proc.wait(10)
        reg.close()


def test_follows_in_memory_registry_for_the_embedded_demo(twin):
    from slicetwin.registry.store import MemoryRegistry

    reg = MemoryRegistry()
    reg.publish("twin", twin.to_bytes(), version="m1", promote=True)
    with TestClient(create_app(TwinServiceSettings(), registry=reg)) as c:
        assert c.get("/v1/twin/model").json()["version"] == "m1"
        reg.publish("twin", twin.to_bytes(), version="m2", promote=True)  # synchronous event
        assert c.get("/v1/twin/model").json()["version"] == "m2"
        assert c.get("/readyz").json()["checks"] == {"model_loaded": True, "registry": True}
