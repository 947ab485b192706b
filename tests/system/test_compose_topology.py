"""docker-compose topology without Docker.

Docker cannot run here, so these tests prove the compose stack another way: they read
``docker-compose.yml`` and start each SliceTwin service's own command as a local process (service
host names mapped to 127.0.0.1, ports from the file, shifted to free ones when taken, keys from
a ``.env`` made by the real ``slicetwin keys init``, Redis a private redis-server started with the
ACL file that command writes), wait on each service's own health check the way
``depends_on: condition: service_healthy`` would, and check the loop: the fake gNB's command
finishes with answers from the controller, and a real Prometheus (Debian's ``prometheus``
package, when installed) scrapes every target with ``up == 1`` and evaluates every alert rule.
The fast tests check the file's structure, the CLI options of each command, the Dockerfiles,
the Grafana provisioning, ``promtool`` checks, and that every metric the dashboard and the alert
rules name exists on a live controller's and twin's ``/metrics``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from slicetwin.ops.procs import free_port, http_get
from slicetwin.platform.keys import read_env

yaml = pytest.importorskip("yaml")

from tests.support.compose import (  # noqa: E402
    KEYS,
    SLICETWIN_BIN,
    LocalService,
    LocalStack,
    container_ports,
    interpolate,
    is_slicetwin,
    load_compose,
    service_env,
    slicetwin_services,
    start_order,
)
from tests.support.paths import ROOT  # noqa: E402

DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "slicetwin.json"
EXPECTED_SERVICES = {"redis", "controller", "twin", "trainer", "gnb", "prometheus", "grafana"}
GNB_TEST_WINDOWS = 30  # the compose gNB runs "forever"; the local run is cut to this many windows

_METRIC = re.compile(r"\bslicetwin_[a-zA-Z0-9_]+\b")


def registered_cli():
    """The ``slicetwin`` click group with every part's commands gathered."""
    import typer

    import slicetwin.cli.main as cli

    cli._register()
    return typer.main.get_command(cli.app)


_PENDING = {"trainer": "trainer/worker.py", "twin": "twin_service/"}


def missing_cli_services(compose: dict) -> dict[str, str]:
    """Compose services whose ``slicetwin`` sub-command is not in the CLI yet -> why.

    Parts of SliceTwin are built in parallel; such a service is left out of the local run with
    this reason (reported as a skip, never silently)."""
    group = registered_cli()
    out = {}
    for name, svc in slicetwin_services(compose).items():
        sub = svc["command"][1]
        if sub not in group.commands:
            where = _PENDING.get(name, "its part")
            out[name] = (f"`slicetwin {sub}` ({where}) is not in the CLI yet: the compose {name} "
                         "service cannot be started locally; it is left out of this check")
    return out


