"""``orion-api``: the REST app as a Ray Serve application with a FastAPI ingress."""
from __future__ import annotations

from typing import Any, Optional

import ray
from ray import serve

from ..errors import SchedulerUnavailable
from ..scheduler.actor import get_scheduler
from .app import build_app
from .auth import KeyRing

APP_NAME = "orion-api"


class ActorBackend:
    """The scheduler actor behind the API: calls it, and turns a dead actor into a 503."""

    def __init__(self, handle=None):
        self._handle = handle

    def _actor(self):
        if self._handle is None:
            try:
                self._handle = get_scheduler()
            except ValueError:
                raise SchedulerUnavailable("the scheduler actor is not running", retry_after=2)
        return self._handle

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._actor(), method).remote(*args)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            raise SchedulerUnavailable(f"the scheduler is restarting ({type(exc).__name__})",
                                       retry_after=1) from None

    async def submit(self, spec, tenant_id, who=None):
        return await self._call("submit", spec, tenant_id, who)

    async def get(self, workload_id, tenant_id=None):
        return await self._call("get", workload_id, tenant_id)

    async def list(self, status=None, tenant_id=None, limit=50, cursor=None):
        return await self._call("list", status, tenant_id, limit, cursor)

    async def cancel(self, workload_id, tenant_id=None, who=None):
        return await self._call("cancel", workload_id, tenant_id, who)

    async def logs(self, workload_id, tenant_id=None):
        return await self._call("logs", workload_id, tenant_id)

    async def health(self):
        return await self._call("health")

    async def explain(self, workload_id, tenant_id=None):
        return await self._call("explain", workload_id, tenant_id)

    async def queue(self, tenant_id=None):
        return await self._call("queue", tenant_id)

    async def tenant_list(self):
        return await self._call("tenant_list")

    async def fragmentation(self):
        return await self._call("fragmentation")

    async def configure_tenants(self, tenants, keys, admins=None, who="admin", policy=None):
        return await self._call("configure_tenants", tenants, keys, admins, who, policy)

    async def metrics_text(self):
        return await self._call("metrics_text")

    async def keyring(self):
        return await self._call("keyring")

    async def audit_log(self, limit=100, cursor=None):
        return await self._call("audit_log", limit, cursor)

    async def nodes(self, include_ended=True):
        return await self._call("nodes", include_ended)

    async def cordon(self, node_id, who="admin", reason=None):
        return await self._call("cordon", node_id, who, reason)

    async def uncordon(self, node_id, who="admin"):
        return await self._call("uncordon", node_id, who)

    async def drain(self, node_id, who="admin", deadline_s=None, reason=None):
        return await self._call("drain", node_id, who, deadline_s, reason)

    async def gpu_utilization(self):
        return await self._call("gpu_utilization")

    async def infrastructure_health(self):
        return await self._call("infrastructure_health")

    async def scaling_events(self, limit=100, cursor=None, kind=None, pool=None):
        return await self._call("scaling_events", limit, cursor, kind, pool)

    async def resources_available(self):
        return await self._call("resources_available")


def build_api_app(admin_key_hashes: list[str], max_body_bytes: int,
                  capacity: Optional[dict] = None, pools: Optional[list] = None):
    """The bound Serve application (deploy with ``serve.run(..., name=APP_NAME)``);
    ``capacity`` is ``orion.capacity`` (``provider: ec2`` mounts the capacity routes)."""
    from ..autoscaler.capacity_service import capacity_backend
    app = build_app(KeyRing(admin_key_hashes), None, max_body_bytes, backend_factory=ActorBackend,
                    capacity_backend=capacity_backend(capacity or {}, pools or []))

    @serve.deployment(name="OrionAPI", num_replicas=1, max_ongoing_requests=1000,
                      ray_actor_options={"num_cpus": 0})
    @serve.ingress(app)
    class OrionAPI:
        """The API replica; routes live on the FastAPI app."""

    return OrionAPI.bind()
