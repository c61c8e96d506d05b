"""``orion-scheduler``: the detached, restartable Ray actor that hosts the scheduler.

A thin shell: it builds the store and the Ray runtime, starts the scheduler (recovering state first)
and exposes the scheduler's methods. After a crash Ray restarts it and the constructor kicks off
recovery itself, so scheduling resumes without waiting for a request.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import ray

from ..config import OrionConfig
from ..metrics import OrionMetrics
from ..store import SQLiteStore
from ..runtime.ray_runtime import NAMESPACE, RayRuntime, on_head_node
from .core import Scheduler

SCHEDULER_NAME = "orion-scheduler"


class SchedulerActor:
    """Wrapped with ``ray.remote`` by ``deploy_scheduler``; every public method is async."""

    def __init__(self, config: dict[str, Any], dashboard_url: Optional[str] = None):
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.config = OrionConfig.model_validate(config)
        store_cfg = self.config.orion.store
        self.store = SQLiteStore(store_cfg.resolved_path(), store_cfg.synchronous)
        self.runtime = RayRuntime(NAMESPACE, dashboard_url)
        self.scheduler = Scheduler(self.store, self.runtime, self.config.orion.scheduler,
                                   self.config.orion.policy, metrics=OrionMetrics(ray_mirror=True))
        self._start_lock: Optional[asyncio.Lock] = None
        # Start (and recover) without waiting for the first request: queue a call to ourselves.
        ray.get_runtime_context().current_actor.ensure_started.remote()

    async def ensure_started(self) -> str:
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.scheduler.started_at is None:
                await self.scheduler.start()
        return "ok"

    async def submit(self, spec: dict, tenant_id: str = "default", who=None) -> dict:
        await self.ensure_started()
        return await self.scheduler.submit(spec, tenant_id, who)

    async def notify(self) -> int:
        """New rows in the store (an API replica wrote them); before recovery ends, recovery
        itself loads them."""
        if self.scheduler.started_at is None:
            return 0
        return await self.scheduler.notify()

    async def ack(self, workload_id: str, tenant_id: Optional[str] = None) -> dict:
        await self.ensure_started()
        return await self.scheduler.ack(workload_id, tenant_id)

    async def get(self, workload_id: str, tenant_id: Optional[str] = None) -> dict:
        await self.ensure_started()
        return await self.scheduler.get(workload_id, tenant_id)

    async def list(self, status=None, tenant_id=None, limit: int = 50, cursor=None) -> dict:
        await self.ensure_started()
        return await self.scheduler.list(status, tenant_id, limit, cursor)

    async def cancel(self, workload_id: str, tenant_id: Optional[str] = None, who=None) -> dict:
        await self.ensure_started()
        return await self.scheduler.cancel(workload_id, tenant_id, who)

    async def explain(self, workload_id: str, tenant_id: Optional[str] = None) -> dict:
        await self.ensure_started()
        return await self.scheduler.explain(workload_id, tenant_id)

    async def queue(self, tenant_id: Optional[str] = None) -> dict:
        await self.ensure_started()
        return await self.scheduler.queue(tenant_id)

    async def tenant_list(self) -> dict:
        await self.ensure_started()
        return await self.scheduler.tenant_list()

    async def make_room(self, bundles: list, tenant_id=None, priority: str = "high",
                        who: str = "serving") -> dict:
        await self.ensure_started()
        return await self.scheduler.make_room(bundles, tenant_id, priority, who)

    async def fragmentation(self) -> dict:
        await self.ensure_started()
        return await self.scheduler.fragmentation()

    async def nodes(self, include_ended: bool = True) -> dict:
        await self.ensure_started()
        return await self.scheduler.nodes(include_ended)

    async def cordon(self, node_id: str, who: str = "admin", reason=None) -> dict:
        await self.ensure_started()
        return await self.scheduler.cordon(node_id, who, reason)

    async def uncordon(self, node_id: str, who: str = "admin") -> dict:
        await self.ensure_started()
        return await self.scheduler.uncordon(node_id, who)

    async def drain(self, node_id: str, who: str = "admin", deadline_s=None, reason=None) -> dict:
        await self.ensure_started()
        return await self.scheduler.drain(node_id, who, deadline_s, reason)

    async def resources_available(self) -> dict:
        await self.ensure_started()
        return await self.scheduler.resources_available()

    async def autoscaler_view(self) -> dict:
        await self.ensure_started()
        return await self.scheduler.autoscaler_view()

    async def autoscaler_report(self, status: dict) -> None:
        await self.scheduler.autoscaler_report(status)

    async def gpu_utilization(self) -> dict:
        await self.ensure_started()
        return await self.scheduler.gpu_utilization()

    async def infrastructure_health(self) -> dict:
        await self.ensure_started()
        return await self.scheduler.infrastructure_health()

    async def scaling_events(self, limit: int = 100, cursor=None, kind=None, pool=None) -> dict:
        return await self.scheduler.scaling_events(limit, cursor, kind, pool)

    async def configure_tenants(self, tenants: list, keys: dict, admins=None, who="admin",
                                policy=None) -> dict:
        return await self.scheduler.configure_tenants(tenants, keys, admins, who, policy)

    async def metrics_text(self) -> str:
        return await self.scheduler.metrics_text()

    async def keyring(self) -> dict:
        return await self.scheduler.keyring()

    async def audit_log(self, limit: int = 100, cursor=None) -> dict:
        return await self.scheduler.audit_log(limit, cursor)

    async def logs(self, workload_id: str, tenant_id: Optional[str] = None) -> str:
        await self.ensure_started()
        return await self.scheduler.logs(workload_id, tenant_id)

    async def health(self) -> dict:
        return await self.scheduler.health()

    async def config_dict(self) -> dict:
        return self.config.model_dump(mode="json")

    async def shutdown(self) -> None:
        await self.scheduler.stop()


def deploy_scheduler(config: OrionConfig, dashboard_url: Optional[str] = None):
    """Get or create the detached scheduler actor (idempotent: never a second scheduler)."""
    cls = ray.remote(SchedulerActor)
    return cls.options(name=SCHEDULER_NAME, namespace=NAMESPACE, lifetime="detached",
                       get_if_exists=True, max_restarts=-1, max_task_retries=0, num_cpus=0,
                       max_concurrency=1000, scheduling_strategy=on_head_node()
                       ).remote(config.model_dump(mode="json"), dashboard_url)


def get_scheduler():
    """The running scheduler actor's handle (raises ``ValueError`` if there is none)."""
    return ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