# ----------------------------------------------------------------------------- metrics helpers
def exposed_names(text: str) -> set[str]:
    """Every series name a /metrics page can produce, including labelled metrics that have no
    child yet (their ``# TYPE`` line is there even before the first sample)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            if kind == "counter":
                names |= {name, name + "_total"}
            elif kind in ("histogram", "summary"):
                names |= {name, name + "_bucket", name + "_sum", name + "_count"}
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def referenced_metrics() -> dict[str, set[str]]:
    """slicetwin_* names used by the Grafana dashboard and the alert rules -> where used."""
    where: dict[str, set[str]] = {}
    dash = json.loads(DASHBOARD.read_text())
    for p in dash["panels"]:
        for t in p.get("targets", []):
            for n in _METRIC.findall(t["expr"]):
                where.setdefault(n, set()).add(f"dashboard: {p['title']}")
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            for n in _METRIC.findall(r["expr"]):
                where.setdefault(n, set()).add(f"alert: {r.get('alert') or r.get('record')}")
    return where


def owner_of(metric: str) -> str:
    if metric.startswith("slicetwin_twin_"):
        return "twin"
    if metric.startswith("slicetwin_trainer_"):
        return "trainer"
    return "controller"


# ============================================================================= fast tests
def test_every_service_present_with_a_healthcheck():
    services = load_compose()["services"]
    assert set(services) == EXPECTED_SERVICES
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        assert hc, f"{name} has no healthcheck"
        assert not hc.get("disable"), name
        test = hc["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        for k in ("interval", "timeout", "retries"):
            assert k in hc, f"{name}: healthcheck without {k}"


def test_depends_on_uses_conditions_and_has_no_cycle():
    compose = load_compose()
    services = compose["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must be the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec.get("condition") in ("service_healthy", "service_started",
                                             "service_completed_successfully"), (name, dep)
    order = start_order(compose)
    assert order.index("redis") < order.index("controller") < order.index("gnb")
    assert order.index("prometheus") < order.index("grafana")
    # everything that talks to Redis waits for it to answer PING
    for name in ("controller", "twin", "trainer"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_slicetwin_services_run_cli_commands_with_valid_options():
    """Each SliceTwin service's command parses with the real CLI (options and values checked by
    click, nothing run): the same command a test or a developer can type."""
    import click

    group = registered_cli()
    services = slicetwin_services(load_compose())
    assert {"controller", "twin", "trainer", "gnb"} <= set(services)
    pending = missing_cli_services(load_compose())
    for name, svc in services.items():
        args = [interpolate(str(a)) for a in svc["command"][1:]]
        if name in pending:
            continue
        ctx = group.make_context("slicetwin", list(args), resilient_parsing=False)
        cmd_name, cmd, rest = group.resolve_command(ctx, list(args))
        try:
            cmd.make_context(cmd_name, list(rest), parent=ctx)
        except click.ClickException as e:
            pytest.fail(f"compose service {name}: `slicetwin {' '.join(args)}`: {e.format_message()}")
    assert set(pending) <= set(_PENDING), f"unknown CLI commands in docker-compose.yml: {pending}"
    if pending:
        pytest.skip("; ".join(pending.values()))


@pytest.mark.parametrize("service", sorted(_PENDING))
def test_service_cli_exists(service):
    reason = missing_cli_services(load_compose()).get(service)
    if reason:
        pytest.skip(reason)


# settings class of each SliceTwin server (pydantic-settings), to check the compose environment
SETTINGS = {"controller": ("controller.settings", "ControllerSettings"),
            "twin": ("twin_service.settings", "TwinServiceSettings"),
            "trainer": ("trainer.worker.settings", "WorkerSettings")}


def settings_env_names(cls) -> set[str]:
    """Environment variable names a pydantic-settings class reads (prefix+field, aliases)."""
    from pydantic import AliasChoices

    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for fname, f in cls.model_fields.items():
        names.add((prefix + fname).upper())
        va = f.validation_alias
        choices = va.choices if isinstance(va, AliasChoices) else [va] if va else []
        names |= {c.upper() for c in choices if isinstance(c, str)}
        if f.alias:
            names.add(f.alias.upper())
    return names


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_environment_is_what_the_service_reads(service, monkeypatch):
    """pydantic-settings ignores unknown variables, so a misspelt SLICETWIN_* in the compose file
    would be silently dropped: every variable with the service's prefix must be a field, and the
    settings built from the file's environment must carry its Redis URL."""
    import importlib

    mod, cls_name = SETTINGS[service]
    try:
        cls = getattr(importlib.import_module(mod), cls_name)
    except ModuleNotFoundError as e:
        pytest.skip(f"{mod} not built yet: {e}")
    env = service_env(load_compose()["services"][service])
    prefix = cls.model_config.get("env_prefix", "").upper()
    unknown = {k for k in env if k.upper().startswith(prefix)} - settings_env_names(cls)
    assert not unknown, f"{service}: {cls_name} does not read {sorted(unknown)}"
    for k in list(os.environ):
        if k.startswith("SLICETWIN_") or k == "REDIS_URL":
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = cls()  # production mode: the keys from .env pass the secure-defaults check
    assert not s.dev
    pw = KEYS[f"REDIS_{service.upper()}_PASSWORD"]
    assert s.redis_url == f"redis://{service}:{pw}@redis:6379/0", \
        f"{service} would run without Redis or with another service's Redis user"


