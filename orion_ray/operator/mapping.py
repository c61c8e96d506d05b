"""AIWorkload spec → Orion REST bodies. Pure: no I/O, no kopf, no clock; the handlers call these.

An AIWorkload is one of three forms: ``serving`` (a model served by Orion: the issue's example),
``workload`` (a task or job, ``POST /api/v1/workloads``) or ``pipeline`` (``POST /api/orch/submit``).
Everything a form cannot use is reported as a note (a status condition), never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

CONTROLLER = "orion.veritasstack.io/operator"
NAME_RE = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$")
_SERVING_FIELDS = (
    "replicas",
    "image",
    "model",
    "version",
    "engine",
    "engineArgs",
    "resources",
    "autoscaling",
    "healthCheck",
    "deployment",
)
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")
_RATE = re.compile(r"^\s*(?:<=?)?\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")
_LATENCY = re.compile(r"^\s*(?:<=?)?\s*(\d+(?:\.\d+)?\s*(?:ms|s|m|h)?)\s*$")


class SpecError(ValueError):
    """An AIWorkload Orion cannot run as written; ``field`` is its path under ``spec``."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"spec.{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class Serving:
    """What a serving AIWorkload asks of Orion: the deployment and how a change reaches traffic."""

    model_id: str
    version: str
    deployment: dict[str, Any]
    notes: tuple[str, ...]


def is_ours(spec: dict[str, Any]) -> bool:
    """Whether the Orion operator should act on an object (``managedBy`` empty or ours)."""
    return spec.get("managedBy") in (None, "", CONTROLLER)


def form_of(spec: dict[str, Any]) -> str:
    """``serving``, ``workload`` or ``pipeline``; a spec that mixes forms is a ``SpecError``."""
    batch = [k for k in ("workload", "pipeline") if spec.get(k) is not None]
    serving = [k for k in _SERVING_FIELDS if spec.get(k) is not None]
    if len(batch) > 1:
        raise SpecError("pipeline", "give either workload or pipeline, not both")
    if batch and serving:
        raise SpecError(serving[0], f"a {batch[0]} AIWorkload has no serving fields")
    if batch:
        return batch[0]
    if not serving:
        raise SpecError("workload", "give a serving form (replicas, image, model…), a workload or a pipeline")
    return "serving"


def tenant_of(spec: dict[str, Any], namespace: str, mode: str) -> str:
    """The Orion tenant of an object. ``mode`` ``namespace``: the namespace is the tenant (a
    ``spec.tenant`` naming another is refused, so a namespace's users reach only their own
    tenant); ``spec``: ``spec.tenant``, else ``default`` (the cluster's RBAC is trusted)."""
    asked = spec.get("tenant") or None
    if mode == "namespace":
        if asked is not None and asked != namespace:
            raise SpecError("tenant", f"objects in namespace {namespace!r} belong to tenant {namespace!r}")
        return namespace
    if mode != "spec":
        raise ValueError(f"unknown tenant mode {mode!r}")
    return asked or "default"


def request_key(uid: str, submission: int = 1) -> str:
    """Orion's idempotency key for an object's ``submission``-th submission (``k8s-<uid>``, then
    ``k8s-<uid>-2``…: a resubmission after a suspend or a lost record is a new workload)."""
    return f"k8s-{uid}" if submission <= 1 else f"k8s-{uid}-{submission}"


def workload_body(spec: dict[str, Any], *, tenant: str, key: str) -> dict[str, Any]:
    """``POST /api/v1/workloads``: the object's workload with its tenant, priority and key."""
    body = json.loads(json.dumps(spec["workload"]))  # a deep copy: the spec is never changed
    if not isinstance(body, dict):
        raise SpecError("workload", "a workload is a mapping")
    if body.get("workload_type") not in ("task", "job"):
        raise SpecError("workload.workload_type", "an AIWorkload runs a task or a job")
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise SpecError("workload.metadata", "metadata is a mapping")
    if meta.get("tenant_id") not in (None, tenant):
        raise SpecError("workload.metadata.tenant_id", f"the object's tenant is {tenant!r}")
    meta["tenant_id"], meta["request_id"] = tenant, key
    if spec.get("priority"):
        body["priority"] = spec["priority"]
    return body


def pipeline_body(spec: dict[str, Any], *, key: str) -> dict[str, Any]:
    """``POST /api/orch/submit``: the object's pipeline with its priority and submission id."""
    body = json.loads(json.dumps(spec["pipeline"]))
    if not isinstance(body, dict) or "dag_spec" not in body:
        raise SpecError("pipeline.dag_spec", "a pipeline is {dag_spec, runtime_params, refs}")
    params = body.setdefault("runtime_params", {})
    if not isinstance(params, dict):
        raise SpecError("pipeline.runtime_params", "runtime_params is a mapping")
    params["submission_id"] = key
    if spec.get("priority"):
        params["priority"] = spec["priority"]
    return body


def parse_cpu(value: Any, field: str) -> float:
    """CPUs of a Kubernetes quantity: ``2``, ``"2"``, ``"500m"``."""
    m = _QUANTITY.match(str(value)) if not isinstance(value, bool) else None
    if m is None:
        raise SpecError(field, f"cannot read {value!r} as CPUs (e.g. 2 or '500m')")
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def _per_replica(resources: dict[str, Any], key: str) -> Optional[Any]:
    """A request, else the limit: Orion reserves one amount per replica, and a request is what
    Kubernetes schedules on."""
    for part in ("requests", "limits"):
        got = (resources.get(part) or {}).get(key)
        if got is not None:
            return got, part
    return None


def _autoscaling(spec: dict[str, Any], notes: list[str]) -> tuple[Optional[int], Optional[dict[str, Any]]]:
    auto = spec.get("autoscaling") or {}
    replicas = spec.get("replicas")
    if not auto.get("enabled"):
        return (replicas if replicas is not None else 1), None
    lo, hi = auto.get("minReplicas", 1), auto.get("maxReplicas", max(auto.get("minReplicas", 1), 1))
    if lo > hi:
        raise SpecError("autoscaling.minReplicas", "minReplicas must not exceed maxReplicas")
    out: dict[str, Any] = {"min_replicas": lo, "max_replicas": hi}
    if replicas is not None:  # replicas is where it starts; the bounds are where it may go
        out["initial_replicas"] = min(max(replicas, lo), hi)
    if auto.get("targetOngoingRequests") is not None:
        out["target_ongoing_requests"] = auto["targetOngoingRequests"]
    if auto.get("targetCPU") is not None:
        notes.append("autoscaling.targetCPU: Serve scales on ongoing requests, not CPU")
    return None, out


def serving(spec: dict[str, Any], *, name: str, tenant: str) -> Serving:
    """The deployment (``POST /internal/deployments/create``) of a serving AIWorkload.

    The version is ``spec.version``, else a digest of what a replica runs (engine, its args,
    image, per-replica resources), so a change of those is a new version rolled out by a release
    while a change of replicas or autoscaling is a scale of the running version."""
    notes: list[str] = []
    model_id = spec.get("model") or name
    if not NAME_RE.match(model_id) or len(model_id) > 63:
        raise SpecError("model", f"{model_id!r} is not an Orion model id (lowercase, digits, - _ .)")
    resources = spec.get("resources") or {}
    dep: dict[str, Any] = {"model_id": model_id, "tenant_id": tenant}
    if spec.get("engine"):
        dep["engine"] = spec["engine"]
    if spec.get("engineArgs"):
        dep["engine_args"] = spec["engineArgs"]
    cpu = _per_replica(resources, "cpu")
    if cpu is not None:
        dep["cpus_per_replica"] = parse_cpu(cpu[0], f"resources.{cpu[1]}.cpu")
    gpu = _per_replica(resources, "nvidia.com/gpu")
    if gpu is not None:
        dep["gpus_per_replica"] = parse_cpu(gpu[0], f"resources.{gpu[1]}.nvidia.com/gpu")
    if _per_replica(resources, "memory") is not None:
        notes.append("resources.memory: Ray Serve replicas reserve CPUs and GPUs, not memory")
    replicas, auto = _autoscaling(spec, notes)
    if auto is not None:
        dep["autoscaling"] = auto
    else:
        dep["replicas"] = replicas
    if spec.get("image"):
        notes.append("image: replicas run in the Ray cluster's image with Orion's engine")
    if spec.get("healthCheck"):
        notes.append("healthCheck: Serve checks each replica through its engine's check_health")
    version = spec.get("version") or version_of(dep, spec.get("image"))
    dep["version"] = version
    return Serving(model_id, version, dep, tuple(notes))


def version_of(deployment: dict[str, Any], image: Optional[str]) -> str:
    """A version name from what a replica runs (not how many run)."""
    keys = ("engine", "engine_args", "cpus_per_replica", "gpus_per_replica")
    what = {k: deployment.get(k) for k in keys} | {"image": image}
    return "r" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def scale_body(deployment: dict[str, Any]) -> dict[str, Any]:
    """``POST /admin/v1/models/{model}/scale`` for a deployment's replicas or autoscaling."""
    body: dict[str, Any] = {"version": deployment["version"]}
    if deployment.get("autoscaling") is not None:
        body["autoscaling"] = {k: v for k, v in deployment["autoscaling"].items() if k != "initial_replicas"}
    else:
        body["replicas"] = deployment["replicas"]
    return body


def parse_rate(value: Any, field: str) -> float:
    """An error rate: a fraction (``0.01``) or the original's ``"< 1%"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _RATE.match(str(value))
    if m is None:
        raise SpecError(field, f"cannot read {value!r} as an error rate (0.01 or '< 1%')")
    return float(m.group(1)) / (100 if m.group(2) else 1)


def parse_latency(value: Any, field: str) -> Any:
    """A latency bound: seconds, ``"500ms"`` or the original's ``"< 500ms"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    m = _LATENCY.match(str(value))
    if m is None:
        raise SpecError(field, f"cannot read {value!r} as a latency ('< 500ms', '2s')")
    return m.group(1).replace(" ", "")


_COUNT = re.compile(r"^\s*(\d{1,3})\s*%\s*$")
ROLLING_KEYS = ("maxSurge", "maxUnavailable", "progressDeadline")


def _count(value: Any, field: str) -> Any:
    """A replica count or a percentage of the desired count, as Kubernetes writes them."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000:
        return value
    m = _COUNT.match(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) > 100:
        raise SpecError(field, f"{value!r} is not a replica count or a percentage ('25%')")
    return f"{int(m.group(1))}%"


def rolling_block(rolling: dict[str, Any]) -> dict[str, Any]:
    """The release's ``rolling`` block (Orion replaces the old version's replicas with the new
    one's, ``maxSurge`` above and ``maxUnavailable`` below the desired count, and rolls back when
    no new replica is ready for ``progressDeadline``). Left out, Orion's defaults apply (1, 0,
    10m); both counts zero could never move."""
    out: dict[str, Any] = {}
    for key in rolling:
        if key not in ROLLING_KEYS:
            raise SpecError(f"deployment.rolling.{key}", f"unknown (one of {', '.join(ROLLING_KEYS)})")
    for key in ("maxSurge", "maxUnavailable"):
        if key in rolling:
            out[key] = _count(rolling[key], f"deployment.rolling.{key}")
    if out.get("maxSurge") in (0, "0%") and out.get("maxUnavailable", 0) in (0, "0%"):
        raise SpecError("deployment.rolling", "maxSurge and maxUnavailable cannot both be 0")
    if "progressDeadline" in rolling:
        out["progressDeadline"] = str(rolling["progressDeadline"])
    return out


def candidate_size(deployment: dict[str, Any]) -> dict[str, Any]:
    """A new version's deployment body as first created for a rolling release: one replica (or
    its autoscaling starting at one), so it proves it starts before the release; the release
    brings up the rest within ``maxSurge`` (and the promoted version keeps the old one's count,
    or its own autoscaling)."""
    out = dict(deployment)
    if out.get("autoscaling") is not None:
        lo = int(out["autoscaling"].get("min_replicas") or 0)
        out["autoscaling"] = {**out["autoscaling"], "initial_replicas": max(1, lo)}
    else:
        out["replicas"] = 1
    return out


def release_body(
    spec: dict[str, Any], *, model_id: str, stable: Optional[str], candidate: str
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``PUT /internal/models/{model}/release`` taking traffic from ``stable`` to ``candidate``
    as ``spec.deployment`` says (``replace`` — the default — switches at once)."""
    block = spec.get("deployment") or {}
    strategy = block.get("strategy", "replace")
    notes: list[str] = []
    if stable is None or strategy == "replace":
        return {"model_id": model_id, "strategy": "weighted", "stable": candidate}, ()
    body: dict[str, Any] = {"model_id": model_id, "stable": stable, "candidate": candidate}
    criteria = block.get("success_criteria") or {}
    if criteria:
        sc: dict[str, Any] = {}
        if "error_rate" in criteria:
            sc["error_rate"] = parse_rate(criteria["error_rate"], "deployment.success_criteria.error_rate")
        if "latency_p95" in criteria:
            sc["latency_p95"] = parse_latency(
                criteria["latency_p95"], "deployment.success_criteria.latency_p95"
            )
        if "min_requests" in criteria:
            sc["min_requests"] = criteria["min_requests"]
        body["success_criteria"] = sc
    if strategy == "blue-green":
        bg = block.get("blue_green") or {}
        body["strategy"] = "blue-green"
        if bg.get("testing_period"):
            body["testing_period"] = bg["testing_period"]
        if bg.get("rollback_on_error") is False:  # failing criteria hold the release instead
            body["rollback_on_error"] = False
        return body, tuple(notes)
    steps = (block.get("canary") or {}).get("steps")
    if strategy == "rolling":
        body["strategy"] = "rolling"
        body["rolling"] = rolling_block(block.get("rolling") or {})
        if steps:
            notes.append("deployment.canary.steps: a rolling release's traffic follows its ready replicas")
        return body, tuple(notes)
    if not steps:
        raise SpecError("deployment.canary.steps", f"strategy {strategy} needs steps")
    body["strategy"] = "rolling" if strategy == "rolling" else "canary"
    body["steps"] = [{"weight": s["weight"], "duration": s.get("duration", "0s")} for s in steps]
    return body, tuple(notes)
