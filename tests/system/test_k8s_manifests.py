"""Kubernetes manifests (deploy/k8s): schema validation against a pinned Kubernetes version and
consistency with the code they run.

No cluster runs here. ``kubernetes-validate`` checks every object against the OpenAPI schemas of
``K8S_VERSION`` in strict mode (unknown fields are errors); the ServiceMonitor, a CRD it has no
schema for, is checked by hand. The kustomizations are built by a small loader that supports only
the fields the files use (and is compared with ``kubectl kustomize`` where kubectl is installed).
The rest holds the manifests to the code: the environment each pod gets builds the service's
settings in production mode (no development keys) with its own Redis user and the compose file's
values; probe paths answer on the real apps; the HPA's custom metrics come from real controller
counters through the prometheus-adapter rules; NetworkPolicies let exactly the pods that need
Redis and the twin service reach them; Service selectors and ports meet the pods and the ports
the commands listen on; and deploy/k8s/create-secrets.sh makes every Secret key a pod reads.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.paths import ROOT  # noqa: E402

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33"  # the pinned Kubernetes minor the manifests are validated against
NAMESPACE = "slicetwin"
BUILDS = {"demo": K8S, "managed-redis": K8S / "managed-redis"}
# objects kubernetes-validate has no schema for (CRDs), checked by the tests below instead
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# not Kubernetes objects: a Secret template (validated, never applied) and Helm values
NOT_APPLIED = {"secrets.example.yaml", "prometheus-adapter-rules.yaml"}
SLICETWIN = {"controller": ("controller.settings", "ControllerSettings"),
             "twin": ("twin_service.settings", "TwinServiceSettings"),
             "trainer": ("trainer.worker.settings", "WorkerSettings")}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


# ------------------------------------------------------------------ loading and building


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _merge(base, patch):
    """Strategic-merge subset used by the overlays: maps merge key by key."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def _key(doc: dict) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def build(directory: Path) -> list[dict]:
    """``kubectl kustomize`` for the fields these kustomizations use (resources, patches of whole
    objects, image tags); any other field fails, so the loader never silently ignores one."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kust) - {"apiVersion", "kind", "resources", "patches", "images"}
    assert not unknown, f"{directory}/kustomization.yaml: the test's loader does not model {unknown}"
    docs: list[dict] = []
    for res in kust.get("resources", []):
        p = (directory / res).resolve()
        assert p.exists(), f"{directory}/kustomization.yaml: {res} does not exist"
        docs += build(p) if p.is_dir() else load_docs(p)
    keys = [_key(d) for d in docs]
    assert len(keys) == len(set(keys)), f"{directory}: duplicate objects"
    for patch in kust.get("patches", []):
        assert set(patch) == {"path"}, f"{directory}: only whole-object patch files are modelled"
        for p in load_docs(directory / patch["path"]):
            i = keys.index(_key(p))  # ValueError: the patch targets nothing in the build
            docs[i] = _merge(docs[i], p)
    for img in kust.get("images", []):
        for c in containers(docs):
            name, _, tag = c["image"].partition(":")
            if name == img["name"]:
                c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
    return docs


def containers(docs: list[dict]) -> list[dict]:
    return [c for d in docs if d["kind"] in WORKLOAD_KINDS
            for c in d["spec"]["template"]["spec"]["containers"]]


@pytest.fixture(scope="module")
def builds() -> dict[str, list[dict]]:
    return {name: build(path) for name, path in BUILDS.items()}


def find(docs, kind: str, name: str) -> dict:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} objects"
    return hits[0]


def workloads(docs) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] in WORKLOAD_KINDS}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels + matchExpressions) against ``labels``."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, key, values = e["operator"], e["key"], e.get("values", [])
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def container_port(workload: dict, port) -> int | None:
    """A named or numbered port of the workload's containers -> its number (None: no such)."""
    for c in pod_spec(workload)["containers"]:
        for p in c.get("ports", []):
            if port in (p.get("name"), p["containerPort"]):
                return p["containerPort"]
    return None


def listening_port(container: dict) -> int:
    """The port the container's command listens on (--port / --metrics-port; Redis: 6379)."""
    args = container.get("command", []) + container.get("args", [])
    for flag in ("--port", "--metrics-port"):
        if flag in args:
            return int(args[args.index(flag) + 1])
    assert args[0] == "redis-server", f"{container['name']}: which port does {args} listen on?"
    return 6379


# ------------------------------------------------------------------ the environment of a pod

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: variables defined before; $$ escapes; unknown stays."""
    return _REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
                    value)


def pod_env(docs, container: dict, secret_values: dict[str, str]) -> tuple[dict, dict]:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps, then ``env`` in
    order with $(VAR) expansion; Secret keys from ``secret_values`` (the .env of keys init).
    Returns (environment, variable -> "configmap" | "secret" | "value")."""
    env, source = {}, {}
    for ref in container.get("envFrom", []):
        assert set(ref) == {"configMapRef"}, f"{container['name']}: envFrom {ref}"
        cm = find(docs, "ConfigMap", ref["configMapRef"]["name"])
        for k, v in cm["data"].items():
            env[k], source[k] = v, "configmap"
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]], source[e["name"]] = expand(e["value"], env), "value"
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secret_values, f"{e['name']}: no key {ref['key']} in keys init"
            env[e["name"]], source[e["name"]] = secret_values[ref["key"]], "secret"
    return env, source


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    from slicetwin.platform.keys import fresh_keys

    return fresh_keys()


