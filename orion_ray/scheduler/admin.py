"""The read views, node operations and administration of the scheduler's service interface.

``Scheduler`` inherits these methods (the actor forwards them like the rest); they only read the
scheduler's state through its public parts (the book, the store, the tenants, the node book) or hand
it to the view and node modules, so the loop and the cycle stay readable in ``core.py``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..config import PolicyConfig
from ..errors import NotFound, ValidationError, pydantic_details
from ..models import Workload
from . import node_ops, views
from . import policy_bridge as bridge


class AdminMixin:
    """Views, node operations, autoscaler exchange, tenants and audit of a ``Scheduler``; ``self``
    is always the scheduler (the view and node functions take it whole), which sets these:"""

    store: Any
    book: Any
    tenants: Any
    clock: Callable[[], float]
    metrics: Any
    nodebook: Any
    fair: Any
    policy: Any
    policy_config: PolicyConfig
    autoscaler_status: dict[str, Any]
    pools_config: Callable[[], Optional[dict[str, Any]]]  # ConfigApplyMixin's
    config_overridden: Callable[[str], None]

    def lookup(self, workload_id: str, tenant_id: Optional[str]) -> Workload:
        w = self.book.active.get(workload_id) or self.store.get(workload_id)
        if w is None or (tenant_id is not None and w.tenant_id != tenant_id):
            raise NotFound(f"no workload {workload_id!r}")
        return w

    async def explain(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Why the workload is not running yet (position, reasons)."""
        return views.explain(self, self.lookup(workload_id, tenant_id), self.clock())

    async def queue(self, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Queue depth, running work and usage against quota, per tenant."""
        return views.queue_summary(self, tenant_id)

    async def tenant_list(self) -> dict[str, Any]:
        """Every tenant with its configuration and usage (admin view)."""
        return views.tenant_list(self)

    async def fragmentation(self) -> dict[str, Any]:
        """Stranded GPU capacity now, per node and per GPU type (and refresh the gauges)."""
        return views.fragmentation(self)

    # == nodes (see node_ops) ======================================================================
    async def nodes(self, include_ended: bool = True) -> dict[str, Any]:
        """Every node with its lifecycle state, free capacity and workloads."""
        return node_ops.nodes(self, include_ended)

    async def cordon(self, node_id: str, who: str = "admin", reason: Optional[str] = None) -> dict[str, Any]:
        """No new placements on the node."""
        return node_ops.cordon(self, node_id, who, reason)

    async def uncordon(self, node_id: str, who: str = "admin") -> dict[str, Any]:
        """Placements allowed again (a drain is called off)."""
        return node_ops.uncordon(self, node_id, who)

    async def drain(
        self,
        node_id: str,
        who: str = "admin",
        deadline_s: Optional[float] = None,
        reason: Optional[str] = None,
    ) -> dict[str, Any]:
        """Cordon; running work may end until the deadline, then it is preempted to the queue."""
        return node_ops.drain(self, node_id, who, deadline_s, reason)

    async def resources_available(self) -> dict[str, Any]:
        """Free GPUs by type and by node."""
        return node_ops.resources_available(self)

    async def autoscaler_view(self) -> dict[str, Any]:
        """What the autoscaler decides over: node samples, queued gangs, queue depth."""
        samples = node_ops.node_samples(self)
        return {
            "nodes": samples,
            "pending": node_ops.pending_gangs(self),
            "queued": len(self.book.queued()),
            "serving_gpus": sum(u.get("gpu", 0.0) for u in self.serving_usage.values()),
            # Ray lists these groups as pending demand until they are placed; their gangs are
            # Orion's own (queued or starting), counted above, never twice
            "own_groups": self.runtime.group_ids(),
            "node_counts": self.nodebook.counts(),
            "at": self.clock(),
            "pools_config": self.pools_config(),  # pools a config snapshot set (config_apply.py)
        }

    async def autoscaler_report(self, status: dict[str, Any]) -> None:
        """The autoscaler's latest status (its loop, pools, GPU telemetry), kept for the API."""
        self.autoscaler_status = dict(status)
        self.autoscaler_status["received_at"] = self.clock()
        self.metrics.set_pools(status.get("pools") or [])

    async def gpu_utilization(self) -> dict[str, Any]:
        """Per GPU node: allocated GPUs in Orion's account, and device telemetry from NVML."""
        return node_ops.gpu_utilization(self, self.autoscaler_status)

    async def infrastructure_health(self) -> dict[str, Any]:
        """Nodes by state, recently lost nodes, and whether the control loops are alive."""
        return node_ops.infrastructure_health(self, self.autoscaler_status, await self.health())

    async def scaling_events(
        self,
        limit: int = 100,
        cursor: Optional[int] = None,
        kind: Optional[str] = None,
        pool: Optional[str] = None,
    ) -> dict[str, Any]:
        """Scaling decisions and node changes, newest first."""
        rows = self.store.scaling_events(limit + 1, cursor, kind, pool)
        return {"items": rows[:limit], "next_cursor": rows[limit - 1]["id"] if len(rows) > limit else None}

    async def configure_tenants(
        self,
        tenants: list[dict],
        keys: dict[str, str],
        admins: Optional[list[str]] = None,
        who: str = "admin",
        policy: Optional[dict] = None,
    ) -> dict[str, Any]:
        """Replace the tenants and their key hashes, and the policy section if given (validated
        first; all or nothing). Quotas, weights and policy settings apply from the next cycle."""
        new_policy = self.policy_config
        if policy is not None:
            try:
                new_policy = PolicyConfig.model_validate(policy)
            except Exception as exc:
                raise ValidationError(
                    "invalid policy configuration",
                    [
                        {"field": "policy." + d["field"], "problem": d["problem"]}
                        for d in pydantic_details(exc)
                    ],
                ) from None
        summary = self.tenants.configure(tenants, keys, admins)
        self.config_overridden(who)  # an applied snapshot no longer describes the tenants
        if policy is not None:
            self.store.put_setting("policy", new_policy.model_dump(mode="json"))
            self.policy_config = new_policy
            self.fair.half_life_s = new_policy.fair_share_half_life_s
        self.policy = bridge.settings_from(self.tenants.tenants.values(), self.policy_config)
        self.planner.invalidate()  # order and quotas changed: the next pass is a full one
        self.book.version += 1
        self.store.audit(
            who,
            "configure_tenants",
            None,
            {"tenants": summary["tenants"], "keys": summary["keys"], "version": summary["version"]},
            self.clock(),
        )
        return summary

    async def keyring(self) -> dict[str, Any]:
        """The tenants' key hashes (for the API's authentication)."""
        return self.tenants.keyring()

    async def audit_log(self, limit: int = 100, cursor: Optional[int] = None) -> dict[str, Any]:
        """Who did what, newest first, a page at a time."""
        rows = self.store.audit_log(limit + 1, cursor)
        return {"items": rows[:limit], "next_cursor": rows[limit - 1]["id"] if len(rows) > limit else None}
