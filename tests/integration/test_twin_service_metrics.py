"""Twin service model metrics: served version (info gauge) and held-out RMSE gauges follow the
model actually served, through a hot swap from a real Redis registry."""

from __future__ import annotations

import math
import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from slicetwin.twin import Twin, TwinConfig
from twin_service.app import create_app
from twin_service.model import TwinHolder
from twin_service.settings import TwinServiceSettings

CFG = TwinConfig(ensemble=2, lstm_hidden=8, head_hidden=8, reward_hidden=(8,), seed=4)


def samples(c) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(c.get("/metrics").text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def model_series(got: dict) -> dict:
    return {k: v for k, v in got.items() if k[0].startswith("slicetwin_twin_model_")
            and k[0] not in ("slicetwin_twin_model_reloads_total",
                             "slicetwin_twin_model_reloads_created",
                             "slicetwin_twin_model_loaded_timestamp_seconds")}


def test_no_model_then_in_memory_model_without_figures():
    holder = TwinHolder()
    with TestClient(create_app(TwinServiceSettings(), holder)) as c:
        got = samples(c)
        assert got[("slicetwin_twin_model_loaded", ())] == 0
        assert not [k for k in got if k[0] == "slicetwin_twin_model_info"]
        tw = Twin(CFG)  # unfitted: no held-out figures
        holder.load_twin(tw, "v-mem")
        got = samples(c)
        assert got[("slicetwin_twin_model_info", (("version", "v-mem"),))] == 1
        assert math.isnan(got[("slicetwin_twin_model_heldout_next_state_rmse", ())])
        assert math.isnan(got[("slicetwin_twin_model_heldout_utility_rmse", ())])


def test_version_and_heldout_rmse_follow_registry_hot_swap(redis_url):
    from slicetwin.registry.store import RedisRegistry

    reg = RedisRegistry(redis_url, "test-key")
    tw = Twin(CFG)
    reg.publish("twin", tw.to_bytes(), version="twin-a", promote=True,
                metrics={"next_state_rmse": 0.12, "utility_rmse": 0.034, "calibration_error": 0.1})
    settings = TwinServiceSettings(redis_url=redis_url, hmac_key="test-key")
    with TestClient(create_app(settings)) as c:
        deadline = time.time() + 10
        while time.time() < deadline and c.get("/v1/twin/model").status_code != 200:
            time.sleep(0.05)
        got = model_series(samples(c))
        assert got[("slicetwin_twin_model_info", (("version", "twin-a"),))] == 1
        assert got[("slicetwin_twin_model_heldout_next_state_rmse", ())] == 0.12
        assert got[("slicetwin_twin_model_heldout_utility_rmse", ())] == 0.034
        reg.publish("twin", tw.to_bytes(), version="twin-b", promote=True,
                    metrics={"next_state_rmse": 0.08, "utility_rmse": 0.02})
        deadline = time.time() + 10
        while time.time() < deadline and c.get("/v1/twin/model").json()["version"] != "twin-b":
            time.sleep(0.05)
        got = model_series(samples(c))
        info = {k: v for k, v in got.items() if k[0] == "slicetwin_twin_model_info"}
        assert info == {("slicetwin_twin_model_info", (("version", "twin-b"),)): 1.0}
        assert got[("slicetwin_twin_model_heldout_next_state_rmse", ())] == 0.08
        assert got[("slicetwin_twin_model_heldout_utility_rmse", ())] == 0.02
        # a refused blob changes nothing: the figures stay those of the model still served
        reg.publish("twin", b"garbage", version="twin-c", promote=True)
        time.sleep(0.5)
        got = model_series(samples(c))
        assert ("slicetwin_twin_model_info", (("version", "twin-b"),)) in got
        assert got[("slicetwin_twin_model_heldout_next_state_rmse", ())] == 0.08
    reg.close()