_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")


def compose_env(service: str, keys: dict[str, str]) -> dict[str, str]:
    """docker-compose.yml's environment of ``service``, interpolated from the keys' .env."""
    svc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]

    def sub(m):
        name, op, arg = m.groups()
        if name in keys:
            return keys[name]
        assert op == "-", f"compose needs {name}, which keys init does not make"
        return arg

    return {k: _COMPOSE_VAR.sub(sub, str(v)) for k, v in (svc.get("environment") or {}).items()}


def settings_env_names(cls) -> set[str]:
    """Environment variable names a pydantic-settings class reads (prefix + field, aliases)."""
    from pydantic import AliasChoices

    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for fname, f in cls.model_fields.items():
        names.add((prefix + fname).upper())
        va = f.validation_alias
        for c in (va.choices if isinstance(va, AliasChoices) else [va] if va else []):
            if isinstance(c, str):
                names.add(c.upper())
    return names


def settings_class(service: str):
    import importlib

    mod, name = SLICETWIN[service]
    return getattr(importlib.import_module(mod), name)


# ------------------------------------------------------------------ schema validation


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"
                  and p.name != "prometheus-adapter-rules.yaml")


def test_pinned_kubernetes_version_is_shipped_by_kubernetes_validate():
    """kubernetes-validate quietly falls back to the newest schema not newer than the version
    asked for; the pinned minor must be one it ships exactly."""
    from kubernetes_validate.utils import all_versions, major_minor

    assert K8S_VERSION in {major_minor(v) for v in all_versions()}


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_pinned_kubernetes(path):
    import kubernetes_validate

    docs = load_docs(path)
    assert docs, f"{path}: no objects"
    for doc in docs:
        what = f"{path.relative_to(K8S)}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue  # test_servicemonitor_*
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{what}: {e.message} at {'.'.join(map(str, e.path))}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{what}: {e.message} (an API removed in {K8S_VERSION}, or a CRD to add "
                        "to CRDS with its own checks)")
        if path.name not in NOT_APPLIED:
            assert doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE, what
            if doc["kind"] != "Namespace":
                assert doc["metadata"].get("namespace") == NAMESPACE, f"{what}: no namespace"


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_built_overlays_validate(builds, name):
    """Each build, patches applied, as kubectl would send it."""
    import kubernetes_validate

    for doc in builds[name]:
        if (doc["apiVersion"], doc["kind"]) not in CRDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validator_rejects_broken_objects(builds):
    """The validation above is not vacuous: strict mode refuses a misspelt field, a wrong type
    and a missing required field of the controller Deployment."""
    import kubernetes_validate

    good = find(builds["demo"], "Deployment", "controller")
    kubernetes_validate.validate(good, K8S_VERSION, strict=True)
    typo = copy.deepcopy(good)
    pod_spec(typo)["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "two"
    missing = copy.deepcopy(good)
    del pod_spec(missing)["containers"][0]["name"]
    for bad in (typo, wrong_type, missing):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_every_manifest_is_in_a_kustomization():
    """Every manifest file is applied by some kustomization (a file nobody lists is never
    deployed) and every kustomization folder is part of a build."""
    listed: set[Path] = set()
    for kf in K8S.rglob("kustomization.yaml"):
        kust = yaml.safe_load(kf.read_text())
        for res in kust.get("resources", []) + [p["path"] for p in kust.get("patches", [])]:
            p = (kf.parent / res).resolve()
            assert p.exists(), f"{kf}: {res} missing"
            listed.add(p)
    for p in manifest_files():
        if p.name not in NOT_APPLIED:
            assert p.resolve() in listed, f"{p.relative_to(K8S)} is in no kustomization"
    roots = {p.resolve() for p in BUILDS.values()}
    for kf in K8S.rglob("kustomization.yaml"):
        assert kf.parent.resolve() in listed | roots, f"{kf.parent} is in no build"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("name", sorted(BUILDS))
def test_loader_matches_kubectl_kustomize(builds, name):
    """The test's own loader builds what kustomize builds (kubectl's embedded kustomize, offline)."""
    out = subprocess.run(["kubectl", "kustomize", str(BUILDS[name])], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    theirs = sorted((d for d in yaml.safe_load_all(out.stdout) if d), key=_key)
    assert theirs == sorted(builds[name], key=_key)


# ------------------------------------------------------------------ ServiceMonitor (a CRD)


def test_servicemonitor_scrapes_each_slicetwin_server_under_its_job(builds):
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for name, docs in builds.items():
        sm = find(docs, "ServiceMonitor", "slicetwin")
        spec = sm["spec"]
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
        assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
        selected = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Service"
                    and selects(spec["selector"], s["metadata"]["labels"])}
        assert set(selected) == set(SLICETWIN), f"{name}: ServiceMonitor selects {sorted(selected)}"
        for svc_name, svc in selected.items():
            job = svc["metadata"]["labels"][spec["jobLabel"]]
            assert job in jobs, f"{svc_name}: job {job} is not one of prometheus.yml's"
            for ep in spec["endpoints"]:
                assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "honorLabels"}
                assert ep["path"] == jobs[job].get("metrics_path", "/metrics")
                assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
                assert ep["interval"] == prom["global"]["scrape_interval"]


