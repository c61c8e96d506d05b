"""``orion-serving``: the deployment manager as a detached actor, with its reconcile loop.

Every call is serialised by one lock (the loop's Serve calls run in a thread meanwhile), so the
manager's dictionaries are never read half-changed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, Optional

import ray

from ..control import check, credential
from ..errors import SchedulerUnavailable
from ..names import NAMESPACE, SCHEDULER_NAME
from ..names import SERVING_NAME as MANAGER_NAME
from ..runtime.ray_runtime import close_ray_call, serving_gpu_usage
from .deployer import RayKv, ServeDeployer
from .manager import DeploymentManager

__all__ = [
    "MANAGER_NAME",
    "NAMESPACE",
    "ServingActor",
    "deploy_manager",
    "ManagerClient",
    "serving_gpu_usage",
    "serving_gpus_by_node",
]
log = logging.getLogger("orion.serving")
USAGE_TIMEOUT_S = 30.0
USAGE_RETRY_S = 30.0

# Manager methods any caller may use without the control plane's credential, each with why. Every
# other one (create, delete, scale, releases, reports, the GPU account…) needs it.
OPEN_METHODS: dict[str, str] = {
    "routing_table": "an inference workload's task routes its own request (as /v1 does) and runs "
    "as the tenant; the table names models and versions, not their tenants' data",
}


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=64)
class ServingActor:
    """The manager, its loop, and one entry point (``call``) for the API."""

    def __init__(
        self,
        tick_s: float = 0.5,
        direct_prefix: Optional[str] = None,
        control_token: Optional[str] = None,
        caching: Optional[dict] = None,
    ):
        self._control_token = control_token
        room = functools.partial(_room_from_scheduler, control_token=control_token)
        sink = functools.partial(_scaling_to_scheduler, control_token=control_token)
        # usage records are sent by the loop, outside the lock (``_send_usage``), not by the manager
        # ``caching`` is the creating ``orion up``'s; after a restart the saved value wins
        self.manager = DeploymentManager(
            ServeDeployer(direct_prefix), RayKv(), room=room, scaling_sink=sink, default_caching=caching
        )
        self._usage_retry_at = 0.0
        self.tick_s = tick_s
        self._lock = asyncio.Lock()
        self._task: Optional[asyncio.Task] = None

    async def set_default_caching(self, caching: Optional[dict], control_token: Optional[str] = None) -> None:
        """``orion.serving.caching`` of the latest ``orion up`` (the actor may predate it)."""
        check(self._control_token, control_token, "serving set_default_caching")
        async with self._lock:  # it saves the state, as every other change does
            await asyncio.to_thread(self.manager.set_default_caching, caching)

    async def ensure_started(self) -> bool:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return True

    async def _loop(self) -> None:
        while True:
            try:
                async with self._lock:
                    await asyncio.to_thread(self.manager.tick)
                await self._send_usage()
            except Exception:  # one bad tick (Serve restarting, say) never stops the loop
                log.exception("serving tick failed")
            await asyncio.sleep(self.tick_s)

    async def _send_usage(self) -> None:
        """Hand the usage records the manager cut to the scheduler (it holds the store), without
        holding the lock: a slow scheduler never delays the routers' calls. Unsent records stay
        pending (and saved) and are tried again ``USAGE_RETRY_S`` later; a resend is harmless
        (the scheduler skips a record it already has)."""
        meter = self.manager.meter
        if not meter.pending or time.monotonic() < self._usage_retry_at:
            return
        batch = list(meter.pending)
        try:
            scheduler = await asyncio.to_thread(ray.get_actor, SCHEDULER_NAME, namespace=NAMESPACE)
            ref = scheduler.record_usage.remote(batch, **credential(self._control_token))
            await asyncio.wait_for(ref, timeout=USAGE_TIMEOUT_S)
        except Exception as exc:  # no scheduler yet, restarting, or the store is busy
            self._usage_retry_at = time.monotonic() + USAGE_RETRY_S
            log.warning("%d serving usage record(s) not stored yet (%s); retrying", len(batch), exc)
            return
        async with self._lock:
            meter.sent(len(batch))  # only appended to meanwhile: the first ones are these

    async def call(self, method: str, *args: Any, control_token: Optional[str] = None) -> Any:
        """Run one manager method (``OrionError``s travel back to the API as they are); all but
        ``OPEN_METHODS`` need the control plane's credential."""
        if method not in OPEN_METHODS:
            check(self._control_token, control_token, f"serving {method}")
        await self.ensure_started()  # after a restart of this actor, the first call restarts it
        async with self._lock:
            if method in ("report", "report_usage", "routing_table", "gpu_usage"):  # cheap: no thread hop
                return self.manager.dispatch(method, *args)
            return await asyncio.to_thread(self.manager.dispatch, method, *args)


close_ray_call(ServingActor)  # before its first .remote(): __ray_call__ needs the credential too


