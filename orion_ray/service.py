"""The scheduler's service interface, declared once: ``SchedulerService``.

Every method the REST API calls on its backend and the ``orion-scheduler`` actor exposes is declared
here, with its signature and what it answers. The implementations follow it: ``Scheduler``
(``scheduler/core.py``) implements it; ``SchedulerActor`` (``scheduler/actor.py``) gets one generated
forwarder per method; ``build_app`` types its backend with it. ``tests/unit/test_service_interface.py``
fails when any of them, or the two SDK clients, drift from it.

This module sits in the model layer: it imports neither Ray nor FastAPI, so any layer may use it.
"""

from __future__ import annotations

import builtins
import inspect
from typing import Any, Optional, Protocol

from .control import CONTROL_PARAM


class SchedulerService(Protocol):
    """What the scheduler answers, whoever hosts it (the class in a test, the actor in a cluster).

    ``tenant_id`` scopes a call to one tenant (``None``: an admin, every tenant); ``who`` is the
    caller recorded in the audit log. Errors are ``orion_ray.errors`` exceptions (``NotFound``,
    ``ValidationError``, ``QueueFull``…), which the API turns into the contract's error bodies.
    """

    # Annotations after the ``list`` method say ``builtins.list``: inside the class body, mypy
    # reads a bare ``list`` as that method.

    # -- workloads -------------------------------------------------------------------------------
    async def submit(
        self, spec: dict[str, Any], tenant_id: str = "default", who: Optional[str] = None
    ) -> dict[str, Any]:
        """Validate, persist and enqueue ``spec``; the acknowledgement (id, status, position,
        estimates) is answered only after the store has the workload."""
        ...

    async def notify(self) -> int:
        """New rows are in the store (an API replica wrote them): take them in now rather than at
        the next tick; how many were new. The API sends it without waiting for the answer."""
        ...

    async def ack(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """The acknowledgement of a workload an API replica wrote (position and, for a short
        queue, the forecast), once the scheduler has taken it in."""
        ...

    async def get(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """One workload with its status history and queue position (``NotFound`` outside the
        caller's tenant)."""
        ...

    async def list(
        self,
        status: Optional[str] = None,
        tenant_id: Optional[str] = None,
        limit: int = 50,
        cursor: Optional[int] = None,
    ) -> dict[str, Any]:
        """Workloads newest first: ``{"items", "next_cursor"}``."""
        ...

    async def cancel(
        self, workload_id: str, tenant_id: Optional[str] = None, who: Optional[str] = None
    ) -> dict[str, Any]:
        """Stop the workload wherever it is; idempotent (a finished one answers its final
        state)."""
        ...

    async def logs(self, workload_id: str, tenant_id: Optional[str] = None) -> str:
        """stdout/stderr of the workload's latest run (live for a running job)."""
        ...

    async def explain(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Why the workload is not running yet: position, reasons, expected start."""
        ...

    async def queue(self, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Queue depth and usage against quota per tenant."""
        ...

    async def tenant_list(self) -> dict[str, Any]:
        """Every tenant with its weight, quota and current usage."""
        ...

    async def make_room(
        self,
        bundles: builtins.list[dict[str, float]],
        tenant_id: Optional[str] = None,
        priority: str = "high",
        who: str = "serving",
        hold_s: float = 120.0,
    ) -> dict[str, Any]:
        """Preempt lower-priority work so ``bundles`` fit for work Orion does not launch itself
        (a Serve replica); the freed capacity is held for ``hold_s`` seconds."""
        ...

    async def record_usage(self, records: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        """Store serving usage records (kind ``replica``: replica-hours and tokens) the serving
        manager cut; a record already stored (a resend) is skipped. ``{"written": n}``."""
        ...

    # -- nodes and capacity ----------------------------------------------------------------------
    async def fragmentation(self) -> dict[str, Any]:
        """Stranded GPU capacity now, per node and per GPU type."""
        ...

    async def nodes(self, include_ended: bool = True) -> dict[str, Any]:
        """Every node with its lifecycle state, free capacity and workloads."""
        ...

    async def cordon(self, node_id: str, who: str = "admin", reason: Optional[str] = None) -> dict[str, Any]:
        """No new placements on the node; running work continues."""
        ...

    async def uncordon(self, node_id: str, who: str = "admin") -> dict[str, Any]:
        """Placements allowed again (a drain under way is called off)."""
        ...

    async def drain(
        self,
        node_id: str,
        who: str = "admin",
        deadline_s: Optional[float] = None,
        reason: Optional[str] = None,
    ) -> dict[str, Any]:
        """Cordon; running work may end until the deadline, then it is preempted to the queue."""
        ...

    async def resources_available(self) -> dict[str, Any]:
        """Free GPUs by type and by node, in Orion's account."""
        ...

    async def gpu_utilization(self) -> dict[str, Any]:
        """Per GPU node: allocated GPUs in Orion's account, and device telemetry from NVML."""
        ...

    async def infrastructure_health(self) -> dict[str, Any]:
        """Nodes by state, recently lost nodes, and whether the control loops are alive."""
        ...

    async def scaling_events(
        self,
        limit: int = 100,
        cursor: Optional[int] = None,
        kind: Optional[str] = None,
        pool: Optional[str] = None,
    ) -> dict[str, Any]:
        """Scaling decisions and node changes, newest first: ``{"items", "next_cursor"}``."""
        ...

    async def record_scaling_events(self, events: builtins.list[dict[str, Any]]) -> int:
        """Store scaling events decided outside the scheduler (the serving manager's model
        scales, rollouts and Serve's autoscaling decisions); returns how many were stored."""
        ...

    # -- the autoscaler's side -------------------------------------------------------------------
    async def autoscaler_view(self) -> dict[str, Any]:
        """What the autoscaler decides over: node samples, queued gangs, queue depth."""
        ...

    async def autoscaler_report(self, status: dict[str, Any]) -> None:
        """The autoscaler's latest status (its loop, pools, GPU telemetry), kept for the API."""
        ...

    # -- pipelines (issue 16) --------------------------------------------------------------------
    async def pipeline_submit(
        self, body: dict[str, Any], tenant_id: str = "default", who: Optional[str] = None
    ) -> dict[str, Any]:
        """Validate a pipeline submission (``dag_spec``, ``runtime_params``, ``refs``) and store
        its run in one transaction; ``{"submission_id", "state"}``. A repeated
        ``runtime_params.submission_id`` answers the first run (409 with another body)."""
        ...

    async def pipeline_status(self, submission_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """A run with every node's state, attempt, workload id and outputs (their names)
        (``NotFound`` outside the caller's tenant)."""
        ...

    async def pipeline_cancel(
        self, submission_id: str, tenant_id: Optional[str] = None, who: Optional[str] = None
    ) -> dict[str, Any]:
        """Cancel a run: its running nodes' workloads are cancelled, pending nodes never start
        (idempotent: a finished run answers its final state)."""
        ...

    async def pipeline_retry(
        self, submission_id: str, tenant_id: Optional[str] = None, who: Optional[str] = None
    ) -> dict[str, Any]:
        """Run a failed or cancelled run again: succeeded nodes keep their outputs, failed,
        cancelled and skipped ones run again as new attempts (``Conflict`` for a run that is
        running or succeeded); the status body."""
        ...

    async def pipeline_logs(
        self, submission_id: str, node: str, attempt: Optional[int] = None, tenant_id: Optional[str] = None
    ) -> dict[str, Any]:
        """A node's logs: its current or last attempt's, or ``attempt``'s
        (``{submission_id, node_id, attempt, workload_id, status, truncated, logs}``)."""
        ...

    async def pipeline_lineage(self, submission_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """The run's OpenLineage RunEvents (``{submission_id, state, run_id, skipped, events}``)."""
        ...

    async def workers(self) -> dict[str, Any]:
        """Each Ray node with its current tasks (workload ids, pipeline nodes), tasks completed,
        resources in use and last activity (admin)."""
        ...

    async def pipeline_output(
        self, submission_id: str, node: str, name: str, tenant_id: Optional[str] = None, max_bytes: int = 0
    ) -> dict[str, Any]:
        """One output of a run's node: ``{"uri": the artifact's URI or None, "data": its JSON
        bytes}``, at most ``max_bytes`` (0: the default bound; ``PayloadTooLarge`` past it;
        ``NotFound`` outside the caller's tenant or for an output the node does not have)."""
        ...

    async def pipeline_items(
        self,
        submission_id: str,
        node_id: str,
        after: int = -1,
        limit: int = 100,
        state: Optional[str] = None,
        tenant_id: Optional[str] = None,
    ) -> dict[str, Any]:
        """A page of a map node's items (index, state, attempt, workload id, error) above index
        ``after``, with the node's task counters (``NotFound`` outside the caller's tenant)."""

    async def schedule_call(
        self, op: str, args: dict[str, Any], tenant_id: Optional[str] = None, who: Optional[str] = None
    ) -> dict[str, Any]:
        """Pipeline schedules, event triggers and events (docs/pipelines-schedules.md): ``op`` is
        ``schedule_<create|list|get|pause|resume|delete|backfill>``,
        ``trigger_<create|list|get|pause|resume|delete>`` or ``event_post``; ``args`` its
        arguments (``body``, ``name``, ``start``/``end``, ``limit``/``cursor``)."""
        ...

    # -- administration and operations -----------------------------------------------------------
    async def configure_tenants(
        self,
        tenants: builtins.list[dict],
        keys: dict[str, str],
        admins: Optional[builtins.list[str]] = None,
        who: str = "admin",
        policy: Optional[dict] = None,
    ) -> dict[str, Any]:
        """Replace the tenants, their key hashes and (if given) the policy section; validated
        first, all or nothing."""
        ...

    async def keyring(self) -> dict[str, Any]:
        """The admin and tenant key hashes the API authenticates with."""
        ...

    async def apply_config_snapshot(self, snapshot: dict) -> dict[str, Any]:
        """Apply a control plane's config snapshot ``{version, sha256, body|text}`` whole or not
        at all, without a restart: ``{outcome, applied, changed, refused}`` (docs/regions-config.md)."""
        ...

    async def applied_config(self) -> dict[str, Any]:
        """The applied config snapshot's version and hash, its sections, pools, templates, prices."""
        ...

    async def audit_log(self, limit: int = 100, cursor: Optional[int] = None) -> dict[str, Any]:
        """Who submitted, cancelled or reconfigured what, newest first."""
        ...

    async def metrics_text(self) -> str:
        """The scheduler's metrics in Prometheus text (gauges refreshed now)."""
        ...

    async def health(self) -> dict[str, Any]:
        """``scheduler`` and ``store`` each ``ok`` or ``down``, with the last cycle."""
        ...


def service_methods(protocol: type = SchedulerService) -> tuple[str, ...]:
    """The names ``protocol`` declares, in declaration order (the one list the actor forwards and
    the drift test checks)."""
    return tuple(
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and inspect.isfunction(value)
    )


SERVICE_METHODS: tuple[str, ...] = service_methods()

# Methods the actor answers without waiting for recovery (``ensure_started``), each with why.
# Every other method waits: it reads or changes state that recovery rebuilds.
START_FREE: dict[str, str] = {
    "notify": "fire and forget from the API; before recovery ends it takes nothing (recovery "
    "loads every row), so it must not queue up behind recovery",
    "health": "says whether the loop runs; during a stuck recovery it must answer 'down', not hang",
    "metrics_text": "a scrape during recovery must show orion_scheduler_up 0 rather than time out",
    "keyring": "the API authenticates with it; the tenant registry is read from the store at "
    "construction, not by recovery",
    "configure_tenants": "an operator may need to fix keys or quotas while recovery retries; "
    "it writes the registry and the store, which recovery does not rebuild",
    "audit_log": "a store read; recovery does not change it",
    "applied_config": "a store read (the applied snapshot's row); a region's agent heartbeats it "
    "during recovery too",
    "scaling_events": "a store read; recovery does not change it",
    "record_scaling_events": "a store append from the serving manager; recovery does not read "
    "these rows, and serving must not stall behind it",
    "autoscaler_report": "keeps the autoscaler's status dict only; the autoscaler's loop must not "
    "stall behind recovery",
}


def guarded_signature(name: str, protocol: type = SchedulerService) -> inspect.Signature:
    """The signature the actor exposes for ``name``: the protocol's, plus the control plane's
    credential as a keyword-only ``control_token`` (``orion_ray.control``). Derived here, once,
    so the actor and the drift test cannot disagree about it."""
    declared = inspect.signature(getattr(protocol, name), eval_str=True)
    params = list(declared.parameters.values())
    token = inspect.Parameter(
        CONTROL_PARAM, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Optional[str]
    )
    return declared.replace(parameters=[*params, token])