def _metric_labels() -> set[str]:
    from controller.metrics import ControllerMetrics
    from trainer.worker.metrics import TrainerMetrics
    from twin_service.metrics import TwinMetrics

    labels = set()
    for m in (ControllerMetrics(), TwinMetrics(), TrainerMetrics()):
        for collector in m.registry._collector_to_names:  # label names only
            labels |= set(getattr(collector, "_labelnames", ()))
    return labels


def test_servicemonitor_keeps_the_services_own_labels(builds):
    """The Prometheus Operator attaches namespace, service, pod, container, endpoint, job and
    instance to every target; a metric label of the same name is renamed exported_<name> unless
    honorLabels is set, and the alert rules and dashboard filter on e.g. `endpoint`."""
    operator_labels = {"namespace", "service", "pod", "container", "endpoint", "job", "instance"}
    clash = _metric_labels() & operator_labels
    assert "endpoint" in clash  # the controller's request metrics (controller/metrics.py)
    for ep in find(builds["demo"], "ServiceMonitor", "slicetwin")["spec"]["endpoints"]:
        assert ep.get("honorLabels") is True, f"labels {sorted(clash)} would be renamed"


def test_alert_rules_load_as_a_prometheusrule():
    """docs/deployment.md wraps deploy/prometheus/alerts.yml into a PrometheusRule (spec = the
    file): its groups and rules use only fields the CRD has, with durations its pattern takes."""
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    assert set(rules) == {"groups"}
    duration = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                          r"(([0-9]+)s)?(([0-9]+)ms)?)$")
    for g in rules["groups"]:
        assert set(g) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        for r in g["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                              "annotations"}, r
            assert isinstance(r["expr"], str) and ("alert" in r) != ("record" in r)
            assert duration.match(str(r.get("for", "0"))), r.get("for")
            for k in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in r.get(k, {}).values()), (r, k)


# ------------------------------------------------------------------ settings and secrets


@pytest.mark.parametrize("build_name", sorted(BUILDS))
@pytest.mark.parametrize("service", sorted(SLICETWIN))
def test_pod_environment_builds_production_settings(builds, keys, service, build_name,
                                                    monkeypatch):
    """The environment the kubelet gives the pod builds the service's settings outside dev mode
    (no development key, API keys present), with the service's own Redis user at the configured
    endpoint; every secret the settings require comes from a Secret, never a ConfigMap."""
    docs = builds[build_name]
    container = pod_spec(find(docs, "Deployment", service))["containers"][0]
    env, source = pod_env(docs, container, keys)
    cls = settings_class(service)
    prefix = cls.model_config.get("env_prefix", "").upper()
    unknown = {k for k in env if k.startswith(prefix)} - settings_env_names(cls)
    assert not unknown, f"{service}: {cls.__name__} does not read {sorted(unknown)}"
    for k in list(os.environ):
        if k.startswith("SLICETWIN_") or k == "REDIS_URL":
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = cls()
    assert not s.dev
    common = find(docs, "ConfigMap", "slicetwin-common")["data"]
    pw = keys[f"REDIS_{service.upper()}_PASSWORD"]
    assert s.redis_url == (f"{common['REDIS_SCHEME']}://{service}:{pw}@"
                           f"{common['REDIS_HOSTPORT']}/0")
    required = [name for name, _, req in s.required_secrets() if req]
    assert "SLICETWIN_HMAC_KEY" in required
    for name in required:
        assert source.get(name) == "secret", f"{service}: {name} must come from a Secret"
    # and the check is live: without any one of them the service refuses to start
    from pydantic import ValidationError

    for name in required:
        monkeypatch.delenv(name)
        with pytest.raises(ValidationError, match=name):
            cls()
        monkeypatch.setenv(name, env[name])


@pytest.mark.parametrize("service", sorted(SLICETWIN))
def test_pod_environment_equals_compose(builds, keys, service):
    """Same settings as docker-compose.yml: every variable compose gives the service has the same
    value in the demo pod (the Redis URL included: redis:6379, the service's own user)."""
    docs = builds["demo"]
    env, _ = pod_env(docs, pod_spec(find(docs, "Deployment", service))["containers"][0], keys)
    for k, v in compose_env(service, keys).items():
        assert env.get(k) == v, f"{service}: {k} is {env.get(k)!r} here, {v!r} in compose"