def test_every_compose_variable_is_read_by_someone():
    compose = load_compose()
    readers: set[str] = {"SLICETWIN_API_KEY", "NUMBA_CACHE_DIR"}  # gNB CLI envvar; numba
    readers |= {"SLICETWIN_REDIS_URL", "SLICETWIN_HMAC_KEY", "SLICETWIN_REGISTRY_PREFIX"}
    import importlib

    for mod, cls_name in SETTINGS.values():
        try:
            readers |= settings_env_names(getattr(importlib.import_module(mod), cls_name))
        except ModuleNotFoundError:
            pass
    for name, svc in slicetwin_services(compose).items():
        if name in SETTINGS:
            continue  # checked field by field above
        if name in missing_cli_services(compose):
            continue
        unread = {k for k in service_env(svc) if k.startswith("SLICETWIN_") or k == "REDIS_URL"}
        unread -= readers
        assert not unread, f"{name}: nothing reads {sorted(unread)}"


def test_dockerfiles_controller_slim_others_pin_cpu_torch():
    compose = load_compose()
    images = {}
    for name, svc in compose["services"].items():
        if "build" in svc:
            df = ROOT / svc["build"]["dockerfile"]
            assert df.is_file(), f"{name}: {df} missing"
            assert svc["build"].get("context", ".") == "."
            images[svc["image"]] = df
    # services without a build reuse an image built by another service
    for name, svc in slicetwin_services(compose).items():
        assert "build" in svc or svc.get("image") in images, f"{name}: image built nowhere"

    ctl = (DEPLOY / "controller.Dockerfile").read_text()
    code = "\n".join(ln for ln in ctl.splitlines() if not ln.lstrip().startswith("#"))
    assert "torch==" not in code and "[train" not in code and "download.pytorch.org" not in code
    copied = set(re.findall(r"^COPY\s+(\S+)", code, re.M))
    assert {"slicetwin", "controller"} <= copied and not copied & {"trainer", "twin_service"}
    assert re.search(r"^USER\s+(?!root)", code, re.M), "controller image must not run as root"
    # the build context is the repository root: the local venv and outputs must stay out of it
    ignored = {ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "runs", "results", ".git"} <= ignored
    for df in images.values():
        text = df.read_text()
        args = dict(re.findall(r"^ARG\s+(\w+)=(\S*)$", text, re.M))  # COPY ${ARG}: its default
        for src in re.findall(r"^COPY\s+(.+)\s+\S+$", text, re.M):
            for path in re.sub(r"\$\{(\w+)\}", lambda m, a=args: a[m.group(1)], src).split():
                assert (ROOT / path).exists() and path.rstrip("/") not in ignored, (df.name, path)
    # what `pip install .` (no extras) installs must not bring torch either
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if re.match(r"torch\b", d)], deps
    for f in ("twin.Dockerfile", "trainer.Dockerfile"):
        text = (DEPLOY / f).read_text()
        assert "ARG TORCH_VERSION=2.13.0" in text and "download.pytorch.org/whl/cpu" in text, f
        # torch first from the CPU index, then the package (pip then keeps that torch)
        assert text.index('"torch==$TORCH_VERSION"') < text.index('pip-install ".[train]"'), f


def test_controller_image_file_set_runs_without_torch(tmp_path):
    """The slim image holds only slicetwin/ and controller/, no torch and no `sim` extra:
    importing the controller app, building it, and the CLI must work with torch, numba,
    gymnasium, trainer and twin_service made unimportable; the simulator (the gNB image adds
    the `sim` extra) then says which extra it needs."""
    code = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'trainer', 'twin_service', 'numba', 'llvmlite',
                                  'gymnasium'):
            raise ModuleNotFoundError(f"No module named {name!r} (not in the controller image)", name=name)
        return None
sys.meta_path.insert(0, Block())
import slicetwin.cli.main as cli
cli._register()
import typer
names = set(typer.main.get_command(cli.app).commands)
assert {'controller', 'gnb'} <= names, names
from controller.app import create_app
from controller.settings import ControllerSettings
create_app(ControllerSettings(env="dev"))
import importlib
from slicetwin.core.extras import MissingExtra
for mod in ('slicetwin.sim.simulator', 'slicetwin.ops.gnb'):
    try:
        importlib.import_module(mod)
    except MissingExtra as e:
        assert e.extra == 'sim'
    else:
        raise AssertionError(mod + ' imported without numba')
