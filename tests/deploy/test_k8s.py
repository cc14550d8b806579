"""The Kubernetes manifests (deploy/k8s): valid against the Kubernetes API schemas of a
pinned version (kubernetes-validate ships them: nothing is fetched), complete, and in step
with the services' Settings classes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from jobplane.topics import Topics, admin_client, list_topics
from jobplane_gateway.config import Settings as GatewaySettings
from jobplane_gateway.main import create_app
from jobplane_local.testing import Infra
from pydantic import SecretStr

from docs.gen_config import SERVICES, env_vars, required_env_vars
from tests.deploy.kustomize import KUSTOMIZATION, Document, listed_files, pod_spec, render
from tests.deploy.settings_check import clean_stop_seconds, starts_with

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob(f"*/{KUSTOMIZATION}"))
KUSTOMIZATIONS = [BASE, *OVERLAYS]
# The oldest Kubernetes version still supported upstream when the manifests were written;
# the manifests use nothing newer.
KUBERNETES_VERSION = "1.33.0"
CONSUMERS = {"dispatcher", "retry", "notifier"}


def by_kind(documents: list[Document], kind: str) -> dict[str, Document]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def only(documents: list[Document], kind: str) -> Document:
    [doc] = by_kind(documents, kind).values()
    return doc


def service_of(deployment: Document) -> str:
    return str(deployment["metadata"]["name"]).removeprefix("jobplane-")


def container(deployment: Document) -> Document:
    spec = pod_spec(deployment)
    assert spec is not None
    [main] = spec["containers"]
    return dict(main)


def environment(documents: list[Document], workload: Document) -> dict[str, str]:
    """The environment a workload's container gets: its ConfigMaps, then its own entries
    (a secretKeyRef resolved through the rendered Secret)."""
    configmaps = by_kind(documents, "ConfigMap")
    secrets = by_kind(documents, "Secret")
    main = container(workload)
    env: dict[str, str] = {}
    for source in main.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for entry in main.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
    return env


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_file_is_listed_and_every_listed_file_exists(directory: Path) -> None:
    listed = listed_files(directory)
    assert all(path.is_file() for path in listed), [str(p) for p in listed if not p.is_file()]
    present = {p.resolve() for p in directory.glob("*.yaml") if p.name != KUSTOMIZATION}
    assert present - listed == set(), "files that no kustomization.yaml lists"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_document_is_valid_against_the_kubernetes_schemas(directory: Path) -> None:
    documents = render(directory)
    assert documents
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{directory.name}: {name}: {exc.message}", pytrace=False)


def test_the_validation_can_fail() -> None:
    """An unknown field (a typo) and a wrong type are refused: strict mode is on."""
    deployment = by_kind(render(BASE), "Deployment")["jobplane-gateway"]
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = by_kind(render(BASE), "Deployment")["jobplane-gateway"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_one_deployment_per_service_with_its_own_image(directory: Path) -> None:
    deployments = by_kind(render(directory), "Deployment")
    assert {service_of(d) for d in deployments.values()} == set(SERVICES)
    for deployment in deployments.values():
        image = container(deployment)["image"]
        assert f"jobplane-{service_of(deployment)}" in image
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_each_service_gets_settings_it_reads_and_every_one_it_requires(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = render(directory)
    every_variable = set().union(*(env_vars(cls) for cls in SERVICES.values()))
    configmap = only(documents, "ConfigMap")
    assert set(configmap["data"]) - every_variable == set(), "ConfigMap keys no service reads"
    secret = only(documents, "Secret")
    assert set(secret["stringData"]) - every_variable == set(), "Secret keys no service reads"
    for deployment in by_kind(documents, "Deployment").values():
        settings_class = SERVICES[service_of(deployment)]
        own = {entry["name"] for entry in container(deployment).get("env", [])}
        assert own - env_vars(settings_class) == set(), f"{service_of(deployment)} ignores them"
        env = environment(documents, deployment)
        assert required_env_vars(settings_class) <= set(env)
        # The service starts with these values (bounds, JSON lists, cross-checks).
        starts_with(settings_class, env, monkeypatch)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_secrets_reach_only_the_services_that_read_them(directory: Path) -> None:
    documents = render(directory)
    secret_keys = set(only(documents, "Secret")["stringData"])
    used: set[str] = set()
    for deployment in by_kind(documents, "Deployment").values():
        main = container(deployment)
        assert all("secretRef" not in source for source in main.get("envFrom", []))
        used |= {e["name"] for e in main.get("env", []) if "valueFrom" in e}
    assert used == secret_keys


def test_the_gateway_is_probed_on_its_health_routes() -> None:
    documents = render(BASE)
    gateway = by_kind(documents, "Deployment")["jobplane-gateway"]
    main = container(gateway)
    app = create_app(
        GatewaySettings(admin_api_key=SecretStr("unused"))
    )  # no lifespan: nothing opened
    routes = set(app.openapi()["paths"])
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert main["startupProbe"]["httpGet"]["path"] in routes
    [port] = main["ports"]
    assert str(port["containerPort"]) == environment(documents, gateway)["PORT"]
    service = by_kind(documents, "Service")["jobplane-gateway"]
    pod_labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_container_has_requests_and_limits(directory: Path) -> None:
    for doc in render(directory):
        spec = pod_spec(doc)
        if spec is None:
            continue
        for each in spec["containers"]:
            assert set(each["resources"]["requests"]) == {"cpu", "memory"}
            assert set(each["resources"]["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_each_deployment_has_a_disruption_budget(directory: Path) -> None:
    documents = render(directory)
    budgets = list(by_kind(documents, "PodDisruptionBudget").values())
    for deployment in by_kind(documents, "Deployment").values():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        ]
        assert len(covering) == 1, deployment["metadata"]["name"]
        # maxUnavailable, so that a single instance can still be drained.
        assert covering[0]["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_consumers_scale_on_cpu_up_to_the_partitions(directory: Path) -> None:
    documents = render(directory)
    deployments = by_kind(documents, "Deployment")
    partitions = int(only(documents, "ConfigMap")["data"]["TOPIC_PARTITIONS"])
    scaled = set()
    for autoscaler in by_kind(documents, "HorizontalPodAutoscaler").values():
        target = autoscaler["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        scaled.add(service_of(deployments[target["name"]]))
        # Instances beyond the partitions of a topic would get nothing to do.
        assert autoscaler["spec"]["maxReplicas"] <= partitions
        [metric] = autoscaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        # The autoscaler owns the count: a replicas field would fight it at each apply.
        assert "replicas" not in deployments[target["name"]]["spec"]
    assert scaled == CONSUMERS


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_pods_get_the_time_a_clean_stop_takes(directory: Path) -> None:
    documents = render(directory)
    for deployment in by_kind(documents, "Deployment").values():
        env = environment(documents, deployment)
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= clean_stop_seconds(env), deployment["metadata"]["name"]


def _topics_command(documents: list[Document]) -> list[str]:
    job = by_kind(documents, "Job")["jobplane-topics"]
    return list(container(job)["command"])


def test_the_topics_job_creates_every_topic(infra: Infra, topic_prefix: str) -> None:
    """The Job's own command, run as its container would (the ConfigMap's environment),
    against the test Kafka with a fresh prefix, creates every topic; a second run too."""
    documents = render(BASE)
    job = by_kind(documents, "Job")["jobplane-topics"]
    command = _topics_command(documents)
    assert command[0] == "python"
    env: dict[str, Any] = {
        **{k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}},
        **environment(documents, job),
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "TOPIC_PARTITIONS": "1",
        "TOPIC_REPLICATION_FACTOR": "1",
    }
    for _ in range(2):  # existing topics are left alone
        done = subprocess.run(  # noqa: S603 - the manifest's command, with this interpreter
            [sys.executable, *command[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    present = asyncio.run(list_topics(admin_client(infra.kafka_bootstrap)))
    assert set(Topics(topic_prefix).all()) <= present
