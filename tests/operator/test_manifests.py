"""The CRD and every rendered manifest against their schemas, strictly (an unknown field is an
error: the API server would prune it silently). Offline: Kubernetes' own schemas ship with
``kubernetes-validate``; KubeRay's are in ``shared/kuberay-crds``; the AIWorkload and kopf peering
schemas are the CRDs in ``deploy/crds``; ``kubectl kustomize`` renders without a cluster."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from orion_ray.kuberay.manifests import PLURALS as KUBERAY_KINDS
from orion_ray.kuberay.manifests import strict, validate_manifest
from tests.operator.kube import CRD_PATH
from tests.operator.test_live import EXAMPLE, EXAMPLE_PATH

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.37.0"  # the newest schemas kubernetes-validate ships
CRDS = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / "deploy" / "crds").glob("*.kopf.dev.yaml")}
CRDS[CRD_PATH.name] = yaml.safe_load(CRD_PATH.read_text())
OWN_KINDS = {c["spec"]["names"]["kind"]: c for c in CRDS.values()}


def _schema(kind: str) -> dict[str, Any]:
    return strict(OWN_KINDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _errors(kind: str, obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(kind))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]


def _structural_problems(node: Any, path: str = "") -> list[str]:
    """Kubernetes' structural-schema rules that the OpenAPI schema of a CRD cannot express."""
    if not isinstance(node, dict):
        return []
    out = []
    free = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    if "type" not in node and not free and path:
        out.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        out.append(f"{path}: properties and additionalProperties together")
    for key, sub in (node.get("properties") or {}).items():
        out += _structural_problems(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out += _structural_problems(node[key], f"{path}[{key}]")
    return out


# -- the CRDs ----------------------------------------------------------------------------------
@pytest.fixture()
def no_network(monkeypatch):
    """Validation must not reach for schemas over the network (CI may have none)."""
    import socket

    def refuse(*_a, **_k):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", sorted(CRDS))
def test_each_crd_is_a_valid_strict_apiextensions_object(name, no_network):
    kubernetes_validate.validate(CRDS[name], K8S_VERSION, strict=True)
    schema = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _structural_problems(schema) == []


def test_a_typo_in_a_crd_is_caught():
    crd = copy.deepcopy(CRDS[CRD_PATH.name])
    crd["spec"]["versions"][0]["subresource"] = {"status": {}}  # not "subresources"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(crd, K8S_VERSION, strict=True)


def test_the_crd_has_a_status_subresource_and_printer_columns():
    version = CRDS[CRD_PATH.name]["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase" and columns["Orion-ID"] == ".status.orionId"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for field in ("phase", "orionId", "attempts", "replicasReady", "conditions", "observedGeneration"):
        assert field in status


# -- AIWorkloads against the CRD -------------------------------------------------------------------
ISSUE_TEXT = """\
apiVersion: orion.veritasstack.io/v1
kind: AIWorkload
metadata: {name: sentiment-analysis-api}
spec:
  replicas: 3
  image: veritasstack/sentiment-api:v1.2.0
  resources: {requests: {memory: "4Gi", cpu: "2"}, limits: {memory: "8Gi", cpu: "4"}}
  autoscaling: {enabled: true, minReplicas: 2, maxReplicas: 20, targetCPU: 70}
  healthCheck: {path: /health, interval: 10s}
"""


def test_the_issues_example_verbatim_is_valid():
    assert EXAMPLE_PATH.read_text() == ISSUE_TEXT  # the file the live test applies is the issue's text
    assert _errors("AIWorkload", EXAMPLE) == []


@pytest.mark.parametrize("path", sorted((ROOT / "deploy" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path):
    assert _errors("AIWorkload", yaml.safe_load(path.read_text())) == []


def test_batch_and_strategy_forms_are_valid():
    task = {"workload": {"workload_type": "task", "function": "math:factorial", "args": [10]}}
    pipeline = {"pipeline": {"dag_spec": "version: 1\n", "runtime_params": {"env": {"A": "1"}}}}
    serving = {
        "model": "chat",
        "engine": "vllm",
        "engineArgs": {"model": "meta-llama/Llama-3-8B"},
        "tenant": "team-a",
        "suspend": False,
        "managedBy": "orion.veritasstack.io/operator",
        "regionSelector": {"matchLabels": {"region": "eu"}},
        "deployment": {
            "strategy": "canary",
            "canary": {"steps": [{"weight": 10, "duration": "5m"}, {"weight": 100}]},
            "rolling": {"maxSurge": 1, "maxUnavailable": "25%", "progressDeadline": "10m"},
            "blue_green": {"rollback_on_error": True, "testing_period": "10m"},
            "success_criteria": {"error_rate": "< 1%", "latency_p95": "< 500ms"},
        },
    }
    for spec in (task, pipeline, serving):
        obj = {"apiVersion": "orion.veritasstack.io/v1", "kind": "AIWorkload", "metadata": {}, "spec": spec}
        assert _errors("AIWorkload", obj) == [], spec


@pytest.mark.parametrize(
    "spec",
    [
        {"replica": 3},  # a typo
        {"replicas": 0},
        {"priority": "urgent"},
        {"autoscaling": {"enabled": True, "targetCpu": 70}},
        {"deployment": {"strategy": "big-bang"}},
        {"model": "Has_Upper"},
    ],
)
def test_unknown_or_wrong_fields_are_errors(spec):
    obj = {"apiVersion": "orion.veritasstack.io/v1", "kind": "AIWorkload", "metadata": {}, "spec": spec}
    assert _errors("AIWorkload", obj) != []


# -- every rendered manifest --------------------------------------------------------------------
def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("ORION_REQUIRE_KUBECTL"):
            pytest.fail("kubectl is needed to render deploy/ (.ci/run installs it)")
        pytest.skip("kubectl is not installed (it renders deploy/ offline; .ci/run installs it)")
    return found


def _render(directory: str) -> list[dict[str, Any]]:
    p = subprocess.run(
        [_kubectl(), "kustomize", str(ROOT / directory)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def _problems(doc: dict[str, Any]) -> list[str]:
    kind = doc["kind"]
    if kind in KUBERAY_KINDS:
        return [f"{p['field']}: {p['problem']}" for p in validate_manifest(doc)]
    if kind in OWN_KINDS:
        return _errors(kind, doc)
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc)[:500]]
    return []


@pytest.mark.parametrize("directory", ["deploy/base", "deploy/overlays/example"])
def test_every_rendered_manifest_is_valid(directory, no_network):
    docs = _render(directory)
    kinds = sorted({d["kind"] for d in docs})
    for needed in ("CustomResourceDefinition", "Deployment", "ClusterRole", "RayService", "ServiceAccount"):
        assert needed in kinds
    problems = {f"{d['kind']}/{d['metadata']['name']}": _problems(d) for d in docs}
    assert {k: v for k, v in problems.items() if v} == {}


def test_a_rendered_typo_would_be_caught():
    docs = _render("deploy/base")
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "orion-operator")
    dep["spec"]["template"]["spec"]["containers"][0]["envfrom"] = []
    assert _problems(dep) != []
    ray = next(d for d in docs if d["kind"] == "RayService")
    ray["spec"]["rayClusterConfig"]["workerGroupSpec"] = []
    assert _problems(ray) != []


def test_no_secret_is_inlined_and_the_operator_is_least_privileged():
    docs = _render("deploy/overlays/example")
    assert not [d for d in docs if d["kind"] == "Secret"]
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "orion-operator")
    pod = dep["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert "ORION_API_KEY" not in env and env["ORION_API_KEY_FILE"]["value"].startswith("/etc/orion/")
    assert pod["volumes"][0]["secret"]["secretName"] == "orion-operator-key"
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert "secrets" not in resources and "*" not in resources
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert not verbs & {"*", "delete", "deletecollection", "escalate", "bind", "impersonate"}
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "orion-system"


def test_the_overlay_sets_images_and_pools():
    docs = _render("deploy/overlays/example")
    ray = next(d for d in docs if d["kind"] == "RayService")
    groups = ray["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert [g["maxReplicas"] for g in groups] == [20, 8]
    images = {g["template"]["spec"]["containers"][0]["image"] for g in groups}
    assert images == {
        "registry.example.com/orion/orion-ray:0.6.0",
        "registry.example.com/orion/orion-ray:0.6.0-gpu",
    }
