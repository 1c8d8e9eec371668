"""deploy/k8s: every manifest valid against Kubernetes' own schemas (kubernetes-validate, strict), the
ServiceMonitor checked field by field (its CRD is not in those schemas), the pieces wired to each other
(shard count = replicas, selectors, ports, secrets as files, probes, non-root), the plain scrape config
accepted by promtool, and the pod's environment accepted by the real `mt5-agent settings`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent.telemetry.catalog import AGENT_JOB
from tests.tools import require, require_tool

try:
    import kubernetes_validate
except ImportError:  # the dev extra installs it: a skip here, a failure under CI (tests.tools.require)
    kubernetes_validate = None


def _validator() -> Any:
    require(kubernetes_validate is not None, "kubernetes-validate is not installed (pip install -e '.[dev]')")
    return kubernetes_validate


REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
# The oldest Kubernetes these manifests are for: the pod-index label is on every StatefulSet pod from 1.28
# (beta, on by default) and GA in 1.32. Checked against both ends of what kubernetes-validate knows.
K8S_VERSIONS = ("1.28", "1.32")
SECRET_WORDS = re.compile(r"TOKEN|PASSWORD|SECRET|PASSWD|API_KEY|CREDENTIAL", re.I)
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _kustomization() -> dict[str, Any]:
    [doc] = _load(K8S / "kustomization.yaml")
    return doc


def _manifests() -> list[dict[str, Any]]:
    return [doc for name in _kustomization()["resources"] for doc in _load(K8S / name)]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in _manifests() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _statefulset() -> dict[str, Any]:
    return _one("StatefulSet", "mt5-agent")


def _container() -> dict[str, Any]:
    [container] = _statefulset()["spec"]["template"]["spec"]["containers"]
    return container


def _env() -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in _container()["env"]}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_kustomization_lists_every_manifest_once() -> None:
    listed = _kustomization()["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk, "a manifest is missing from kustomization.yaml (or listed but absent)"
    names = [(d["kind"], d["metadata"]["name"]) for d in _manifests()]
    assert len(names) == len(set(names))
    assert not any("namespace" in d["metadata"] for d in _manifests()), "the namespace is the applier's"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_manifests_validate_against_kubernetes_schemas(version: str) -> None:
    validator, checked = _validator(), 0
    for doc in _manifests():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: test_servicemonitor_has_the_operators_shape
        try:
            validator.validate(doc, version, strict=True)
        except validator.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {list(exc.path)}: {exc.message}")
        checked += 1
    assert checked == len(_manifests()) - 1


def test_kubernetes_validate_rejects_a_broken_manifest() -> None:
    """The validation above can fail: a misspelt field (strict) and a wrong type are refused."""
    validator = _validator()
    broken = _statefulset()
    broken["spec"]["replica"] = 2
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, K8S_VERSIONS[-1], strict=True)
    wrong = _statefulset()
    wrong["spec"]["replicas"] = "two"
    with pytest.raises(validator.ValidationError):
        validator.validate(wrong, K8S_VERSIONS[-1], strict=True)


# The ServiceMonitor's CRD is not among kubernetes-validate's schemas, and no CRD is vendored here: this is
# the subset of monitoring.coreos.com/v1 ServiceMonitor the manifest uses, written from the operator's API
# reference (field names, the duration pattern, relabel actions), closed to anything else so a misspelt
# field fails as kubectl would reject it.
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_LABEL = {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": _LABEL},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {
            "enum": [
                *("replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep"),
                *("lowercase", "uppercase", "keepequal", "dropequal"),
            ]
        },
    },
}
_SECRET_KEY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "key"],
    "properties": {"name": {"type": "string", "minLength": 1}, "key": {"type": "string"}},
}
SERVICEMONITOR_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object"}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "authorization": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"type": {"type": "string"}, "credentials": _SECRET_KEY},
                            },
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
            },
        },
    },
}


def test_servicemonitor_has_the_operators_shape() -> None:
    monitor = _one("ServiceMonitor")
    validator = jsonschema.Draft7Validator(SERVICEMONITOR_SCHEMA)
    errors = list(validator.iter_errors(monitor))
    assert not errors, "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    misspelt = yaml.safe_load(yaml.safe_dump(monitor))
    misspelt["spec"]["endpoints"][0]["scrape_timeout"] = "10s"
    assert list(validator.iter_errors(misspelt)), "the check must refuse an unknown field"


def test_servicemonitor_scrapes_each_shard_once_as_the_alerts_job() -> None:
    """It selects the headless Service only (the API Service too would scrape every shard twice), on a
    port that Service has, with the job label alerts and dashboards select, each shard labelled by its
    ordinal, and the metrics token from the Secret the agent reads it from."""
    monitor = _one("ServiceMonitor")["spec"]
    services = [d for d in _manifests() if d["kind"] == "Service"]
    selected = [s for s in services if _matches(monitor["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in selected] == ["mt5-agent"]
    [headless] = selected
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["metadata"]["labels"][monitor["jobLabel"]] == AGENT_JOB
    [endpoint] = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in headless["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert relabel["shard"] == ["__meta_kubernetes_pod_label_apps_kubernetes_io_pod_index"]
    assert relabel["instance"] == ["__meta_kubernetes_pod_name"]
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer"
    token_file = _env()["MT5_AGENT_METRICS_TOKEN_FILE"]["value"]
    assert _secret_file(token_file) == (credentials["name"], credentials["key"])


def test_shard_index_is_the_ordinal_and_the_count_is_replicas() -> None:
    statefulset = _statefulset()
    env = _container()["env"]
    names = [entry["name"] for entry in env]
    index = _env()["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == f"metadata.labels['{POD_INDEX_LABEL}']"
    # $(POD_INDEX) is expanded only from variables defined before it
    assert names.index("POD_INDEX") < names.index("MT5_AGENT_SHARD")
    shard = _env()["MT5_AGENT_SHARD"]["value"]
    match = re.fullmatch(r"\$\(POD_INDEX\)/(\d+)", shard)
    assert match, shard
    assert int(match.group(1)) == statefulset["spec"]["replicas"] >= 1, "N must equal replicas"
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"


def test_services_and_budget_select_the_shards() -> None:
    statefulset = _statefulset()
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert _matches(statefulset["spec"]["selector"]["matchLabels"], pod_labels)
    headless, api = _one("Service", "mt5-agent"), _one("Service", "mt5-agent-api")
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["publishNotReadyAddresses"] is True, "a not-ready shard must still be scraped"
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    for service in (headless, api):
        assert _matches(service["spec"]["selector"], pod_labels)
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    assert api["spec"]["type"] == "ClusterIP" and "clusterIP" not in api["spec"]
    listen = _one("ConfigMap", "mt5-agent")["data"]["MT5_AGENT_LISTEN"]
    assert listen == f"0.0.0.0:{ports['http']}"
    budget = _one("PodDisruptionBudget", "mt5-agent")["spec"]
    assert _matches(budget["selector"]["matchLabels"], pod_labels)
    assert budget == {"maxUnavailable": 1, "selector": budget["selector"]}


def test_probes_resources_and_non_root() -> None:
    container = _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    resources = container["resources"]
    assert set(resources) == {"requests", "limits"}
    assert _cpu(resources["requests"]["cpu"]) <= _cpu(resources["limits"]["cpu"])
    assert _bytes(resources["requests"]["memory"]) <= _bytes(resources["limits"]["memory"])
    # docs/capacity.md: a 10,000-account shard peaks at ~190-230 MB; the limit leaves room above that
    assert _bytes(resources["limits"]["memory"]) >= 400 * 2**20
    pod = _statefulset()["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert user, "deploy/Dockerfile names no numeric USER"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        int(user.group(1)),
        int(user.group(2)),
    )
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "a read-only root needs a writable /tmp"


def _cpu(value: str | int) -> float:
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(value[:-2]) * units[value[-2:]] if value[-2:] in units else int(value)


def _secret_file(path: str) -> tuple[str, str]:
    """(Secret name, key) of a file path the container reads from a mounted Secret volume."""
    pod = _statefulset()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in _container()["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None or not path.startswith(mount["mountPath"] + "/"):
            continue
        assert mount.get("readOnly") is True
        relative = path[len(mount["mountPath"]) + 1 :]
        keys = {item["path"]: item["key"] for item in secret.get("items", [])}
        return secret["secretName"], keys.get(relative, relative)
    raise AssertionError(f"{path} is not in a mounted Secret")


def test_secrets_are_files_from_secrets_and_nothing_is_literal() -> None:
    env = _env()
    for name, entry in env.items():
        if SECRET_WORDS.search(name):
            assert name.endswith("_FILE"), f"{name} must be read from a file"
            assert _secret_file(entry["value"])[0] == "mt5-agent-tokens"
    # The store URL carries the replica set's password: a file from its Secret, never a variable.
    assert "MT5_AGENT_STORE_URL" not in env
    assert _secret_file(env["MT5_AGENT_STORE_URL_FILE"]["value"]) == ("mt5-agent-store", "url")
    assert not [e for e in env.values() if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]]
    config = _one("ConfigMap", "mt5-agent")["data"]
    assert not [key for key in config if SECRET_WORDS.search(key) or key == "MT5_AGENT_STORE_URL"]
    assert not [d for d in _manifests() if d["kind"] == "Secret"], "Secrets are created, never committed"
    for key in ("MT5_AGENT_BRIDGE_TOKEN_FILE", "MT5_AGENT_ADMIN_TOKEN_FILE", "MT5_AGENT_METRICS_TOKEN_FILE"):
        assert key in env


STORE_URL = "mongodb://mt5:pw@mongo-0.mongo:27017,mongo-1.mongo:27017/?replicaSet=rs0"


def _pod_environment(ordinal: int, secrets: Path) -> dict[str, str]:
    """The variables the kubelet gives shard `ordinal`'s container: the ConfigMap, then `env` in order
    with $(VAR) expanded from those before it; secret files relocated under `secrets`."""
    out = dict(_one("ConfigMap", "mt5-agent")["data"])
    for entry in _container()["env"]:
        if "value" in entry:
            value = re.sub(r"\$\((\w+)\)", lambda m: out.get(m.group(1), m.group(0)), entry["value"])
        elif "fieldRef" in entry["valueFrom"]:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.labels['{POD_INDEX_LABEL}']"
            value = str(ordinal)
        else:
            raise AssertionError(f"{entry['name']}: only the pod index comes from valueFrom")
        if entry["name"].endswith("_FILE"):
            name, key = _secret_file(value)
            target = secrets / name / key
            target.parent.mkdir(parents=True, exist_ok=True)
            content = STORE_URL if name == "mt5-agent-store" else f"{key}-for-test-0123456789abcdef"
            target.write_text(content + "\n", encoding="utf-8")
            value = str(target)
        out[entry["name"]] = value
    return out


def test_the_agent_accepts_the_pods_environment(tmp_path: Path) -> None:
    """The real `mt5-agent settings` with shard 1's variables: every setting valid, the secrets read from
    their files, the store URL's password masked, no variable of ours left unread but MT5_AGENT_SHARD
    (read once the agent's sharding lands)."""
    pod = _pod_environment(1, tmp_path / "secrets")
    assert pod["MT5_AGENT_SHARD"] == f"1/{_statefulset()['spec']['replicas']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MT5_AGENT_", "OTEL_"))}
    env.update(pod)
    result = subprocess.run(
        [sys.executable, "-c", "from agent.entry import main; raise SystemExit(main())", "settings"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("MT5_")}
    for name in ("MT5_AGENT_METRICS_TOKEN", "MT5_AGENT_ADMIN_TOKEN", "MT5_AGENT_BRIDGE_TOKEN"):
        assert str(tmp_path / "secrets" / "mt5-agent-tokens") in lines[name], lines[name]
    assert "mongodb://mt5:***@mongo-0.mongo" in lines["MT5_AGENT_STORE_URL"]
    assert "pw@" not in result.stdout + result.stderr
    assert "0.0.0.0:8080" in lines["MT5_AGENT_LISTEN"]
    if "MT5_AGENT_SHARD" in lines:
        assert f"1/{_statefulset()['spec']['replicas']}" in lines["MT5_AGENT_SHARD"]
    unknown = re.findall(r"unknown environment variable (\S+)", result.stderr)
    assert set(unknown) <= {"MT5_AGENT_SHARD"}, result.stderr


def test_plain_scrape_config_passes_promtool_and_labels_shards(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = yaml.safe_load((K8S / "prometheus-scrape.yml").read_text(encoding="utf-8"))
    [job] = config["scrape_configs"]
    assert job["job_name"] == AGENT_JOB
    token = tmp_path / "metrics_token"
    token.write_text("t\n", encoding="utf-8")
    job["authorization"]["credentials_file"] = str(token)
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "config", str(checked)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The SRV name is the headless Service's port, and each rule turns an SRV target into the labels the
    # ServiceMonitor gives (Prometheus anchors relabel regexes at both ends).
    [sd] = job["dns_sd_configs"]
    headless = _one("Service", "mt5-agent")
    port = headless["spec"]["ports"][0]["name"]
    assert sd["names"] == [f"_{port}._tcp.{headless['metadata']['name']}.mt5.svc.cluster.local"]
    target = "mt5-agent-12.mt5-agent.mt5.svc.cluster.local."
    labels = {}
    for rule in job["relabel_configs"]:
        match = re.fullmatch(rule["regex"], target)
        assert match, rule
        labels[rule["target_label"]] = match.expand(re.sub(r"\$(\d+)", r"\\g<\1>", rule["replacement"]))
    assert labels == {"shard": "12", "instance": "mt5-agent-12"}
