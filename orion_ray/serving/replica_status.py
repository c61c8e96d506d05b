"""Per-replica detail of a deployment, and Serve's replica targets, read from Serve's controller.

One controller call (``get_serve_instance_details``, what the dashboard's Serve page reads) gives
every application's deployments with their ``target_num_replicas``, live replicas (replica id,
node, actor, state, start time) and recently dead ones; that is the cheapest reliable source in
Ray 2.60 (``serve.status()`` carries counts only). Restarts of a replica's actor come from Ray's
state API; the last health check is a probe of the replica's own ``check_health`` (the one Serve
calls every ``health_check_period_s``), made when the status is asked for, since the controller
keeps its own results private.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional


def replica_view(row: dict, gpus_per_replica: float) -> dict:
    """One replica as ``GET /internal/deployments/{id}/status`` shows it."""
    return {
        "replica_id": row.get("replica_id"),
        "node_id": row.get("node_id"),
        "node_ip": row.get("node_ip"),
        "gpus": row.get("gpus", gpus_per_replica),
        "state": row.get("state"),
        "restarts": row.get("restarts"),
        "started_at": row.get("start_time_s"),
        "last_health_check": row.get("health"),
    }


def _controller():
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    return client._controller if client is not None else None


def instance_details(timeout_s: float = 10.0) -> dict:
    """Serve's details of every application (``{}`` when Serve is not running)."""
    import ray

    controller = _controller()
    if controller is None:
        return {}
    return ray.get(controller.get_serve_instance_details.remote(), timeout=timeout_s) or {}


def targets(prefix: str, deployment: str, timeout_s: float = 10.0) -> dict[str, int]:
    """Application → the deployment's target replicas, for applications named ``prefix…``."""
    out = {}
    for name, app in (instance_details(timeout_s).get("applications") or {}).items():
        dep = (app.get("deployments") or {}).get(deployment) if name.startswith(prefix) else None
        if dep is not None and dep.get("target_num_replicas") is not None:
            out[name] = int(dep["target_num_replicas"])
    return out


def placements(
    prefix: str, deployment: str, labels_of: Callable[[str], dict], timeout_s: float = 10.0
) -> dict[str, dict[tuple[str, str], int]]:
    """Application → its RUNNING replicas counted by the (pool, market) of their nodes, for
    applications named ``prefix…`` (``labels_of(node_id)``: the node's labels)."""
    from ..policy.markets import POOL_LABEL, market_of
    from .usage_meter import POOL

    out: dict[str, dict[tuple[str, str], int]] = {}
    for name, app in (instance_details(timeout_s).get("applications") or {}).items():
        dep = (app.get("deployments") or {}).get(deployment) if name.startswith(prefix) else None
        if dep is None:
            continue
        where = out[name] = {}
        for r in dep.get("replicas") or []:
            if r.get("state") != "RUNNING":
                continue
            labels = labels_of(r.get("node_id") or "")
            key = (labels.get(POOL_LABEL) or POOL, market_of(labels))
            where[key] = where.get(key, 0) + 1
    return out


class NodeLabels:
    """Node id → labels, read from the GCS once per node (a node's labels are set when it
    starts and never change), read again only for a node not seen yet."""

    def __init__(self) -> None:
        self._labels: dict[str, dict] = {}

    def __call__(self, node_id: str) -> dict:
        if node_id not in self._labels:
            import ray

            for n in ray.nodes():
                self._labels[n["NodeID"]] = dict(n.get("Labels") or {})
        return self._labels.get(node_id, {})


def replicas(app: str, deployment: str, timeout_s: float = 5.0) -> Optional[list[dict]]:
    """The live replicas of an application's deployment with restarts and a health probe
    (None when Serve does not know the application)."""
    import ray

    apps = instance_details(timeout_s).get("applications") or {}
    dep = ((apps.get(app) or {}).get("deployments") or {}).get(deployment)
    if dep is None:
        return None
    rows = [dict(r) for r in dep.get("replicas") or []]
    gpus = float((dep.get("required_resources") or {}).get("GPU", 0) or 0)
    restarts = _restarts(f"ServeReplica:{app}:{deployment}", timeout_s)
    probes = {}
    for r in rows:
        try:
            probes[r["replica_id"]] = (time.time(), ray.get_actor(r["actor_name"], namespace="serve"))
        except Exception:  # gone meanwhile: no probe
            continue
    refs = {rid: (t, h.check_health.remote()) for rid, (t, h) in probes.items()}
    for r in rows:
        r["gpus"] = gpus
        r["restarts"] = restarts.get(r.get("actor_id"))
        r["health"] = _probe(refs.get(r["replica_id"]), timeout_s)
    rows.sort(key=lambda r: r.get("replica_id") or "")
    return rows


def _probe(sent: Optional[tuple[float, Any]], timeout_s: float) -> Optional[dict]:
    import ray

    if sent is None:
        return None
    at, ref = sent
    try:
        ray.get(ref, timeout=timeout_s)
        ok, error = True, None
    except Exception as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
    return {"at": at, "ok": ok, "latency_ms": round((time.time() - at) * 1000, 1), "error": error}


def _restarts(class_name: str, timeout_s: float) -> dict[str, int]:
    """Restarts of each replica actor of a deployment (Serve names the class
    ``ServeReplica:<app>:<deployment>``), from Ray's state API ({} when it does not answer)."""
    import ray
    from ray.util.state import list_actors

    # this process's own cluster: without an address the state API looks for "the" local Ray
    address = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    try:
        rows = list_actors(
            address=address,
            filters=[("class_name", "=", class_name)],
            detail=True,
            limit=1000,
            timeout=timeout_s,
        )
    except Exception:
        return {}
    return {a.actor_id: int(getattr(a, "num_restarts", 0) or 0) for a in rows}
