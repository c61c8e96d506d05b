"""The Ray adapter: every Ray call the scheduler makes goes through here.

The scheduler receives a runtime object with the ``runtime.base.Runtime`` interface; unit tests pass
``runtime.fake.FakeRuntime``. Ray objects
are named after the workload so a restarted scheduler can find them again: placement group
``orion-<workload_id>`` and Ray job submission id ``orion-<workload_id>-<attempt>``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import ray
from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from ..control import credential
from ..names import NAMESPACE, SERVING_NAME
from ..policy.fit import NodeView
from .base import JobState
from .conventions import job_driver_options
from .executor_host import start_executor

NODE_ID_LABEL = "ray.io/node-id"
NODES_TTL_S = 1.0


def pg_name(workload_id: str) -> str:
    return f"orion-{workload_id}"


def job_submission_id(workload_id: str, attempt: int) -> str:
    return f"orion-{workload_id}-{attempt}"


def head_node_id() -> str:
    """The id of the head node (where Orion's control plane is pinned)."""
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return node["NodeID"]
    raise RuntimeError("no alive head node in this Ray cluster")


def serving_gpu_usage(
    namespace: str = NAMESPACE, timeout_s: float = 5.0, control_token: Optional[str] = None
) -> dict:
    """GPUs held by serving replicas, for the scheduler's account of the cluster:
    ``{"total", "by_tenant", "by_deployment"}``; all zero when serving is not running.

    The serving manager is reached by its actor name (``names.SERVING_NAME``), so this adapter
    needs no import of the serving package."""
    try:
        actor = ray.get_actor(SERVING_NAME, namespace=namespace)
    except ValueError:
        return {"total": 0.0, "by_tenant": {}, "by_deployment": {}}
    return ray.get(actor.call.remote("gpu_usage", **credential(control_token)), timeout=timeout_s)


def close_ray_call(actor_cls: Any) -> Any:
    """``actor_cls`` (a ``ray.remote`` class) with Ray's ``__ray_call__`` — which runs any closure
    on the actor, its state and its credential included — needing the control plane's credential
    too. Ray adds the method on a subclass it makes (``modified_class``), so it is replaced there,
    before the class is first exported by ``.remote()``."""
    from ..control import guarded_ray_call

    actor_cls.__ray_metadata__.modified_class.__ray_call__ = guarded_ray_call()
    return actor_cls


def on_head_node() -> NodeAffinitySchedulingStrategy:
    """Scheduling strategy that pins an actor to the head node (hard affinity)."""
    return NodeAffinitySchedulingStrategy(head_node_id(), soft=False)


class PendingPG:
    """A placement group being created on the runtime's GCS thread: what ``create_pg`` returns at
    once, so the scheduler's event loop never waits for the creation RPC. ``nodes`` are the nodes
    its bundles were pinned to (then Ray can place them nowhere else)."""

    def __init__(self, future: "Future[PlacementGroup]", nodes: Optional[list[str]]):
        self.future = future
        self.nodes = list(nodes) if nodes else None

    def result(self) -> PlacementGroup:
        """The created group (blocks only while its creation RPC is in flight)."""
        return self.future.result()


@dataclass(frozen=True)
class Pinned:
    """A single-bundle task's reservation without a placement group: what ``create_pg(...,
    pinned=True)`` returns. Orion holds ``bundle`` on ``node_id`` in its own account; Ray only sees
    the task itself, launched there with a hard node affinity."""

    workload_id: str
    node_id: str
    bundle: dict[str, float]


@ray.remote(num_cpus=0, max_retries=0)
def _gpu_probe() -> list:
    return list(ray.get_gpu_ids())


class RayRuntime:
    """Placement groups, task workloads (through ``orion-executor``) and Ray jobs."""

    def __init__(
        self,
        namespace: str = NAMESPACE,
        dashboard_url: Optional[str] = None,
        control_token: Optional[str] = None,
    ):
        self.namespace = namespace
        # the control plane's credential: every executor and serving call carries it
        self.control_token = control_token
        self._dashboard_url = dashboard_url
        self._jobs_client = None
        self._executor = None
        self._nodes_cache: Optional[tuple[float, list[NodeView]]] = None
        self._deaths: dict[str, tuple[int, str]] = {}  # dead node → (Ray's reason, message)
        # GCS round trips leave the caller's event loop. Writes (create, remove) go through one
        # thread, in order: a group removed and a group then created on its capacity (or under
        # the same name) reach the GCS in that order. Reads of the node table use another.
        self._gcs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orion-gcs")
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orion-gcs-read")
        self._refreshing = False
        self._pgs: dict[str, PlacementGroup] = {}  # created here, by workload (no name lookup)
        self._pinned: dict[str, Pinned] = {}  # pinned tasks' reservations (no group in Ray)

    # -- cluster snapshot ----------------------------------------------------------------------
    def nodes(self) -> list[NodeView]:
        """Alive nodes with their total resources and labels (free capacity is Orion's to compute).

        ``ray.nodes()`` is a GCS round trip; membership changes slowly, so the answer is cached,
        and once it is older than ``NODES_TTL_S`` it is refreshed on a background thread while the
        caller gets the last one (only the very first read waits). Fresh copies are returned:
        callers may change ``free``.
        """
        now = time.monotonic()
        if self._nodes_cache is None:
            self._nodes_cache = (now, self._read_nodes())
        elif now - self._nodes_cache[0] > NODES_TTL_S and not self._refreshing:
            self._refreshing = True
            self._reads.submit(self._refresh_nodes)
        return [
            NodeView(n.node_id, dict(n.free), n.total, n.labels, available=n.available)
            for n in self._nodes_cache[1]
        ]

    def node_deaths(self) -> dict[str, tuple[int, str]]:
        """Why each dead node died, as the GCS says (``DeathReason``: 1 expected termination,
        2 unexpected — e.g. missed heartbeats —, 3/4 drained by the autoscaler), with its
        message; read with ``nodes()``."""
        return dict(self._deaths)

    def _refresh_nodes(self) -> None:
        try:
            self._nodes_cache = (time.monotonic(), self._read_nodes())
        except Exception:  # a busy GCS: keep the last answer, the next call tries again
            pass
        finally:
            self._refreshing = False

    def _read_nodes(self) -> list[NodeView]:
        from ray._private.state import available_resources_per_node

        try:
            available = available_resources_per_node()
        except Exception:  # an older or busy GCS: Orion's own accounting still holds
            available = {}
        out = []
        for n in ray.nodes():
            if not n.get("Alive"):
                self._deaths[n["NodeID"]] = (
                    int(n.get("DeathReason") or 0),
                    str(n.get("DeathReasonMessage") or ""),
                )
                continue
            total = {
                k: float(v)
                for k, v in n.get("Resources", {}).items()
                if not k.startswith("node:") and "_group_" not in k and k != "object_store_memory"
            }
            avail = available.get(n["NodeID"])
            out.append(
                NodeView(
                    node_id=n["NodeID"],
                    free=dict(total),
                    total=total,
                    labels=dict(n.get("Labels") or {}),
                    available={k: float(v) for k, v in avail.items()} if avail is not None else None,
                )
            )
        return out

    # -- placement groups ----------------------------------------------------------------------
    def create_pg(
        self,
        workload_id: str,
        bundles: list[dict[str, float]],
        strategy: str,
        nodes: Optional[list[str]] = None,
        gpu_types: Optional[list[Optional[str]]] = None,
        *,
        pinned: bool = False,
    ) -> "PendingPG | Pinned":
        """Create the workload's detached, named placement group, bundles pinned to ``nodes``,
        on the GCS thread; returns at once (``wait_pg_ready`` waits for the creation too).

        ``pinned``: no group — a ``Pinned`` handle for one bundle on ``nodes[0]``, which
        ``start_task`` launches there with a hard node affinity (no GCS call at all)."""
        if pinned:
            if len(bundles) != 1 or not nodes or not nodes[0]:
                raise ValueError("a pinned reservation is one bundle on a given node")
            handle = Pinned(workload_id, nodes[0], dict(bundles[0]))
            self._pinned[workload_id] = handle
            return handle
        selectors = []
        for i, _ in enumerate(bundles):
            sel: dict[str, str] = {}
            if nodes:
                sel[NODE_ID_LABEL] = nodes[i]
            if gpu_types and gpu_types[i]:
                sel["ray.io/accelerator-type"] = gpu_types[i]
            selectors.append(sel)
        kwargs: dict[str, Any] = {}
        if any(selectors):
            kwargs["bundle_label_selector"] = selectors

        def create() -> PlacementGroup:
            pg = placement_group(
                bundles, strategy=strategy, name=pg_name(workload_id), lifetime="detached", **kwargs
            )
            self._pgs[workload_id] = pg
            return pg

        pinned = nodes if nodes and all(nodes) and len(nodes) == len(bundles) else None
        return PendingPG(self._gcs.submit(create), pinned)

    def group_ids(self) -> list[str]:
        """Hex ids of the groups created here and not yet removed."""
        return [pg.id.hex() for pg in list(self._pgs.values())]

    async def wait_pg_ready(self, pg: Any, timeout_s: float) -> bool:
        """Whether the group is reserved within ``timeout_s``; a refused creation raises."""

        if isinstance(pg, Pinned):  # nothing to wait for: Ray queues the task on its node
            return True

        async def ready() -> None:
            group = await asyncio.wrap_future(pg.future) if isinstance(pg, PendingPG) else pg
            await group.ready()

        try:
            await asyncio.wait_for(ready(), timeout=timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    def pg_nodes(self, pg: Any) -> list[str]:
        """Node id of each bundle of a ready group (the pinned nodes need no GCS read)."""
        if isinstance(pg, Pinned):
            return [pg.node_id]
        if isinstance(pg, PendingPG):
            if pg.nodes is not None:
                return list(pg.nodes)
            pg = pg.result()
        table = placement_group_table(pg)
        mapping = table.get("bundles_to_node_id", {})
        return [mapping.get(i) for i in range(len(table.get("bundles", {})))]

    async def pg_gpu_ids(
        self, pg: PlacementGroup, bundle_index: int, gpu: float, timeout_s: float = 10.0
    ) -> Optional[list[int]]:
        """The GPU indices Ray assigned to a bundle, read by a probe task inside it.

        Ray picks the device of a fractional-GPU bundle itself when the group is created; there is
        no API that reports it, but a task in the bundle asking for the same fraction gets exactly
        those devices. ``None`` if the probe does not answer in time.
        """
        if isinstance(pg, Pinned):  # never shared-GPU (those keep their group)
            return None
        if isinstance(pg, PendingPG):
            pg = pg.result()
        ref = _gpu_probe.options(
            num_cpus=0, num_gpus=gpu, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, bundle_index)
        ).remote()
        try:
            ids = await asyncio.wait_for(ref, timeout=timeout_s)
        except Exception:  # timeout, or the group vanished (cancelled meanwhile)
            ray.cancel(ref, force=True)
            return None
        return sorted(int(i) for i in ids)

    def get_pg(self, workload_id: str) -> Optional[PlacementGroup]:
        try:
            return get_placement_group(pg_name(workload_id))
        except ValueError:
            return None

    def pg_is_ready(self, pg: PlacementGroup) -> bool:
        return placement_group_table(pg).get("state") == "CREATED"

    def remove_pg(self, workload_id: str) -> bool:
        """Remove the workload's group, on the GCS thread (after any creation asked before it);
        returns at once. A pinned reservation has nothing in Ray: it is only forgotten (no GCS
        call; its task is stopped by cancel/stop, not by this)."""
        if self._pinned.pop(workload_id, None) is not None:
            return True

        def remove() -> None:
            pg = self._pgs.pop(workload_id, None) or self.get_pg(workload_id)
            if pg is None:
                return
            try:
                remove_placement_group(pg)
            except Exception:  # already removed
                pass

        self._gcs.submit(remove)
        return True

    def orion_pg_workloads(self) -> list[str]:
        """Workload ids of every live Orion placement group (for orphan clean-up)."""
        out = []
        for info in placement_group_table().values():
            name = info.get("name") or ""
            if name.startswith("orion-") and info.get("state") != "REMOVED":
                out.append(name[len("orion-") :])
        return out

    async def serving_gpu_usage(self) -> dict:
        """GPUs serving replicas hold, by tenant (``{}`` parts when serving is not running)."""
        return await asyncio.to_thread(serving_gpu_usage, self.namespace, 5.0, self.control_token)

    # -- task workloads ------------------------------------------------------------------------
    def executor(self):
        """``orion-executor``: normally created by its host job (``executor_host``, started by
        ``orion up``) so that its workers are reused; created here when there is no host."""
        if self._executor is None:
            self._executor = start_executor(
                self.namespace, scheduling_strategy=on_head_node(), control_token=self.control_token
            )
        return self._executor

    async def start_task(
        self,
        workload_id: str,
        attempt: int,
        *,
        function: str,
        args: list,
        kwargs: dict,
        bundle: dict[str, float],
        runtime_env: Optional[dict],
        max_result_bytes: int,
        max_log_bytes: int,
        tenant_id: Optional[str] = None,
        allowed_modules: tuple[str, ...] = (),
        traceparent: Optional[str] = None,
    ) -> str:
        """Start one attempt of a task in the workload's group (through ``orion-executor``); a
        pinned one on its node, with its tenant's worker marker."""
        pin = self._pinned.get(workload_id)
        return await self.executor().start.remote(
            workload_id,
            attempt,
            function=function,
            args=args,
            kwargs=kwargs,
            pg_name="" if pin else pg_name(workload_id),
            bundle=bundle,
            runtime_env=runtime_env,
            max_result_bytes=max_result_bytes,
            max_log_bytes=max_log_bytes,
            node_id=pin.node_id if pin else None,
            tenant_id=tenant_id,
            allowed_modules=tuple(allowed_modules),
            **({"traceparent": traceparent} if traceparent else {}),
            **credential(self.control_token),
        )

    async def wait_task(self, workload_id: str, attempt: int) -> dict:
        try:
            return await self.executor().wait.remote(workload_id, attempt, **credential(self.control_token))
        except ray.exceptions.RayActorError as exc:  # ActorUnavailableError included
            # the executor died (or is restarting empty): the runs it owned died with it
            return {"lost": True, "error": f"executor died: {exc}"[:2000]}

    async def cancel_task(self, workload_id: str, attempt: int) -> None:
        """Best effort: if the executor is gone, so is every run it owned."""
        try:
            await self.executor().cancel.remote(workload_id, attempt, **credential(self.control_token))
        except ray.exceptions.RayActorError:
            pass

    async def stop_task(self, workload_id: str, attempt: int, grace_s: float) -> None:
        """Graceful stop: the task is interrupted, and forced after ``grace_s``."""
        try:
            await self.executor().stop.remote(workload_id, attempt, grace_s, **credential(self.control_token))
        except ray.exceptions.RayActorError:
            pass

    async def forget_task(self, workload_id: str, attempt: int) -> None:
        try:
            await self.executor().forget.remote(workload_id, attempt, **credential(self.control_token))
        except ray.exceptions.RayActorError:
            pass

    async def task_runs(self) -> set[str]:
        """``<workload_id>:<attempt>`` of every run the executor still owns."""
        return set(await self.executor().runs.remote(**credential(self.control_token)))

    # -- job workloads -------------------------------------------------------------------------
    def _jobs(self):
        if self._jobs_client is None:
            from ray.job_submission import JobSubmissionClient

            self._jobs_client = JobSubmissionClient(self.dashboard_url())
        return self._jobs_client

    def dashboard_url(self) -> str:
        if self._dashboard_url is None:
            from ray._private import ray_constants
            from ray.experimental.internal_kv import _internal_kv_get

            addr = _internal_kv_get(
                ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD
            )
            if not addr:
                raise RuntimeError("the Ray dashboard is not running (needed by the Jobs API)")
            self._dashboard_url = "http://" + addr.decode()
        return self._dashboard_url

    async def submit_job(
        self,
        workload_id: str,
        attempt: int,
        *,
        entrypoint: str,
        bundle: dict[str, float],
        runtime_env: Optional[dict],
        metadata: dict[str, str],
    ) -> str:
        """Submit one attempt as a Ray job whose work the runner places in the workload's group."""
        sid = job_submission_id(workload_id, attempt)
        wrapped = (
            f"{shlex.quote(sys.executable)} -m orion_ray.runtime.job_runner "
            f"--pg {pg_name(workload_id)} --namespace {self.namespace} "
            f"--address {shlex.quote(ray.get_runtime_context().gcs_address)} "
            f"--bundle {shlex.quote(json.dumps(bundle))} -- {shlex.quote(entrypoint)}"
        )
        env = dict(runtime_env or {})
        env["env_vars"] = {**(env.get("env_vars") or {}), "ORION_WORKLOAD_ID": workload_id}
        if metadata.get("orion_traceparent"):  # the job's processes join the run's trace
            env["env_vars"]["TRACEPARENT"] = metadata["orion_traceparent"]

        def submit():
            placement = job_driver_options(ray.cluster_resources())
            try:
                return self._jobs().submit_job(
                    entrypoint=wrapped, submission_id=sid, runtime_env=env, metadata=metadata, **placement
                )
            except RuntimeError as exc:
                if "already exists" in str(exc):  # idempotent: adopt the existing submission
                    return sid
                raise

        return await asyncio.to_thread(submit)

    async def job_state(self, workload_id: str, attempt: int) -> Optional[JobState]:
        sid = job_submission_id(workload_id, attempt)

        def info():
            try:
                return self._jobs().get_job_info(sid)
            except RuntimeError:  # unknown submission id
                return None

        job = await asyncio.to_thread(info)
        if job is None:
            return None
        return JobState(
            status=str(job.status.value if hasattr(job.status, "value") else job.status),
            message=job.message or "",
            exit_code=job.driver_exit_code,
        )

    async def stop_job(self, workload_id: str, attempt: int) -> None:
        sid = job_submission_id(workload_id, attempt)

        def stop():
            try:
                self._jobs().stop_job(sid)
            except RuntimeError:
                pass

        await asyncio.to_thread(stop)

    async def job_logs(self, workload_id: str, attempt: int) -> Optional[str]:
        sid = job_submission_id(workload_id, attempt)

        def logs():
            try:
                return self._jobs().get_job_logs(sid)
            except RuntimeError:
                return None

        return await asyncio.to_thread(logs)
