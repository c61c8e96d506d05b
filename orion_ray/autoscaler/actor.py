"""``orion-autoscaler``: the detached actor beside the scheduler that runs the autoscaling loop.

A thin shell like the scheduler's: it builds the store, the Ray capacity adapter and a view of the
scheduler actor, and runs ``AutoscalerLoop`` forever. Ray restarts it after a crash; the decision
state (cooldowns, targets, released nodes) comes back from the store.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import ray

from ..config import OrionConfig
from ..control import check, credential
from ..names import AUTOSCALER_NAME, NAMESPACE
from ..runtime.ray_runtime import on_head_node
from ..store.open import open_store
from .control import AutoscalerLoop
from .pool_spec import node_type_of, parse_autoscale_pools
from .pool_swap import PoolSwap
from .ray_capacity import RayCapacity


class SchedulerSource:
    """The scheduler actor as the loop's ``source`` (its view, drains, and the status report)."""

    def __init__(self, handle=None, control_token: Optional[str] = None):
        self._handle = handle
        self._token = control_token  # the scheduler refuses these calls without it

    def _h(self):
        if self._handle is None:
            from ..scheduler.actor import get_scheduler

            self._handle = get_scheduler()
        return self._handle

    async def autoscaler_view(self) -> dict:
        return await self._h().autoscaler_view.remote(**credential(self._token))

    async def drain(self, node_id: str, who: str, deadline_s: float, reason: str) -> dict:
        return await self._h().drain.remote(node_id, who, deadline_s, reason, **credential(self._token))

    async def uncordon(self, node_id: str, who: str) -> dict:
        return await self._h().uncordon.remote(node_id, who, **credential(self._token))

    async def autoscaler_report(self, status: dict) -> None:
        await self._h().autoscaler_report.remote(status, **credential(self._token))


class AutoscalerActor:
    """Wrapped with ``ray.remote`` by ``deploy_autoscaler``."""

    def __init__(
        self, config: dict[str, Any], interval_s: Optional[float] = None, control_token: Optional[str] = None
    ):
        self._control_token = control_token  # for __ray_call__ (close_ray_call) and the scheduler
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.config = OrionConfig.model_validate(config)
        if self.config.orion.logging.level:  # orion.logging.level
            logging.getLogger().setLevel(self.config.orion.logging.level)
        section = self.config.orion
        store_cfg = section.store
        self.store = open_store(store_cfg, busy_timeout_ms=store_cfg.loop_busy_timeout_ms)
        pools = parse_autoscale_pools(section.worker_pools, section.autoscaling)
        interval = interval_s or float(section.autoscaling.get("interval_s", 1.0))
        spot = {p.name for p in section.worker_pools if p.market == "spot"}
        watched: set[str] = set()
        hook = None
        if spot:  # a spot node's two-minute warning becomes a drain of that node
            from .spot_watch import ensure_spot_watchers

            hook = lambda nodes: ensure_spot_watchers(nodes, spot, watched, control_token)  # noqa: E731
        self.loop = AutoscalerLoop(
            pools,
            SchedulerSource(control_token=control_token),
            RayCapacity(),
            self.store,
            interval_s=interval,
            node_types=node_type_of(section.worker_pools),
            on_nodes=hook,
            pool_swap=PoolSwap(
                pools,
                node_type_of(section.worker_pools),
                lambda raw: parse_autoscale_pools(raw, section.autoscaling),
            ),
        )
        self._task: Optional[asyncio.Task] = None
        ray.get_runtime_context().current_actor.ensure_started.remote()

    async def ensure_started(self) -> str:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.loop.run())
        return "ok"

    async def status(self, *, control_token: Optional[str] = None) -> dict:
        """The loop's last status (every pool's and node's: the control plane's credential)."""
        check(self._control_token, control_token, "autoscaler status")
        return self.loop.last_status

    async def step(self, *, control_token: Optional[str] = None) -> dict:
        """One step now (tests and `orion` tooling; the loop keeps its own pace)."""
        check(self._control_token, control_token, "autoscaler step")
        return await self.loop.step()

    async def shutdown(self, *, control_token: Optional[str] = None) -> None:
        """Stop the loop (a workload must not be able to: the control plane's credential)."""
        check(self._control_token, control_token, "autoscaler shutdown")
        self.loop.stop()


def deploy_autoscaler(config: OrionConfig, control_token: Optional[str] = None):
    """Get or create the detached autoscaler actor (never a second one); it calls the scheduler
    with ``control_token``."""
    from ..runtime.ray_runtime import close_ray_call

    cls = close_ray_call(ray.remote(AutoscalerActor))
    return cls.options(
        name=AUTOSCALER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        max_concurrency=100,
        scheduling_strategy=on_head_node(),
    ).remote(config.model_dump(mode="json"), None, control_token)
