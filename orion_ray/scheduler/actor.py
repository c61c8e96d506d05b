"""``orion-scheduler``: the detached, restartable Ray actor that hosts the scheduler.

A thin shell: it builds the store and the Ray runtime, starts the scheduler (recovering state first)
and exposes the scheduler's methods. After a crash Ray restarts it and the constructor kicks off
recovery itself, so scheduling resumes without waiting for a request.

The exposed methods are not written here: one forwarder per method of ``SchedulerService``
(``orion_ray/service.py``) is generated onto the class, with the protocol's signature and docstring.
Each waits for ``ensure_started`` first, except those ``START_FREE`` lists with the reason, and
each needs the control plane's credential (``orion_ray.control``): a keyword-only ``control_token``
added to the protocol's signature (``service.guarded_signature``), so workload code that finds
the actor by name cannot reconfigure, cancel or read any tenant's work.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable, Optional

import ray

from .. import tracing
from ..config import OrionConfig
from ..control import CONTROL_PARAM, check
from ..cost.telemetry import sampler_for
from ..log_format import setup_process
from ..metrics import OrionMetrics
from ..names import NAMESPACE, SCHEDULER_NAME
from ..runtime.ray_runtime import RayRuntime, close_ray_call, on_head_node
from ..service import SERVICE_METHODS, START_FREE, SchedulerService, guarded_signature
from ..store.open import open_store
from .core import Scheduler


class SchedulerActor:
    """Wrapped with ``ray.remote`` by ``deploy_scheduler``; every public method is async.

    Besides the ``SchedulerService`` methods (generated below the class) it has its own three:
    ``ensure_started``, ``config_dict`` and ``shutdown``."""

    def __init__(
        self, config: dict[str, Any], dashboard_url: Optional[str] = None, control_token: Optional[str] = None
    ):
        # kept as an argument by Ray, so a restarted actor has it again; never in an environment
        self._control_token = control_token
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.config = OrionConfig.model_validate(config)
        setup_process(self.config.orion, service="orion-scheduler")  # spans, log format
        store_cfg = self.config.orion.store
        self.store = open_store(store_cfg, busy_timeout_ms=store_cfg.loop_busy_timeout_ms)
        self.runtime = RayRuntime(NAMESPACE, dashboard_url, control_token=control_token)
        self.scheduler = Scheduler(
            self.store,
            self.runtime,
            self.config.orion.scheduler,
            self.config.orion.policy,
            metrics=OrionMetrics(ray_mirror=True),
            retention=store_cfg.retention,
            # the actor id survives Ray's restarts of this actor and no other actor has it
            lease_holder=f"actor:{ray.get_runtime_context().get_actor_id()}",
            lease_ttl_s=self.config.orion.ha.lease_ttl_s,
            on_lease_lost=_exit_for_restart,
        )
        self.scheduler.pipelines.configure(self.config.orion.pipelines)  # artifact store, containers
        self.scheduler.cost.configure(self.config.orion.cost, self.config.orion.worker_pools)  # prices
        self.scheduler.cost.telemetry = sampler_for(dashboard_url)  # "used" CPU, memory, GPU
        self._start_lock: Optional[asyncio.Lock] = None
        # Start (and recover) without waiting for the first request: queue a call to ourselves.
        ray.get_runtime_context().current_actor.ensure_started.remote()

    async def ensure_started(self) -> str:
        """Start the scheduler (recovery first) once; concurrent callers wait for that one start."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.scheduler.started_at is None:
                await self.scheduler.start()
        return "ok"

    async def config_dict(self, *, control_token: Optional[str] = None) -> dict:
        """The configuration this actor was started with, as JSON."""
        check(getattr(self, "_control_token", None), control_token, "config_dict")
        return self.config.model_dump(mode="json")

    async def shutdown(self, *, control_token: Optional[str] = None) -> None:
        """Stop the loop and the drivers (no start first: stopping must not recover)."""
        check(getattr(self, "_control_token", None), control_token, "shutdown")
        await self.scheduler.stop()
        tracing.flush()  # the spans of the last moments, before Ray may kill the process


def _exit_for_restart() -> None:
    """The lease was lost: leave the process (after the log line is out), so Ray restarts the
    actor and its fresh incarnation waits for the lease before recovering from the store."""
    logging.getLogger("orion.scheduler").error("exiting: Ray restarts this actor, which waits for the lease")
    asyncio.get_running_loop().call_later(0.5, _flush_and_exit)


def _flush_and_exit() -> None:
    """``os._exit`` skips the exit handlers: write the buffered spans first."""
    tracing.flush(timeout_s=2.0)
    os._exit(1)


def _forwarder(name: str, waits_for_start: bool) -> Callable[..., Any]:
    """``SchedulerActor.<name>``: awaits ``self.scheduler.<name>`` with the same arguments.

    It carries the protocol's signature (``__signature__``), so Ray checks a caller's arguments
    against it before the call leaves the caller, and the protocol's docstring."""
    declared = getattr(SchedulerService, name)
    if waits_for_start:

        async def forward(self: SchedulerActor, *args: Any, **kwargs: Any) -> Any:
            check(getattr(self, "_control_token", None), kwargs.pop(CONTROL_PARAM, None), name)
            await self.ensure_started()
            return await getattr(self.scheduler, name)(*args, **kwargs)
    else:

        async def forward(self: SchedulerActor, *args: Any, **kwargs: Any) -> Any:
            check(getattr(self, "_control_token", None), kwargs.pop(CONTROL_PARAM, None), name)
            return await getattr(self.scheduler, name)(*args, **kwargs)

    forward.__name__ = name
    forward.__qualname__ = f"SchedulerActor.{name}"
    forward.__doc__ = declared.__doc__
    # annotations evaluated here (eval_str): the protocol's names are not this module's globals
    # plus the control plane's credential, keyword-only (derived in service.py, not written here)
    forward.__signature__ = guarded_signature(name)  # type: ignore[attr-defined]
    return forward


for _name in SERVICE_METHODS:
    setattr(SchedulerActor, _name, _forwarder(_name, _name not in START_FREE))


def deploy_scheduler(
    config: OrionConfig, dashboard_url: Optional[str] = None, control_token: Optional[str] = None
):
    """Get or create the detached scheduler actor (idempotent: never a second scheduler), guarded
    by ``control_token`` (``None``: unguarded, for tests that drive the actor directly)."""
    cls = close_ray_call(ray.remote(SchedulerActor))
    return cls.options(
        name=SCHEDULER_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        max_concurrency=1000,
        scheduling_strategy=on_head_node(),
    ).remote(config.model_dump(mode="json"), dashboard_url, control_token)


def get_scheduler():
    """The running scheduler actor's handle (raises ``ValueError`` if there is none)."""
    return ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
