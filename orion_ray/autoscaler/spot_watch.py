"""Spot interruption notices on a live cluster → Orion's drain of that node.

A ``orion-spot-<node>`` actor runs on every node of a ``market: spot`` pool (the autoscaler starts
it when the node registers). It polls the node's own metadata service and, on the two-minute
warning, asks the scheduler to drain *its own Ray node* with a deadline just before EC2 takes the
instance back: the running work gets the time left to finish, then is preempted back to the queue;
nothing is lost. The notice names the EC2 instance; the actor knows which Ray node it sits on, so no
instance-to-node mapping is needed. Inside the cluster, no API key is involved.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Callable, Optional

from ..control import credential
from .providers.spot import NoticeSource, SpotInterruptionWatcher

log = logging.getLogger("orion.autoscaler.spot")

# Leave this much before EC2's deadline for the preemption itself (stop, requeue, group removal).
STOP_MARGIN_S = 20.0


def orion_drain(
    scheduler: Any,
    ray_node_id: str,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
) -> Callable[[str, dt.datetime], object]:
    """The watcher's ``drain(notice_node, deadline)``: drain ``ray_node_id`` through the scheduler
    (``scheduler.drain(node_id, who, deadline_s, reason)``, blocking) with the deadline minus a
    margin."""

    def drain(instance: str, deadline: dt.datetime) -> object:
        left = max(0.0, (deadline - now()).total_seconds() - STOP_MARGIN_S)
        log.warning(
            "spot interruption of %s (node %s) at %s: draining with %.0f s",
            instance,
            ray_node_id,
            deadline.isoformat(),
            left,
        )
        return scheduler.drain(
            ray_node_id,
            "spot-interruption",
            left,
            f"spot interruption notice for {instance}: reclaimed at {deadline.isoformat()}",
        )

    return drain


class SpotWatchActor:
    """Polls this node's notices and drains this node (wrapped by ``ray.remote`` below)."""

    def __init__(
        self,
        interval_s: float = 5.0,
        source: Optional[NoticeSource] = None,
        control_token: Optional[str] = None,
    ):
        import ray

        self._control_token = control_token  # the scheduler's drain needs it

        from .providers.spot import IMDSNoticeSource

        self.node_id = ray.get_runtime_context().get_node_id()
        self.interval_s = interval_s
        self.source = source or IMDSNoticeSource()
        self.watcher = SpotInterruptionWatcher(
            self.source, orion_drain(_BlockingScheduler(control_token), self.node_id)
        )
        self._task = asyncio.get_event_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:  # never dies: a failing poll (metadata service hiccup) is tried again
            try:
                await asyncio.to_thread(self.watcher.poll_once)
            except Exception as exc:
                log.warning("spot notice poll failed: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def drained(self) -> dict:
        return {k: v.isoformat() for k, v in self.watcher.drained.items()}


class _BlockingScheduler:
    """The scheduler actor, called synchronously from the watcher's thread."""

    def __init__(self, control_token: Optional[str] = None):
        self._token = control_token

    def drain(self, node_id: str, who: str, deadline_s: float, reason: str) -> object:
        import ray

        from ..scheduler.actor import get_scheduler

        return ray.get(
            get_scheduler().drain.remote(node_id, who, deadline_s, reason, **credential(self._token)),
            timeout=30,
        )


def ensure_spot_watchers(
    nodes: list[dict], spot_pools: set[str], started: set[str], control_token: Optional[str] = None
) -> None:
    """Start a watcher on each alive node of a spot pool that has none (idempotent by name)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ..names import NAMESPACE
    from ..runtime.ray_runtime import close_ray_call

    cls = close_ray_call(ray.remote(SpotWatchActor))
    for n in nodes:
        if n.get("pool") not in spot_pools or n["node_id"] in started:
            continue
        cls.options(
            name=f"orion-spot-{n['node_id'][:16]}",
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_restarts=-1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["node_id"], soft=False),
        ).remote(5.0, None, control_token)
        started.add(n["node_id"])
