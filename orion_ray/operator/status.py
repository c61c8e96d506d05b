"""Orion's answers → an AIWorkload's status. Pure: ``now`` is an argument."""

from __future__ import annotations

from typing import Any, Optional

# Orion workload status → the object's phase
WORKLOAD_PHASES = {
    "submitted": "Pending",
    "queued": "Queued",
    "preempted": "Queued",
    "starting": "Starting",
    "running": "Running",
    "completed": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
PIPELINE_PHASES = {
    "running": "Running",
    "cancelling": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
# a served model's deployment status (orion_ray/serving/manager.py) → phase
SERVING_PHASES = {
    "healthy": "Ready",
    "pending": "Deploying",
    "deploying": "Deploying",
    "unhealthy": "Degraded",
    "failed": "Failed",
    "deleting": "Deleting",
}
TERMINAL = ("Succeeded", "Failed", "Cancelled")
MAX_RESULT_CHARS = 4096  # an object's status is no place for a large result


def condition(
    kind: str, ok: bool, reason: str, message: str = "", *, generation: Optional[int], now: str
) -> dict[str, Any]:
    """One Kubernetes-style condition."""
    out: dict[str, Any] = {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": now,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with ``new`` replacing those of the same type; a condition whose status did not
    change keeps its ``lastTransitionTime`` (Kubernetes' convention)."""
    by_type = {c["type"]: dict(c) for c in old or []}
    for c in new:
        prev = by_type.get(c["type"])
        if prev is not None and prev.get("status") == c["status"]:
            c = {**c, "lastTransitionTime": prev.get("lastTransitionTime", c["lastTransitionTime"])}
        by_type[c["type"]] = c
    return sorted(by_type.values(), key=lambda c: c["type"])


def _result(value: Any) -> Optional[dict[str, Any]]:
    import json

    if value is None:
        return None
    text = json.dumps(value, default=str)
    if len(text) > MAX_RESULT_CHARS:
        return {"truncated": True, "chars": len(text)}
    return {"value": value}


def from_workload(record: dict[str, Any]) -> dict[str, Any]:
    """Status fields from ``GET /api/v1/workloads/{id}``."""
    phase = WORKLOAD_PHASES.get(record.get("status", ""), "Unknown")
    out: dict[str, Any] = {
        "phase": phase,
        "orionId": record.get("workload_id"),
        "attempts": int(record.get("attempt") or 0),
        "message": (record.get("error") or "")[:1024],
    }
    if phase == "Succeeded":
        out["result"] = _result(record.get("result"))
    return out


def from_pipeline(run: dict[str, Any]) -> dict[str, Any]:
    """Status fields from ``GET /api/orch/status/{id}``: attempts are the most any node took."""
    nodes = run.get("nodes") or []
    failed = [n for n in nodes if n.get("state") == "failed"]
    message = ""
    if failed:
        message = f"node {failed[0].get('node_id')}: {failed[0].get('error') or 'failed'}"
    return {
        "phase": PIPELINE_PHASES.get(run.get("state", ""), "Unknown"),
        "orionId": run.get("submission_id"),
        "attempts": max((int(n.get("attempt") or 0) for n in nodes), default=0),
        "message": message[:1024],
    }


def from_deployment(view: dict[str, Any], release: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Status fields from ``GET /internal/deployments/{id}/status`` (and the model's release)."""
    spec = view.get("spec") or {}
    auto = spec.get("autoscaling")
    wanted = spec.get("replicas") if auto is None else (auto.get("initial_replicas") or auto["min_replicas"])
    ready = int(view.get("running_replicas") or 0)
    phase = SERVING_PHASES.get(view.get("status", ""), "Unknown")
    # Serve says RUNNING while an upscale is still starting replicas; with autoscaling, Serve's
    # autoscaler owns the count above min_replicas (an idle model goes down to it), so the floor
    # is the minimum, not the initial count
    floor = wanted if auto is None else auto.get("min_replicas")
    if phase == "Ready" and floor is not None and ready < floor:
        phase = "Deploying"
    out: dict[str, Any] = {
        "phase": phase,
        "orionId": view.get("id"),
        "version": view.get("version"),
        "replicas": wanted,
        "replicasReady": ready,
        "attempts": 1 + int(view.get("restarts") or 0),
        "message": (view.get("message") or "")[:1024],
    }
    if release is not None:
        out["release"] = {k: release.get(k) for k in ("strategy", "phase", "step", "weights")}
    return out
