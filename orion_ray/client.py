"""The Python SDK: ``OrionClient`` over the REST API, raising errors from Orion's one tree."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

from .region_client import RegionCalls
from .schedule_client import ScheduleCalls
from .session import ApiSession
from .session import error_from as _error_from  # noqa: F401  (async_client and tests use it)
from .session import retry_after as _retry_after  # noqa: F401

TERMINAL = ("completed", "failed", "cancelled")
PIPELINE_TERMINAL = ("succeeded", "failed", "cancelled")  # a pipeline run's final states


@dataclass
class WorkloadResult:
    """What ``wait_for_completion`` returns."""

    workload_id: str
    status: str
    output: Any
    error: Optional[str]
    record: dict


class WorkloadHandle:
    """A submitted workload: its id and a way to follow it."""

    def __init__(self, client: "OrionClient", ack: dict):
        self._client = client
        self.ack = ack
        self.workload_id: str = ack["workload_id"]

    @property
    def status(self) -> str:
        return self._client.get_workload(self.workload_id)["status"]

    def refresh(self) -> dict:
        return self._client.get_workload(self.workload_id)

    def wait_for_completion(self, timeout: Optional[float] = None, poll_s: float = 0.2) -> WorkloadResult:
        return self._client.wait_for_completion(self.workload_id, timeout, poll_s)

    def cancel(self) -> dict:
        return self._client.cancel(self.workload_id)

    def logs(self) -> str:
        return self._client.logs(self.workload_id)

    def __repr__(self) -> str:
        return f"WorkloadHandle({self.workload_id!r})"


class OrionClient(ApiSession, ScheduleCalls, RegionCalls):
    """``OrionClient(url, api_key)``; both default from ``ORION_URL``/``ORION_API_KEY`` or
    ``~/.orion/credentials``. Retries 429 and 503 answers, honouring ``Retry-After``.
    ``transport`` (an ``httpx.BaseTransport``) serves an in-process app in tests; ``sleep`` is how
    the client waits between retries and polls (``time.sleep``; a test records the waits). The
    session, its retries and its error mapping are ``orion_ray.session.ApiSession``."""

    # -- workloads ------------------------------------------------------------------------------
    def submit_workload(self, spec: Optional[dict] = None, **fields: Any) -> WorkloadHandle:
        """Submit ``spec`` (a dict) or keyword fields; returns a handle to follow it."""
        body = dict(spec or {}, **fields)
        return WorkloadHandle(self, self._request("POST", "/api/v1/workloads", json=body).json())

    def get_workload(self, workload_id: str) -> dict:
        """One workload with its status history."""
        return self._request("GET", f"/api/v1/workloads/{workload_id}").json()

    def list_workloads(
        self,
        status: Optional[str] = None,
        tenant_id: Optional[str] = None,
        limit: int = 50,
        cursor: Optional[int] = None,
    ) -> dict:
        """Workloads, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
        params = {
            k: v
            for k, v in {"status": status, "tenant_id": tenant_id, "limit": limit, "cursor": cursor}.items()
            if v is not None
        }
        return self._request("GET", "/api/v1/workloads", params=params).json()

    def cancel(self, workload_id: str) -> dict:
        """Cancel (idempotent: a finished workload answers its final status)."""
        return self._request("DELETE", f"/api/v1/workloads/{workload_id}").json()

    def logs(self, workload_id: str) -> str:
        """stdout/stderr of the workload's latest run."""
        return self._request("GET", f"/api/v1/workloads/{workload_id}/logs").text

    def explain(self, workload_id: str) -> dict:
        """Position in the queue and what the workload waits for."""
        return self._request("GET", f"/api/v1/workloads/{workload_id}/explain").json()

    def queue(self) -> dict:
        """Queue depth and usage against quota per tenant (a tenant key sees its own only)."""
        return self._request("GET", "/api/v1/queue").json()

    def tenants(self) -> dict:
        """Every tenant with usage (admin key)."""
        return self._request("GET", "/api/v1/tenants").json()

    def reload(self, tenants: list[dict], keys: dict[str, str], policy: Optional[dict] = None) -> dict:
        """Replace the tenants, key hashes (``{sha256: tenant_id}``) and, if given, the policy
        section without a restart (admin)."""
        body = {"tenants": tenants, "keys": keys, **({"policy": policy} if policy else {})}
        return self._request("POST", "/admin/v1/reload", json=body).json()

    def audit(self, limit: int = 100, cursor: Optional[int] = None) -> dict:
        """Who submitted, cancelled or reconfigured what, newest first (admin)."""
        params = {"limit": limit, **({"cursor": cursor} if cursor is not None else {})}
        return self._request("GET", "/admin/v1/audit", params=params).json()

    # -- pipelines (issue 16; docs/pipelines.md) -------------------------------------------------------
    def submit_pipeline(
        self,
        dag_spec: Any,
        runtime_params: Optional[dict] = None,
        refs: Optional[dict] = None,
        tenant_id: Optional[str] = None,
    ) -> dict:
        """Submit a pipeline run: ``dag_spec`` as YAML text or a dict, ``runtime_params``, ``refs``
        (node id → ``"module:function"``); ``tenant_id`` for an admin key. ``{submission_id, state}``."""
        body = {"dag_spec": dag_spec, "runtime_params": runtime_params or {}, "refs": refs or {}}
        params = {"tenant_id": tenant_id} if tenant_id else None
        return self._request("POST", "/api/orch/submit", json=body, params=params).json()

    def pipeline_status(self, submission_id: str) -> dict:
        """A run with every node's state, attempt, workload id and outputs (their names)."""
        return self._request("GET", f"/api/orch/status/{submission_id}").json()

    def cancel_pipeline(self, submission_id: str) -> dict:
        """Cancel a run (idempotent: a finished run answers its final state)."""
        return self._request("POST", f"/api/orch/cancel/{submission_id}").json()

    def retry_pipeline(self, submission_id: str) -> dict:
        """Run a failed or cancelled run again from its failed nodes (``Conflict`` otherwise)."""
        return self._request("POST", f"/api/orch/retry/{submission_id}").json()

    def pipeline_logs(self, submission_id: str, node: str, attempt: Optional[int] = None) -> dict:
        """A node's logs (current or last attempt, or ``attempt``): ``{…, "logs": text}``."""
        params: dict[str, Any] = {"node": node, **({"attempt": attempt} if attempt is not None else {})}
        return self._request("GET", f"/api/orch/logs/{submission_id}", params=params).json()

    def pipeline_lineage(self, submission_id: str) -> dict:
        """The run's OpenLineage RunEvents: ``{…, "events": [...]}``."""
        return self._request("GET", f"/api/orch/lineage/{submission_id}").json()

    def wait_pipeline(self, submission_id: str, timeout: Optional[float] = None, poll_s: float = 0.5) -> dict:
        """Poll until the run has ended; its final status. ``TimeoutError`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            got = self.pipeline_status(submission_id)
            if got["state"] in PIPELINE_TERMINAL:
                return got
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"pipeline run {submission_id} still {got['state']} after {timeout}s")
            self._sleep(poll_s)

    def workers(self) -> dict:
        """Each Ray node with its current tasks, tasks completed, resources and last activity (admin)."""
        return self._request("GET", "/api/v1/workers").json()

    def pipeline_output(self, submission_id: str, node: str, name: str) -> Any:
        """One output of a run's node: its value (inline, or read by Orion from the artifact store)."""
        return self._request(
            "GET", f"/api/orch/outputs/{submission_id}", params={"node": node, "name": name}
        ).json()

    def pipeline_items(
        self,
        submission_id: str,
        node: str,
        after: int = -1,
        limit: int = 100,
        state: Optional[str] = None,
    ) -> dict:
        """A page of a map node's items (index, state, attempt, workload id, error) above index
        ``after``, with the node's task counters; ``next_after`` starts the next page (None: last)."""
        params: dict = {"node": node, "after": after, "limit": limit, **({"state": state} if state else {})}
        return self._request("GET", f"/api/orch/status/{submission_id}/items", params=params).json()

    # -- infrastructure (admin key) ---------------------------------------------------------------
    def nodes(self, include_ended: bool = True) -> dict:
        """Every node with its lifecycle state, free capacity and workloads."""
        return self._request(
            "GET", "/admin/v1/infrastructure/nodes", params={"include_ended": str(include_ended).lower()}
        ).json()

    def cordon(self, node_id: str, reason: Optional[str] = None) -> dict:
        """No new placements on ``node_id``."""
        return self._request(
            "POST",
            f"/admin/v1/infrastructure/nodes/{node_id}/cordon",
            json={"reason": reason} if reason else None,
        ).json()

    def uncordon(self, node_id: str) -> dict:
        """Placements allowed again on ``node_id``; a drain under way is called off."""
        return self._request("POST", f"/admin/v1/infrastructure/nodes/{node_id}/uncordon").json()

    def drain(self, node_id: str, deadline_s: float = 300.0, reason: Optional[str] = None) -> dict:
        """Cordon, let running work end until ``deadline_s``, then preempt it to the queue."""
        body = {"deadline_s": deadline_s, **({"reason": reason} if reason else {})}
        return self._request("POST", f"/admin/v1/infrastructure/nodes/{node_id}/drain", json=body).json()

    def gpu_utilization(self) -> dict:
        """Per GPU node: allocated GPUs, and NVML telemetry where a device exists."""
        return self._request("GET", "/admin/v1/infrastructure/gpu-utilization").json()

    def infrastructure_health(self) -> dict:
        """Nodes by state, nodes lost in the last hour, and the control loops' health."""
        return self._request("GET", "/admin/v1/infrastructure/health").json()

    def scaling_events(
        self,
        limit: int = 100,
        cursor: Optional[int] = None,
        kind: Optional[str] = None,
        pool: Optional[str] = None,
    ) -> dict:
        """Scaling decisions, failed launches and node changes, newest first."""
        params = {
            k: v
            for k, v in {"limit": limit, "cursor": cursor, "kind": kind, "pool": pool}.items()
            if v is not None
        }
        return self._request("GET", "/admin/v1/scaling/events", params=params).json()

    def resources_available(self) -> dict:
        """Free GPUs by type and by node."""
        return self._request("GET", "/internal/resources/available").json()

    def fragmentation(self) -> dict:
        """GPU fragmentation now: free and stranded GPUs per node and per GPU type."""
        return self._request("GET", "/admin/v1/infrastructure/fragmentation").json()

    # -- capacity reservations (admin key; the routes exist when ``orion.capacity`` is set) -------
    def capacity_reservations(self) -> dict:
        """The cluster's capacity reservations with their free slots: ``{"items": [...]}``."""
        return self._request("GET", "/admin/v1/capacity/reservations").json()

    def create_reservation(
        self, instance_type: str, availability_zone: str, count: int, **fields: Any
    ) -> dict:
        """Reserve ``count`` instances of a type in a zone; ``end_date`` (an ISO 8601 string),
        ``tags`` and the other request fields as keywords."""
        body = {
            "instance_type": instance_type,
            "availability_zone": availability_zone,
            "count": count,
            **fields,
        }
        return self._request("POST", "/admin/v1/capacity/reservations", json=body).json()

    def release_reservation(self, reservation_id: str) -> dict:
        """Release (cancel) a reservation; instances running in it keep running."""
        return self._request("DELETE", f"/admin/v1/capacity/reservations/{reservation_id}").json()

    def capacity_status(self) -> dict:
        """Per pool: capacity sources in order, blocklisted zones, the last failed launch."""
        return self._request("GET", "/admin/v1/capacity/status").json()

    def health(self) -> dict:
        """The ``/health`` body, answered 200 or 503 (no retry: the answer is the point)."""
        r = self._http.get("/health")
        return r.json()

    def wait_for_completion(
        self, workload_id: str, timeout: Optional[float] = None, poll_s: float = 0.2
    ) -> WorkloadResult:
        """Poll until the workload is terminal; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            w = self.get_workload(workload_id)
            if w["status"] in TERMINAL:
                return WorkloadResult(workload_id, w["status"], w.get("result"), w.get("error"), w)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"workload {workload_id} still {w['status']} after {timeout}s")
            self._sleep(poll_s)