def deploy_manager(
    tick_s: float = 0.5,
    direct_prefix: Optional[str] = None,
    control_token: Optional[str] = None,
    caching: Optional[dict] = None,
):
    """Start (or find) the manager actor and its loop, guarded by ``control_token``;
    ``caching``: the cluster's default response-cache block (``orion.serving.caching``)."""
    actor = ServingActor.options(
        name=MANAGER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(tick_s, direct_prefix, control_token, caching)
    ray.get(actor.ensure_started.remote(), timeout=60)
    if caching is not None:
        ray.get(actor.set_default_caching.remote(caching, control_token=control_token), timeout=60)
    return actor


class ManagerClient:
    """The manager actor as the API and routers call it; a missing actor is a 503."""

    def __init__(self, handle=None, control_token: Optional[str] = None):
        self._handle = handle
        self._token = control_token  # None: only the open methods answer (an inference task)

    def _actor(self):
        if self._handle is None:
            if not ray.is_initialized():
                raise SchedulerUnavailable(
                    "model serving is not running (not on a Ray cluster)", retry_after=2
                )
            try:
                self._handle = ray.get_actor(MANAGER_NAME, namespace=NAMESPACE)
            except ValueError:
                raise SchedulerUnavailable(
                    "model serving is not running (no orion-serving actor)", retry_after=2
                ) from None
        return self._handle

    async def call(self, method: str, *args: Any) -> Any:
        try:
            return await self._actor().call.remote(method, *args, **credential(self._token))
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            self._handle = None
            raise SchedulerUnavailable(
                f"the serving manager is restarting ({type(exc).__name__})", retry_after=1
            ) from None

    def report_nowait(self, samples: list) -> None:
        """Send router outcomes without waiting (a lost batch only thins the canary's evidence)."""
        try:
            self._actor().call.remote("report", samples, **credential(self._token))
        except Exception:
            self._handle = None

    def usage_nowait(self, items: list) -> None:
        """Send answers' token counts without waiting (the usage records' tokens; a batch lost
        with a dying manager is within the bound docs/serving-limits.md states)."""
        try:
            self._actor().call.remote("report_usage", items, **credential(self._token))
        except Exception:
            self._handle = None


def _room_from_scheduler(bundles: list, tenant_id, control_token: Optional[str] = None) -> Optional[dict]:
    """Ask Orion's scheduler to make room for GPU replicas (``None`` when it is not running).

    The scheduler is found by its actor name: serving and the scheduler import nothing of each
    other (the scheduler's own account of serving GPUs goes the other way, by name too)."""
    try:
        scheduler = ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
    except ValueError:
        return None
    ref = scheduler.make_room.remote(bundles, tenant_id, "high", "serving", **credential(control_token))
    return ray.get(ref, timeout=30)


def _scaling_to_scheduler(events: list, control_token: Optional[str] = None) -> int:
    """Store serving's scaling events through the scheduler (it owns the store); raises while
    the scheduler is away, so the events wait in the manager's outbox."""
    scheduler = ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
    ref = scheduler.record_scaling_events.remote(events, **credential(control_token))
    return ray.get(ref, timeout=5)  # inside the serving tick: a slow scheduler must not stall it


def serving_gpus_by_node(timeout_s: float = 10.0) -> dict[str, float]:
    """GPUs that live serving replicas hold on each node (node id → GPUs), read from Ray's state
    API: what the scheduler's snapshot should take off a node's free capacity. A replica with a
    tensor-parallel bundle set counts every GPU bundle of its placement group, where it stands."""
    from ray.util.state import list_actors, list_placement_groups

    from .manager import APP_PREFIX

    # this process's own cluster: without an address the state API looks for "the" local Ray
    # and fails (or picks another) when the machine runs several
    address = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    out: dict[str, float] = {}
    groups: Optional[dict] = None
    for a in list_actors(
        address=address, filters=[("state", "=", "ALIVE")], detail=True, limit=10_000, timeout=timeout_s
    ):
        # Serve names a replica's class "ServeReplica:<application>:<deployment>"
        if not (a.class_name or "").startswith(f"ServeReplica:{APP_PREFIX}"):
            continue
        if a.placement_group_id:
            if groups is None:
                groups = {
                    g.placement_group_id: g
                    for g in list_placement_groups(
                        address=address, detail=True, limit=10_000, timeout=timeout_s
                    )
                }
            group = groups.get(a.placement_group_id)
            for b in group.bundles if group else []:
                gpus = float((b.get("unit_resources") or {}).get("GPU", 0))
                if gpus and b.get("node_id"):
                    out[b["node_id"]] = out.get(b["node_id"], 0.0) + gpus
        elif (a.required_resources or {}).get("GPU"):
            out[a.node_id] = out.get(a.node_id, 0.0) + float(a.required_resources["GPU"])
    return out
