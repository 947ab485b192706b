"""docs/metrics.md is the one list of every metric: it must match what the three services export.

The controller and the twin service are built with their real ``create_app`` and their real
``/metrics`` route is read (in-process ASGI client, no port); the trainer worker's metrics are
served by its real HTTP server on a free port. Every metric named in the document must be on the
owning service's page with the documented type and labels, and every metric on a page must be in
the document. The ``*_created`` series prometheus_client adds to counters and histograms are left
out of both (they carry each series' creation time, nothing to document).

On a mismatch the assertion message prints the missing rows ready to paste into the document.
"""

from __future__ import annotations

import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.paths import ROOT  # noqa: E402

DOC = ROOT / "docs" / "metrics.md"
SECTIONS = {"controller": "Controller", "twin": "Twin service", "trainer": "Trainer"}
_ROW = re.compile(r"^\|\s*`(slicetwin_\w+)`\s*\|\s*(\w+)\s*\|\s*([^|]*)\|\s*([^|]*)\|\s*$")


def documented() -> dict[str, dict[str, tuple[str, frozenset[str], str]]]:
    """service -> metric -> (type, labels, meaning), from the tables under each ``## `` section."""
    out: dict[str, dict] = {k: {} for k in SECTIONS}
    by_title = {v: k for k, v in SECTIONS.items()}
    svc = None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            title = line[3:].split("(")[0].strip()
            svc = by_title.get(title)
            continue
        m = _ROW.match(line)
        if m and svc is not None:
            name, kind, labels, meaning = m.groups()
            assert name not in out[svc], f"{name} listed twice under {SECTIONS[svc]}"
            out[svc][name] = (kind, frozenset(re.findall(r"`(\w+)`", labels)), meaning.strip())
    return out


def exported_name(family) -> str:
    """The name a user queries: counters with ``_total``, everything else as exposed."""
    return family.name + "_total" if family.type == "counter" else family.name


def page_metrics(text: str, registry) -> dict[str, tuple[str, frozenset[str]]]:
    """metric -> (type, labels) of a /metrics page; label names also from the registry's
    collectors, so a labelled metric without samples yet still shows its labels."""
    declared: dict[str, set[str]] = {}
    for collector in list(registry._collector_to_names):  # noqa: SLF001 - label names only here
        names = getattr(collector, "_labelnames", ())
        base = getattr(collector, "_name", None)
        if base:
            declared.setdefault(base, set()).update(names)
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.endswith("_created"):
            continue
        labels = {k for s in fam.samples for k in s.labels} - {"le", "quantile"}
        labels |= declared.get(fam.name, set())
        out[exported_name(fam)] = (fam.type, frozenset(labels))
    return out


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, dict[str, tuple[str, frozenset[str]]]]:
    import os

    from fastapi.testclient import TestClient

    saved = {k: os.environ.pop(k) for k in list(os.environ)
             if k.startswith("SLICETWIN_") or k == "REDIS_URL"}
    try:
        from controller.app import create_app as controller_app
        from controller.settings import ControllerSettings
        from trainer.worker.metrics import TrainerMetrics, serve
        from twin_service.app import create_app as twin_app
        from twin_service.settings import TwinServiceSettings

        out = {}
        for svc, app in (("controller", controller_app(ControllerSettings(env="dev"))),
                         ("twin", twin_app(TwinServiceSettings(env="dev")))):
            with TestClient(app) as c:
                r = c.get("/metrics")
                assert r.status_code == 200
                out[svc] = page_metrics(r.text, app.state.metrics.registry)
        tm = TrainerMetrics()
        srv = serve(tm, 0, "127.0.0.1")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/metrics",
                                        timeout=10) as r:
                out["trainer"] = page_metrics(r.read().decode(), tm.registry)
        finally:
            srv.shutdown()
            srv.server_close()
        return out
    finally:
        os.environ.update(saved)


def row(name: str, kind: str, labels) -> str:
    lab = ", ".join(f"`{x}`" for x in sorted(labels)) or "—"
    return f"| `{name}` | {kind} | {lab} | ... |"


@pytest.mark.parametrize("service", sorted(SECTIONS))
def test_every_exported_metric_is_documented_and_vice_versa(pages, service):
    doc = documented()[service]
    live = pages[service]
    assert len(live) >= 5, live
    undocumented = sorted(set(live) - set(doc))
    assert not undocumented, (f"on {service}'s /metrics but not in docs/metrics.md under "
                              f"'## {SECTIONS[service]}':\n"
                              + "\n".join(row(n, *live[n]) for n in undocumented))
    absent = sorted(set(doc) - set(live))
    assert not absent, f"in docs/metrics.md but not on {service}'s /metrics: {absent}"
    wrong = [f"{n}: documented {doc[n][0]} {sorted(doc[n][1])}, exported {live[n][0]} "
             f"{sorted(live[n][1])}" for n in sorted(doc) if doc[n][:2] != live[n]]
    assert not wrong, "\n".join(wrong)
    assert all(doc[n][2] and doc[n][2] != "..." for n in doc), "every metric needs a meaning"


def test_prefixes_tell_the_owner():
    """The owner of a metric is readable from its name (alerts and the compose test rely on it):
    twin metrics start with slicetwin_twin_, trainer metrics with slicetwin_trainer_."""
    doc = documented()
    assert all(n.startswith("slicetwin_twin_") for n in doc["twin"])
    assert all(n.startswith("slicetwin_trainer_") for n in doc["trainer"])
    assert not [n for n in doc["controller"] if n.startswith(("slicetwin_twin_",
                                                              "slicetwin_trainer_"))]