assert 'torch' not in sys.modules
print('ok')
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICETWIN_")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


def test_prometheus_scrapes_every_slicetwin_server():
    compose = load_compose()
    prom = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    targets = {}
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                targets[t] = job["job_name"]
    for t in targets:
        host, port = t.rsplit(":", 1)
        if host == "localhost":
            continue
        assert host in compose["services"], f"scrape target {t}: no such compose service"
        assert int(port) in container_ports(compose["services"][host]), t
    # every SliceTwin server (a service with a port) is scraped, under its own job name
    for name, svc in slicetwin_services(compose).items():
        for cp in container_ports(svc):
            assert targets.get(f"{name}:{cp}") == name, f"{name}:{cp} is not scraped"
    # Prometheus mounts this folder where --config.file points
    psvc = compose["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in psvc["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in psvc["command"]
    assert prom["rule_files"] == ["alerts.yml"]


def test_grafana_provisioning_matches_compose_and_dashboard():
    compose = load_compose()
    g = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 2)[:2] if v.count(":") == 2 else v.split(":") for v in g["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (src,) = ds["datasources"]
    assert src["type"] == "prometheus"
    host, port = urllib.parse.urlparse(src["url"]).netloc.split(":")
    assert host in compose["services"] and int(port) in container_ports(compose["services"][host])
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/slicetwin.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]

    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("allocation", "sla satisfaction", "utility", "latency", "policy version",
                  "fallback", "policy in service", "twin calibration error"):
        assert topic in titles, f"dashboard has no {topic!r} panel"
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == src["uid"], p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert all(t["datasource"]["uid"] == src["uid"] for t in p["targets"])


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (apt-get install prometheus)")
def test_promtool_check_config_rules_and_alert_unit_tests():
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        r = subprocess.run(["promtool", *args], cwd=PROM_DIR, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (apt-get install prometheus)")
def test_dashboard_queries_are_valid_promql(tmp_path):
    """Grafana would show a parse error only when someone opens the panel: every dashboard query
    goes through promtool's PromQL parser as a recording rule."""
    rules = [{"record": f"slicetwin:dashboard_query_{i}", "expr": expr}
             for i, (_, expr, _) in enumerate(q for q in queries() if q[0].startswith("dash"))]
    assert len(rules) >= 20
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture()
def local_stack(tmp_path) -> Iterator[LocalStack]:
    """The documented set-up: `slicetwin keys init`, then the compose stack (Redis with the
    ACL file the command wrote, every service with the keys of its .env)."""
    from slicetwin.ops.procs import RedisServer

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    env = {k: v for k, v in os.environ.items() if k != "SLICETWIN_ENV"}
    r = subprocess.run([str(SLICETWIN_BIN), "keys", "init", "--out", str(tmp_path / ".env"),
                        "--acl", str(tmp_path / "users.acl")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    srv = RedisServer(free_port(), tmp_path, ["--aclfile", str(tmp_path / "users.acl")])
    srv.start()
    stack = LocalStack(load_compose(), tmp_path, srv.port, read_env(tmp_path / ".env"))
    yield stack
    stack.stop_all()
    srv.stop()


def inspect_redis(stack: LocalStack):
    """A Redis client for the test's own checks (the trainer's user: models and the stream)."""
    import redis

    pw = stack.keys["REDIS_TRAINER_PASSWORD"]
    return redis.Redis.from_url(f"redis://trainer:{pw}@127.0.0.1:{stack.redis_port}/0")


def metrics_pages(stack: LocalStack) -> dict[str, str]:
    """/metrics text of every started SliceTwin server."""
    pages = {}
    for name in stack.services:
        if name in ("redis", "gnb", "prometheus") or not stack.ports.get(name):
            continue
        (lp,) = stack.ports[name].values()
        status, body = http_get(f"http://127.0.0.1:{lp}/metrics")
        assert status == 200, (name, status)
        pages[name] = body.decode()
    return pages


def absent_metrics(pages: dict[str, str]) -> dict[str, list[str]]:
    """Names used by the dashboard / alert rules that their (started) owner does not expose."""
    names = {svc: exposed_names(text) for svc, text in pages.items()}
    return {m: sorted(where) for m, where in sorted(referenced_metrics().items())
            if owner_of(m) in names and m not in names[owner_of(m)]}


def exposed_labels(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = re.findall(r'(\w+)="', rest.rsplit("}", 1)[0]) if rest else []
            out.setdefault(name.split()[0], set()).update(labels)
    return out


def queries() -> list[tuple[str, str, set[str]]]:
    """(where, PromQL, labels referenced by its legend or annotations) of dashboard and rules."""
    out = []
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        for t in p.get("targets", []):
            refs = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
            out.append((f"dashboard: {p['title']}", t["expr"], refs))
    for g in yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]:
        for r in g["rules"]:
            refs = set(re.findall(r"\$labels\.(\w+)", json.dumps(r.get("annotations", {}))))
            out.append((f"alert: {r['alert']}", r["expr"], refs))
    return out


def label_problems(pages: dict[str, str]) -> list[str]:
    """Labels that queries filter, group or print by but their metrics do not carry (a typo
    there gives an empty panel or an alert that never fires, silently)."""
    labels: dict[str, set[str]] = {}
    for text in pages.values():
        for k, v in exposed_labels(text).items():
            labels.setdefault(k, set()).update(v)
    target_labels = {"job", "instance", "service"}
    problems = []
    for where, expr, refs in queries():
        metrics = set(_METRIC.findall(expr))
        for m, body in re.findall(r"\b(slicetwin_\w+)\{([^}]*)\}", expr):
            if m in labels:
                bad = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body)) - labels[m] - target_labels
                problems += [f"{where}: {m} has no label {b!r}" for b in sorted(bad)]
        if not metrics or not metrics <= labels.keys():
            continue  # a metric without samples yet: its labels are unknown
        avail = target_labels.union(*(labels[m] for m in metrics))
        used = set(refs)
        for grp in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            used |= {x.strip() for x in grp.split(",") if x.strip()}
        problems += [f"{where}: label {b!r} not on {sorted(metrics)}" for b in sorted(used - avail)]
    return problems


def run_gnb(stack: LocalStack, windows: int) -> dict:
    """The compose gNB command, cut to ``windows`` windows; returns its JSON summary."""
    ls = stack.local_service("gnb")
    ls.argv[ls.argv.index("--windows") + 1] = str(windows)
    stack.run_healthcheck(ls)  # compose: the gNB's check is "controller reachable"
    ls.start()
    ls.proc.wait(240)
    out = ls.tail(20000)
    assert ls.proc.returncode == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    cells = int(ls.argv[ls.argv.index("--cells") + 1])
    assert summary["failed_requests"] == 0 and summary["invariant_violations"] == 0, summary
    assert summary["decisions"] == cells * windows and summary["versions"], summary
    return summary


def test_dashboard_and_alert_metrics_exist_on_live_services(local_stack):
    """Start the compose controller, twin and trainer commands (each waited on with its compose
    health check), drive a few windows through the controller with the compose gNB command, then
    every slicetwin_* name on the dashboard and in the alert rules must be on the owning
    service's /metrics, and every label they use must be on the metric."""
    stack = local_stack
    wanted = referenced_metrics()
    assert len(wanted) >= 10
    assert {owner_of(m) for m in wanted} <= {"controller", "twin", "trainer"}
    pending = missing_cli_services(stack.compose)
    ctl = stack.local_service("controller")
    ctl.start()
    stack.run_healthcheck(ctl)
    run_gnb(stack, 5)
    pages = metrics_pages(stack)
    missing = absent_metrics(pages)
    assert not missing, f"metrics named in deploy/ but absent from /metrics: {missing}"
    assert not label_problems(pages)
    if "twin" in pending:
        pytest.skip(f"twin metrics unchecked: {pending['twin']}")
    twin = stack.local_service("twin")
    twin.start()
    stack.run_healthcheck(twin)
    pages = metrics_pages(stack)
    assert set(pages) == {"controller", "twin"}
    missing = absent_metrics(pages)
    assert not missing, f"metrics named in deploy/ but absent from /metrics: {missing}"
    assert not label_problems(pages)
    trainer = stack.local_service("trainer")
    trainer.start()
    stack.run_healthcheck(trainer, timeout=120)  # /healthz: it has read the stream
    pages = metrics_pages(stack)
    assert set(pages) == {"controller", "twin", "trainer"}
    missing = absent_metrics(pages)
    assert not missing, f"metrics named in deploy/ but absent from /metrics: {missing}"
    assert not label_problems(pages)
    assert any(owner_of(m) == "trainer" for m in referenced_metrics())
    # the transitions the gNB's 5 windows closed ((5 - 1) per cell) went through the stream
    # into the trainer's dataset
    cells = int(stack.compose["services"]["gnb"]["command"][
        stack.compose["services"]["gnb"]["command"].index("--cells") + 1])

    def ingested() -> float:
        for ln in metrics_pages(stack)["trainer"].splitlines():
            if ln.startswith("slicetwin_trainer_transitions_ingested_total "):
                return float(ln.split()[1])
        return -1.0

    deadline = time.time() + 20
    while ingested() != 4 * cells and time.time() < deadline:
        time.sleep(0.2)
    assert ingested() == 4 * cells


# ============================================================================= slow: whole stack
def _prometheus_config(stack: LocalStack, prom_port: int, skip_jobs: set[str]) -> dict:
    prom = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    prom["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    prom["rule_files"] = [str(PROM_DIR / f) for f in prom["rule_files"]]
    jobs = []
    for job in prom["scrape_configs"]:
        if job["job_name"] in skip_jobs:
            continue
        for sc in job.get("static_configs", []):
            sc["targets"] = [f"127.0.0.1:{prom_port}" if t.startswith("localhost:")
                             else stack.rewrite(t) for t in sc["targets"]]
        jobs.append(job)
    prom["scrape_configs"] = jobs
    return prom


def _prom_query(base: str, q: str) -> list[dict]:
    status, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(q)}")
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def trainer_cycles(ls: LocalService) -> list[dict]:
    """The worker prints one JSON line per finished cycle on stdout."""
    out = []
    for line in ls.tail(2_000_000).splitlines():
        if line.startswith("{") and '"policy_version"' in line:
            out.append(json.loads(line))
    return out


def wait_for(fn, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def check_closed_loop(stack: LocalStack, prom: str) -> None:
    """gNB -> controller -> stream -> trainer -> registry -> twin service / controller: enough
    windows for the trainer's first cycle, whose twin the twin service must then serve, and whose
    policy the controller serves when the gate promoted it."""
    from trainer.worker.settings import WorkerSettings

    need = WorkerSettings().min_transitions
    cells = int(stack.compose["services"]["gnb"]["command"][
        stack.compose["services"]["gnb"]["command"].index("--cells") + 1])
    run_gnb(stack, need // cells + 20)
    trainer = stack.services["trainer"]
    (cycle, *_) = wait_for(lambda: trainer_cycles(trainer), 420, "the trainer's first cycle:\n"
                           + trainer.tail())
    assert cycle["skipped"] is None and cycle["twin_published"] and cycle["policy_version"], cycle
    print(f"trainer cycle: policy {cycle['policy_version']} promoted={cycle['promoted']}, twin "
          f"{cycle['twin_version']} (agent 2 via {cycle['twin_backend']}), s={cycle['seconds']}")
    twin_port = stack.ports["twin"][8002]
    ctl_port = stack.ports["controller"][8080]

    # the trainer keeps cycling while the gNB's data lasts: a later cycle may already have
    # replaced the first one's twin or policy, so "served" means published by some cycle
    def twin_serves():
        req = urllib.request.Request(  # the twin needs its bearer key (from .env)
            f"http://127.0.0.1:{twin_port}/v1/twin/model",
            headers={"authorization": f"Bearer {stack.keys['SLICETWIN_TWIN_API_KEY']}"})
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        return status == 200 and json.loads(body).get("version") in {
            c["twin_version"] for c in trainer_cycles(trainer)}

    wait_for(twin_serves, 30, f"twin service to serve {cycle['twin_version']} (or a later one)")
    if cycle["promoted"]:
        def ctl_serves():
            status, body = http_get(f"http://127.0.0.1:{ctl_port}/v1/policy")
            return json.loads(body)["version"] in {
                c["policy_version"] for c in trainer_cycles(trainer) if c["promoted"]}

        wait_for(ctl_serves, 30, f"controller hot-swap to {cycle['policy_version']}")
        wait_for(lambda: has_series(prom, 'sum(slicetwin_model_swaps_total{job="controller"}) >= 1'),
                 30, "Prometheus to see the swap")
    else:  # refused by the gate: published, not served

        r = inspect_redis(stack)
        prefix = service_env(stack.compose["services"]["trainer"])["SLICETWIN_REGISTRY_PREFIX"]
        assert r.exists(f"{prefix}{{models}}:policy:{cycle['policy_version']}"), cycle
        r.close()
    wait_for(lambda: has_series(
        prom, 'sum(slicetwin_twin_model_reloads_total{job="twin",result="ok"}) >= 1'),
        30, "Prometheus to see the twin reload")
    wait_for(lambda: has_series(prom, 'slicetwin_twin_model_loaded{job="twin"} == 1'), 30,
             "Prometheus to see a twin served")
    # the trainer's own metrics, scraped by the compose job, tell the same story as its JSON
    # lines (a series must name a version that some cycle published, see above)
    def seen_with_cycle(query: str, match) -> bool:
        cycles = trainer_cycles(trainer)
        return any(match(r["metric"], c) for r in _prom_query(prom, query) for c in cycles)

    wait_for(lambda: seen_with_cycle(
        'slicetwin_trainer_policy_published_info{job="trainer"} == 1',
        lambda m, c: m.get("version") == c["policy_version"]
        and m.get("promoted") == str(c["promoted"]).lower()),
        30, "Prometheus to see the trainer's published policy")
    decision = "promote" if cycle["promoted"] else "refuse"
    wait_for(lambda: has_series(
        prom, f'slicetwin_trainer_gate_decisions_total{{job="trainer",decision="{decision}"}} >= 1'),
        30, "Prometheus to see the gate decision")
    wait_for(lambda: seen_with_cycle('slicetwin_twin_model_info{job="twin"} == 1',
                                     lambda m, c: m.get("version") == c["twin_version"]),
             30, "Prometheus to see the twin version served")
    assert has_series(prom, 'slicetwin_trainer_cycle_duration_seconds_count{job="trainer"} >= 1')
    print(f"trainer cycles by the end of the checks: "
          f"{[c['twin_version'] for c in trainer_cycles(trainer)]}")


def has_series(base: str, q: str) -> bool:
    return bool(_prom_query(base, q))


@pytest.mark.slow
def test_compose_stack_as_local_processes(local_stack, tmp_path):
    stack = local_stack
    compose = stack.compose
    pending = missing_cli_services(compose)
    skipped = set(pending)
    for reason in pending.values():
        print(f"NOTE: {reason}")
    have_prom = shutil.which("prometheus") is not None and shutil.which("promtool") is not None

    # redis: the private fixture server stands in; its compose health check must pass against it
    stack.run_healthcheck(stack.local_service("redis"))
    for name in start_order(compose):
        svc = compose["services"][name]
        if name in skipped or name == "redis" or not is_slicetwin(svc):
            continue
        for dep in svc.get("depends_on") or {}:
            if dep in stack.services or dep == "redis" or dep in skipped:
                continue
            pytest.fail(f"{name} depends on {dep}, which was not started before it")
        if name == "gnb":
            run_gnb(stack, GNB_TEST_WINDOWS)
            continue
        ls = stack.local_service(name)
        ls.start()
        stack.run_healthcheck(ls, timeout=180)

    # the transitions of the gNB's windows reached Redis through the controller's sink

    r = inspect_redis(stack)
    prefix = service_env(compose["services"]["controller"]).get("SLICETWIN_REGISTRY_PREFIX", "")
    deadline = time.time() + 10
    while r.xlen(f"{prefix}transitions") == 0 and time.time() < deadline:
        time.sleep(0.2)
    assert r.xlen(f"{prefix}transitions") > 0
    if "trainer" in stack.services:
        # ... and the trainer worker consumed all of them (delivered and acknowledged)
        last_id = r.xinfo_stream(f"{prefix}transitions")["last-generated-id"]
        deadline = time.time() + 60
        while time.time() < deadline:
            (g,) = [g for g in r.xinfo_groups(f"{prefix}transitions") if g["name"] == b"trainer"]
            if g["last-delivered-id"] == last_id and g["pending"] == 0:
                break
            time.sleep(0.5)
        assert g["last-delivered-id"] == last_id and g["pending"] == 0, (g, last_id,
                                                                          stack.services["trainer"].tail())
    r.close()

    pages = metrics_pages(stack)
    missing = absent_metrics(pages)
    assert not missing, f"metrics named in deploy/ but absent from /metrics: {missing}"
    assert not label_problems(pages)

    if not have_prom:
        pytest.skip("Debian's prometheus package is not installed: the local stack ran, but the "
                    "real-Prometheus scrape was not checked")
    prom_port = stack.ports["prometheus"][9090]
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(_prometheus_config(stack, prom_port, skipped)))
    chk = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    psvc = LocalService("prometheus", [
        "prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-lifecycle"],
        dict(os.environ), None, tmp_path / "prometheus.log")
    stack.services["prometheus"] = psvc
    psvc.start()
    psvc.healthcheck = stack.rewrite_args(compose["services"]["prometheus"]["healthcheck"]["test"][1:],
                                          "prometheus")
    stack.run_healthcheck(psvc)
    base = f"http://127.0.0.1:{prom_port}"
    expected_jobs = {j["job_name"] for j in yaml.safe_load(cfg.read_text())["scrape_configs"]}
    deadline = time.time() + 60
    up: dict[str, str] = {}
    while time.time() < deadline:
        up = {s["metric"]["job"]: s["value"][1] for s in _prom_query(base, "up")}
        if set(up) == expected_jobs and all(v == "1" for v in up.values()):
            break
        time.sleep(1)
    assert set(up) == expected_jobs and all(v == "1" for v in up.values()), (up, psvc.tail())
    # real data went through: the gNB's decisions are in Prometheus
    dec = _prom_query(base, 'sum(slicetwin_decisions_total{job="controller"})')
    assert dec and float(dec[0]["value"][1]) >= GNB_TEST_WINDOWS
    # every alert rule evaluates without error against the live series
    deadline = time.time() + 30
    health: dict[str, str] = {}
    while time.time() < deadline:
        status, body = http_get(f"{base}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        health = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
        if health and all(h == "ok" for h in health.values()):
            break
        time.sleep(1)
    assert health and all(h == "ok" for h in health.values()), health
    # every dashboard query runs; the core panels (brief: allocation, SSR, utility, latency,
    # decisions by policy version, model version) show data while the gNB is sending (the
    # compose gNB runs continuously; here a second run of it, while Prometheus scrapes)
    core = ("Allocation", "SLA satisfaction", "Utility", "Request latency", "Decisions/s",
            "Policy in service")
    dash = [(w, e) for w, e, _ in queries() if w.startswith("dashboard")]
    for where, expr in dash:
        status, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
        assert status == 200, (where, expr, body[:300])

    def has_data(expr: str) -> bool:
        res = _prom_query(base, expr)
        return any(v["value"][1] not in ("NaN", "+Inf", "-Inf") for v in res)

    run_gnb(stack, GNB_TEST_WINDOWS)
    want = [(w, e) for w, e in dash if w.split(": ", 1)[1].startswith(core)]
    deadline = time.time() + 30
    while True:
        empty = [(w, e) for w, e in want if not has_data(e)]
        if not empty or time.time() > deadline:
            break
        time.sleep(1)
    assert not empty, empty
    if "trainer" in stack.services:
        check_closed_loop(stack, base)
    if pending:
        pytest.skip(f"stack checked without {', '.join(sorted(pending))}: "
                    + "; ".join(pending.values()))