def test_gnb_environment_equals_compose(builds, keys):
    docs = builds["demo"]
    env, _ = pod_env(docs, pod_spec(find(docs, "Deployment", "gnb"))["containers"][0], keys)
    want = compose_env("gnb", keys)
    for line in (ROOT / "deploy/gnb.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            want[k.strip()] = v.strip()
    assert env == want


def secret_refs(docs) -> dict[str, set[str]]:
    """Secret name -> keys the pods read (env secretKeyRef, secret volumes' items)."""
    refs: dict[str, set[str]] = {}
    for w in workloads(docs).values():
        for c in pod_spec(w)["containers"]:
            for e in c.get("env", []):
                r = e.get("valueFrom", {}).get("secretKeyRef")
                if r:
                    refs.setdefault(r["name"], set()).add(r["key"])
        for v in pod_spec(w).get("volumes", []):
            if "secret" in v:
                items = v["secret"].get("items")
                assert items, f"{v['name']}: name the Secret's keys (items)"
                refs.setdefault(v["secret"]["secretName"], set()).update(i["key"] for i in items)
    return refs


FAKE_KUBECTL = textwrap.dedent("""\
    #!{python}
    # Records each call; `create` goes to the real kubectl when there is one (client-side dry
    # run, offline), so its flags are checked and its YAML is what `apply -f -` receives.
    import json, subprocess, sys
    args, real = sys.argv[1:], {real!r}
    files, out = {{}}, ""
    for a in args:
        for flag in ("--from-env-file=", "--from-file="):
            if a.startswith(flag):
                files[a[len(flag):]] = open(a[len(flag):].split("=", 1)[-1]).read()
    if "create" in args and real:
        done = subprocess.run([real, *args], capture_output=True, text=True)
        sys.stderr.write(done.stderr)
        if done.returncode:
            sys.exit(done.returncode)
        out = done.stdout
        sys.stdout.write(out)
    stdin = sys.stdin.read() if "-f" in args and args[args.index("-f") + 1] == "-" else None
    with open({log!r}, "a") as fh:
        fh.write(json.dumps({{"args": args, "files": files, "stdin": stdin, "out": out}}) + "\\n")
    """)


def run_create_secrets(tmp_path, env_text: str, acl_text: str):
    env_file, acl_file, log = tmp_path / "keys.env", tmp_path / "users.acl", tmp_path / "log"
    env_file.write_text(env_text)
    acl_file.write_text(acl_text)
    fake = tmp_path / "kubectl"
    fake.write_text(FAKE_KUBECTL.format(python=sys.executable, log=str(log),
                                        real=shutil.which("kubectl")))
    fake.chmod(0o755)
    proc = subprocess.run(["bash", str(K8S / "create-secrets.sh"), str(env_file), str(acl_file)],
                          env={**os.environ, "KUBECTL": str(fake)}, capture_output=True,
                          text=True, timeout=120)
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def made_secrets(calls) -> dict[str, dict[str, str]]:
    """Secret name -> data, from what `create` was given (its files) or, with a real kubectl,
    from the Secret objects piped to `apply -f -` (decoded, and validated)."""
    import base64

    import kubernetes_validate

    made: dict[str, dict[str, str]] = {}
    for call in calls:
        a = call["args"]
        assert a[a.index("-n") + 1] == NAMESPACE if "-n" in a else a[:2] == ["apply", "-f"]
        if "create" in a:
            assert a[a.index("create"):a.index("create") + 3] == ["create", "secret", "generic"]
            assert "--dry-run=client" in a, "create | apply keeps the script idempotent"
            data = made.setdefault(a[a.index("generic") + 1], {})
            for spec, text in call["files"].items():
                if "=" in spec:  # --from-file=KEY=PATH
                    data[spec.split("=", 1)[0]] = text
                else:
                    data.update(line.split("=", 1) for line in text.splitlines())
        elif call["stdin"] and shutil.which("kubectl"):
            secret = yaml.safe_load(call["stdin"])
            kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
            assert secret["metadata"]["namespace"] == NAMESPACE
            decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            assert decoded == made[secret["metadata"]["name"]], "kubectl read other values"
    return made


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_create_secrets_makes_every_key_the_pods_read_and_no_other(builds, keys, tmp_path):
    """deploy/k8s/create-secrets.sh, fed the real keys init output (a kubectl wrapper records what
    it is asked to create; the real kubectl builds the Secrets where installed): every Secret key
    any pod of either build reads exists with the .env value, each Secret holds only keys its
    pods read (the promotion private key only the trainer's), no key is on a command line, and
    deploy/k8s/secrets.example.yaml names the same Secrets and keys."""
    from slicetwin.platform.keys import render_env
    from slicetwin.platform.redis_acl import passwords_from_env, render_acl

    acl = render_acl(passwords_from_env(keys))
    proc, calls = run_create_secrets(tmp_path, render_env(keys), acl)
    assert proc.returncode == 0, proc.stderr
    assert any(c["args"][:2] == ["apply", "-f"] and c["args"][2].endswith("namespace.yaml")
               for c in calls), "the namespace first"
    for c in calls:
        assert not any(v.endswith("=" + s) for v in c["args"] for s in keys.values()), \
            "a key on the command line"
    made = made_secrets(calls)
    wanted: dict[str, set[str]] = {}
    for docs in builds.values():
        for name, ks in secret_refs(docs).items():
            wanted.setdefault(name, set()).update(ks)
    assert {n: set(d) for n, d in made.items()} == wanted
    for name, data in made.items():
        for k, v in data.items():
            assert v == (acl if k == "users.acl" else keys[k]), f"{name}/{k}"
    holders = {n for n, d in made.items() if "SLICETWIN_PROMOTION_KEY" in d}
    assert holders == {"slicetwin-trainer"}
    example = {d["metadata"]["name"]: set(d["stringData"])
               for d in load_docs(K8S / "secrets.example.yaml")}
    assert example == wanted
    for d in load_docs(K8S / "secrets.example.yaml"):
        assert all(v.startswith("<") for v in d["stringData"].values()), "a real value?"


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_create_secrets_refuses_an_env_file_without_a_key(keys, tmp_path):
    from slicetwin.platform.keys import render_env

    partial = {k: v for k, v in keys.items() if k != "REDIS_TWIN_PASSWORD"}
    proc, calls = run_create_secrets(tmp_path, render_env(partial), "user default on\n")
    assert proc.returncode == 2
    assert "REDIS_TWIN_PASSWORD" in proc.stderr and "slicetwin-twin" in proc.stderr


def test_twin_waits_for_its_redis_before_starting(builds, keys, redis_url, tmp_path):
    """The twin service exits at start-up without Redis; its init container waits for a PING on
    the very URL the service will use, and returns once Redis answers."""
    docs = builds["demo"]
    spec = pod_spec(find(docs, "Deployment", "twin"))
    (init,), (main,) = spec["initContainers"], spec["containers"]
    assert init["image"] == main["image"]
    init_env, _ = pod_env(docs, init, keys)
    main_env, _ = pod_env(docs, main, keys)
    assert init_env["SLICETWIN_REDIS_URL"] == main_env["SLICETWIN_REDIS_URL"]
    from slicetwin.ops.procs import free_port

    assert init["command"][0] == "python"  # the image's venv python, which has redis-py
    cmd = [sys.executable, *init["command"][1:]]
    down = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(subprocess.TimeoutExpired) as waited:
        subprocess.run(cmd, env={**os.environ, "SLICETWIN_REDIS_URL": down},
                       capture_output=True, text=True, timeout=4, cwd=tmp_path)
    assert b"waiting for Redis" in (waited.value.stdout or b"")
    up = subprocess.run(cmd, env={**os.environ, "SLICETWIN_REDIS_URL": redis_url},
                        capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert up.returncode == 0, up.stderr


# ------------------------------------------------------------------ probes and metrics on the apps


def http_probes(container: dict) -> dict[str, dict]:
    return {k: container[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")
            if k in container}


def test_controller_probes_answer_on_the_real_app(builds):
    """Readiness on /readyz (issue 18), liveness and start-up on /healthz: every probe path of the
    controller pod answers 200 on the real app (a fresh student, dev mode), as does /metrics."""
    from fastapi.testclient import TestClient

    from controller.app import create_app
    from controller.settings import ControllerSettings

    c = pod_spec(find(builds["demo"], "Deployment", "controller"))["containers"][0]
    probes = http_probes(c)
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    with TestClient(create_app(ControllerSettings())) as client:
        for kind, probe in probes.items():
            r = client.get(probe["httpGet"]["path"])
            assert r.status_code == 200, f"{kind} {probe['httpGet']['path']}: {r.status_code}"
        assert client.get("/metrics").status_code == 200
        assert client.get("/no-such-path").status_code == 404  # the check can fail


def test_twin_probes_answer_on_the_real_app(builds):
    """The twin pod's probes exist on the twin service: /healthz 200, /readyz 503 until a twin
    model is loaded (so the pod is not ready before the trainer has published one)."""
    from fastapi.testclient import TestClient

    from twin_service.app import create_app
    from twin_service.settings import TwinServiceSettings

    c = pod_spec(find(builds["demo"], "Deployment", "twin"))["containers"][0]
    probes = http_probes(c)
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    with TestClient(create_app(TwinServiceSettings())) as client:
        for kind, probe in probes.items():
            r = client.get(probe["httpGet"]["path"])
            want = 503 if kind == "readinessProbe" else 200
            assert r.status_code == want, f"{kind} {probe['httpGet']['path']}: {r.status_code}"
        assert client.get("/metrics").status_code == 200


def test_trainer_probes_answer_on_the_metrics_server(builds):
    import httpx

    from trainer.worker.metrics import TrainerMetrics, serve

    c = pod_spec(find(builds["demo"], "Deployment", "trainer"))["containers"][0]
    srv = serve(TrainerMetrics(), 0, "127.0.0.1", lambda: (True, {"status": "ok"}))
    try:
        port = srv.server_address[1]
        for kind, probe in http_probes(c).items():
            if "httpGet" in probe:
                r = httpx.get(f"http://127.0.0.1:{port}{probe['httpGet']['path']}", timeout=5)
                assert r.status_code == 200, f"{kind}: {r.status_code}"
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    finally:
        srv.shutdown()
        srv.server_close()


def test_hpa_scales_the_controller_on_cpu_and_real_counters(builds):
    """The HPA's Pods metrics are what the prometheus-adapter rules make of counters the
    controller really exports; CPU utilisation needs a CPU request; the PDB lets a node drain
    proceed at the HPA's minimum."""
    from controller.metrics import ControllerMetrics

    docs = builds["demo"]
    hpa = find(docs, "HorizontalPodAutoscaler", "controller")
    dep = find(docs, "Deployment", "controller")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "controller")
    counters = {f.name for f in ControllerMetrics().registry.collect() if f.type == "counter"}
    rules = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    made = {}
    for rule in rules:
        series = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"].strip("'")).group(1)
        assert series.endswith("_total") and series[:-len("_total")] in counters, series
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        made[re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${", "\\g<")
                    .replace("}", ">"), series)] = series
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "Pods"}
    for m in hpa["spec"]["metrics"]:
        if m["type"] == "Resource":
            assert m["resource"]["name"] == "cpu"
            assert all("cpu" in c["resources"]["requests"] for c in pod_spec(dep)["containers"])
        else:
            name = m["pods"]["metric"]["name"]
            assert name in made, f"no prometheus-adapter rule makes {name}"
    assert "slicetwin_requests_per_second" in {m["pods"]["metric"]["name"]
                                               for m in hpa["spec"]["metrics"]
                                               if m["type"] == "Pods"}
    assert "replicas" not in dep["spec"], "kubectl apply would reset what the HPA set"
    pdb = find(docs, "PodDisruptionBudget", "controller")
    assert selects(pdb["spec"]["selector"], pod_labels(dep))
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


# ------------------------------------------------------------------ labels, selectors, ports


@pytest.mark.parametrize("build_name", sorted(BUILDS))
def test_services_select_their_workload_and_ports_meet_the_commands(builds, build_name):
    docs = builds[build_name]
    ws = workloads(docs)
    for w in ws.values():
        assert selects(w["spec"]["selector"], pod_labels(w)), w["metadata"]["name"]
        for other in ws.values():
            if other is not w:
                assert not selects(w["spec"]["selector"], pod_labels(other))
        for c in pod_spec(w)["containers"]:
            ports = {p["containerPort"] for p in c.get("ports", [])}
            if c.get("ports"):
                assert ports == {listening_port(c)}, f"{c['name']}: {ports}"
            for probe in http_probes(c).values():
                action = probe.get("httpGet") or probe.get("tcpSocket")
                if action:
                    assert container_port(w, action["port"]) == listening_port(c)
    for svc in (d for d in docs if d["kind"] == "Service"):
        backing = [w for w in ws.values() if selects({"matchLabels": svc["spec"]["selector"]},
                                                     pod_labels(w))]
        assert len(backing) == 1, f"Service {svc['metadata']['name']} selects {len(backing)}"
        for p in svc["spec"]["ports"]:
            assert container_port(backing[0], p["targetPort"]) == p["port"], \
                f"Service {svc['metadata']['name']}: {p}"
        if backing[0]["kind"] == "StatefulSet":
            assert backing[0]["spec"]["serviceName"] == svc["metadata"]["name"]


def test_workloads_run_the_compose_commands_and_images(builds):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    ws = workloads(builds["demo"])
    assert set(ws) == {"controller", "twin", "trainer", "redis", "gnb"}
    for name, w in ws.items():
        (c,) = pod_spec(w)["containers"]
        assert "command" not in c, "compose's command is the image's CMD: args"
        assert c["args"] == compose[name]["command"], name
        assert c["image"] == compose[name]["image"], name
    assert "redis" not in workloads(builds["managed-redis"])


def test_trainer_keeps_one_process_and_its_data(builds):
    for docs in builds.values():
        dep = find(docs, "Deployment", "trainer")
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
        (c,) = pod_spec(dep)["containers"]
        env = {**find(docs, "ConfigMap", "slicetwin-trainer")["data"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        vol = {v["name"]: v for v in pod_spec(dep)["volumes"]}[mounts[env["SLICETWIN_DATA_DIR"]]]
        claim = vol["persistentVolumeClaim"]["claimName"]
        assert find(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == \
            ["ReadWriteOnce"]
        assert pod_spec(dep)["securityContext"]["fsGroup"] == \
            pod_spec(dep)["securityContext"]["runAsUser"]


def test_pods_run_restricted(builds):
    """Non-root (SliceTwin images: the Dockerfiles' uid), no privilege escalation, no
    capabilities, RuntimeDefault seccomp, read-only root with a writable /tmp, no service
    account token, no service-link variables (a Service named `slicetwin` would otherwise set
    SLICETWIN_PORT in every pod), requests and limits."""
    uids = {int(u) for f in ("controller", "twin", "trainer")
            for u in re.findall(r"--uid (\d+)", (ROOT / f"deploy/{f}.Dockerfile").read_text())}
    assert len(uids) == 1
    for w in workloads(builds["demo"]).values():
        spec, name = pod_spec(w), w["metadata"]["name"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
        if name != "redis":
            assert psc["runAsUser"] in uids, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c in spec["containers"]:
                assert "/tmp" in mounts or name == "redis", f"{name}: no writable /tmp"
            assert set(c["resources"]) == {"requests", "limits"}
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            assert "memory" in c["resources"]["limits"]


# ------------------------------------------------------------------ NetworkPolicies


class Pod:
    def __init__(self, name: str, labels: dict, namespace: str = NAMESPACE, workload=None):
        self.name, self.labels, self.namespace, self.workload = name, labels, namespace, workload


def allowed(docs, src: Pod, dst: Pod, port: int) -> bool:
    """Kubernetes NetworkPolicy ingress semantics for ``src`` -> ``dst``:``port`` (TCP)."""
    namespaces = {d["metadata"]["name"]: d["metadata"].get("labels", {}) | {
        "kubernetes.io/metadata.name": d["metadata"]["name"]}
        for d in docs if d["kind"] == "Namespace"}
    namespaces.setdefault(src.namespace, {"kubernetes.io/metadata.name": src.namespace})
    policies = [p for p in docs if p["kind"] == "NetworkPolicy"
                and p["metadata"]["namespace"] == dst.namespace
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                and selects(p["spec"]["podSelector"] or {"matchLabels": {}}, dst.labels)]
    if not policies:
        return True
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(container_port(dst.workload, q["port"]) == port
                                 and q.get("protocol", "TCP") == "TCP" for q in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                assert "ipBlock" not in peer
                ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
                ns_ok = (src.namespace == dst.namespace if ns_sel is None
                         else selects(ns_sel, namespaces[src.namespace]))
                pod_ok = pod_sel is None or selects(pod_sel, src.labels)
                if ns_ok and pod_ok:
                    return True
    return False


def service_target(docs, url: str) -> tuple[dict, int]:
    """http://name:port or redis://user:pw@name:port/0 -> (backing workload, container port)."""
    u = urlsplit(url)
    svc = find(docs, "Service", u.hostname)
    (p,) = [p for p in svc["spec"]["ports"] if p["port"] == u.port]
    (w,) = [w for w in workloads(docs).values()
            if selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(w))]
    return w, container_port(w, p["targetPort"])


def test_network_policies_let_exactly_the_right_pods_in(builds, keys):
    docs = builds["demo"]
    ws = workloads(docs)
    pods = {n: Pod(n, pod_labels(w), workload=w) for n, w in ws.items()}
    redis, twin = pods["redis"], pods["twin"]
    who_reaches = {target: {n for n, p in pods.items() if n != target
                            and allowed(docs, p, pods[target], port)}
                   for target, port in (("redis", 6379), ("twin", 8002), ("trainer", 8003))}
    assert who_reaches["redis"] == {"controller", "twin", "trainer"}
    assert who_reaches["twin"] == {"trainer"}
    assert who_reaches["trainer"] == set()
    for p in pods.values():  # the controller is open to its clients
        assert allowed(docs, p, pods["controller"], 8080)
    operator = Pod("operator", {"app.kubernetes.io/part-of": "slicetwin",
                                "app.kubernetes.io/name": "operator"})
    stranger = Pod("debug", {"run": "debug"})
    elsewhere = Pod("x", pod_labels(ws["controller"]), namespace="default")
    prometheus = Pod("prometheus", {"app.kubernetes.io/name": "prometheus"}, "monitoring")
    assert allowed(docs, operator, redis, 6379)
    assert not allowed(docs, stranger, redis, 6379)
    assert not allowed(docs, elsewhere, redis, 6379), "a controller-labelled pod elsewhere"
    assert not allowed(docs, pods["trainer"], redis, 6380), "only the Redis port"
    assert not allowed(docs, operator, twin, 8002)
    # Prometheus scrapes every ServiceMonitor target
    for name in SLICETWIN:
        assert allowed(docs, prometheus, pods[name], listening_port(
            pod_spec(ws[name])["containers"][0]))
    assert not allowed(docs, Pod("prometheus", prometheus.labels, "default"), twin, 8002)
    # what each service is configured to call is open to it
    for name in ("controller", "twin", "trainer", "gnb"):
        (c,) = pod_spec(ws[name])["containers"]
        env, _ = pod_env(docs, c, keys)
        urls = [v for k, v in env.items() if k in ("SLICETWIN_REDIS_URL", "SLICETWIN_TWIN_URL")]
        urls += [a for a in c["args"] if a.startswith("http://")]
        assert urls, name
        for url in urls:
            target, port = service_target(docs, url)
            assert allowed(docs, pods[name], pods[target["metadata"]["name"]], port), \
                f"{name} cannot reach {url.split('@')[-1]}"


# ------------------------------------------------------------------ read-only root filesystem

AUDIT_HOOK = textwrap.dedent("""\
    import os, sys
    LOG, ALLOW = os.environ["K8S_AUDIT_LOG"], tuple(os.environ["K8S_AUDIT_ALLOW"].split(":"))
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def note(kind, path):
        p = os.path.abspath(os.fsdecode(path))
        if p != LOG and not p.startswith(ALLOW) and not p.startswith("/dev/"):
            with open(LOG, "a") as fh:
                fh.write(f"{kind} {p}\\n")

    def hook(event, args):
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1], args[2] or 0
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or flags & WRITE:
                note("write", args[0])
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod"):
            note(event, args[0])
        elif event in ("os.rename", "os.link", "os.symlink"):
            note(event, args[1])

    sys.addaudithook(hook)
    """)


def dockerfile_env(name: str) -> dict[str, str]:
    text = (ROOT / f"deploy/{name}.Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def report(cell: str, window: int) -> dict:
    return {"cell_id": cell, "window": window, "window_ms": 200, "slices": [
        {"slice": "volte", "arrived_packets": 110, "delivered_packets": 110,
         "sla_met_packets": 108, "throughput_bps": 1.8e5, "spectral_efficiency": 0.009},
        {"slice": "video", "arrived_packets": 1240, "delivered_packets": 1100,
         "sla_met_packets": 400, "throughput_bps": 4.1e7, "spectral_efficiency": 2.05},
        {"slice": "urllc", "arrived_packets": 12, "delivered_packets": 11, "sla_met_packets": 9,
         "throughput_bps": 3.0e7, "spectral_efficiency": 1.5}]}


def test_controller_writes_only_to_its_writable_mounts(builds, tmp_path, redis_url):
    """readOnlyRootFilesystem holds for the controller: run as a process with the pod's settings
    (Redis cell memory and transitions stream) and the image's environment, it writes nothing
    outside the pod's writable mounts (/tmp) while deciding windows of two cells, answering the
    probes and draining on SIGTERM (every Python-level write is seen by an audit hook). The twin
    service, trainer and gNB were checked the same way by hand through a full trainer cycle
    (docs/deployment.md, "Kubernetes")."""
    docs = builds["demo"]
    ctl = pod_spec(find(docs, "Deployment", "controller"))["containers"][0]
    writable = sorted(m["mountPath"] for m in ctl["volumeMounts"])
    assert writable == ["/tmp"] and str(tmp_path).startswith("/tmp/")
    hook_dir, log = tmp_path / "hook", tmp_path / "writes.log"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    image_env = dockerfile_env("controller")
    assert image_env["NUMBA_CACHE_DIR"].startswith("/tmp/")
    env = {**os.environ, "PYTHONPATH": f"{hook_dir}{os.pathsep}{ROOT}",
           "K8S_AUDIT_LOG": str(log), "K8S_AUDIT_ALLOW": ":".join(writable),
           "PYTHONDONTWRITEBYTECODE": image_env["PYTHONDONTWRITEBYTECODE"],
           "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
           **find(docs, "ConfigMap", "slicetwin-controller")["data"],
           "SLICETWIN_REDIS_URL": redis_url, "SLICETWIN_ENV": "dev"}
    import httpx
    import redis

    from slicetwin.ops.procs import free_port

    port = free_port()
    exe = str(Path(sys.executable).parent / "slicetwin")
    proc = subprocess.Popen([exe, "controller", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=5) as client:
            for window in range(1, 11):
                for cell in ("cell-1", "cell-2"):
                    r = client.post("/v1/reports", json=report(cell, window))
                    assert r.status_code == 200, r.text
            for path in ("/readyz", "/healthz", "/metrics"):
                assert client.get(path).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0
    r = redis.Redis.from_url(redis_url)
    assert r.xlen("slicetwin:transitions") > 0, "the transitions went to Redis"
    assert not log.exists() or log.read_text() == "", log.read_text()
    # the hook sees writes: the same interpreter writing outside the allowed mounts is caught
    subprocess.run([sys.executable, "-c", "open('.k8s-audit-probe', 'w').close()"],
                   cwd=tmp_path, env={**env, "K8S_AUDIT_ALLOW": "/nonexistent"}, check=True)
    assert f"write {tmp_path}/.k8s-audit-probe" in log.read_text()
