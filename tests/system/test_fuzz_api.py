"""Property-based fuzzing (schemathesis + hypothesis) of the controller's and the twin service's
OpenAPI schemas: valid and invalid requests generated from the schemas; no answer may be a 5xx,
and every 4xx must carry a JSON error body. The apps are the real ones (``create_app``, with the
controller's edge middleware) called in-process through ASGI, so thousands of cases fit in CI.

Fast variant: a few hundred requests; ``-m slow``: a few thousand more (schemathesis costs ~10 ms
of CPU per case, so the bulk of the >= 10,000 hostile requests comes from the mutation fuzzer
against real server processes, tests/system/test_fuzz_mutation.py).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from controller.app import create_app as create_controller
from controller.settings import ControllerSettings
from slicetwin.twin import Twin, TwinConfig
from twin_service.app import create_app as create_twin
from twin_service.model import TwinHolder
from twin_service.settings import TwinServiceSettings

COUNTS: Counter = Counter()  # (app, status class) -> requests, printed at the module's end


@pytest.fixture(scope="module", autouse=True)
def _print_counts():
    """What was sent, by app and status class (the figure quoted in docs/reliability.md)."""
    yield
    print({"schemathesis_requests": sum(COUNTS.values()),
           **{f"{a}_{s}": n for (a, s), n in sorted(COUNTS.items())}})


def _controller_app():
    app = create_controller(ControllerSettings(model_source="init", transitions_sink="memory",
                                               max_batch=200))
    app.state.holder.load_bytes(_fresh(), None, "init")  # lifespan does not run under ASGI
    return app


def _fresh() -> bytes:
    from slicetwin.runtime.onnx_policy import fresh_policy_onnx

    return fresh_policy_onnx("fuzz", 0)


def _twin_app():
    holder = TwinHolder()
    holder.load_twin(Twin(TwinConfig(ensemble=2, lstm_hidden=8, head_hidden=8,
                                     reward_hidden=(8, 8), seed=0)), "fuzz")
    return create_twin(TwinServiceSettings(max_batch=64, max_history=16), holder)


controller_schema = schemathesis.openapi.from_asgi("/openapi.json", _controller_app())
twin_schema = schemathesis.openapi.from_asgi("/openapi.json", _twin_app())

_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck),
                 phases=[Phase.explicit, Phase.generate])


def _check(case, app: str) -> None:
    r = case.call()
    COUNTS[(app, f"{r.status_code // 100}xx")] += 1
    assert r.status_code < 500, (case.method, case.path, case.body, r.status_code, r.text[:500])
    if r.status_code >= 400 and case.path != "/metrics":
        body = json.loads(r.text)  # a JSON error body, not a stack trace
        assert "detail" in body or "error" in body, body


# ------------------------------------------------------------------ fast (default run)
@controller_schema.parametrize()
@settings(max_examples=20, **_SETTINGS)
def test_controller_schema_fuzz_no_5xx(case):
    _check(case, "controller")


@twin_schema.parametrize()
@settings(max_examples=12, **_SETTINGS)
def test_twin_schema_fuzz_no_5xx(case):
    _check(case, "twin")


# ------------------------------------------------------------------ slow: >= 10,000 requests
@pytest.mark.slow
@controller_schema.include(method="POST").parametrize()
@settings(max_examples=200, **_SETTINGS)
def test_controller_schema_fuzz_many(case):
    _check(case, "controller")


@pytest.mark.slow
@twin_schema.include(method="POST").parametrize()
@settings(max_examples=150, **_SETTINGS)
def test_twin_schema_fuzz_many(case):
    _check(case, "twin")
