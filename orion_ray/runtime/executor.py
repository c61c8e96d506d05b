"""``orion-executor``: the detached actor that owns the Ray tasks of task workloads.

Ray kills a task when its owner dies. Owning the tasks here, not in the scheduler actor, lets a task
outlive a crash of the scheduler; the restarted scheduler asks this actor what is still running and
adopts it. Runs are keyed ``<workload_id>:<attempt>`` and ``start`` is idempotent, so an attempt is
never started twice.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import ray
from ray.util.placement_group import get_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from ..control import check
from ..names import EXECUTOR_NAME, NAMESPACE
from .task_runner import run_callable

__all__ = ["EXECUTOR_NAME", "TaskExecutor"]


def _key(workload_id: str, attempt: int) -> str:
    return f"{workload_id}:{attempt}"


def tenant_env(runtime_env: Optional[dict], tenant_id: Optional[str]) -> dict:
    """``runtime_env`` with the tenant's marker ``ORION_TENANT``: Ray reuses a worker process only
    for tasks with the same runtime_env, so tasks (pinned, or in a group: an idle worker outlives
    its group) share workers within a tenant, never across tenants. Per tenant, not per task: a runtime_env
    that differs per task would start a fresh worker for every run."""
    env = dict(runtime_env or {})
    env["env_vars"] = {**(env.get("env_vars") or {}), "ORION_TENANT": tenant_id or "default"}
    return env


class TaskExecutor:
    """Starts, waits on and cancels task workloads (wrapped by ``ray.remote`` in ``ray_runtime``)."""

    def __init__(self, namespace: str = NAMESPACE, control_token: Optional[str] = None):
        self.namespace = namespace
        # every method but ``has``/``ping`` (liveness probes) needs the control plane's
        # credential: without it a task could start, stop or read any tenant's runs
        self._control_token = control_token
        self._runs: dict[str, ray.ObjectRef] = {}
        # One remote function for every run: a new one per task would be exported to the GCS
        # again and fetched by the worker each time (``options`` per run costs neither).
        self._run_callable = ray.remote(run_callable)

    def start(
        self,
        workload_id: str,
        attempt: int,
        *,
        function: str,
        args: list,
        kwargs: dict,
        pg_name: str,
        bundle: dict[str, float],
        runtime_env: Optional[dict],
        max_result_bytes: int,
        max_log_bytes: int,
        node_id: Optional[str] = None,
        tenant_id: Optional[str] = None,
        allowed_modules: tuple[str, ...] = (),
        control_token: Optional[str] = None,
        traceparent: Optional[str] = None,
    ) -> str:
        """Start one attempt in the workload's group ``pg_name``, or — ``node_id`` given, a pinned
        task — on that node with the bundle's resources and no group; idempotent per attempt."""
        check(self._control_token, control_token, "start")
        key = _key(workload_id, attempt)
        if key in self._runs:  # idempotent: a repeated start never runs the attempt twice
            return self._runs[key].task_id().hex()
        strategy: Any
        # Both paths: a worker that ran a task in a removed group goes back to the idle pool and
        # Ray hands it to the next task of the same job and runtime_env, group or not, so without
        # the marker a tenant's task could run in a process another tenant's code has shaped.
        runtime_env = tenant_env(runtime_env, tenant_id)
        if node_id:
            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
            pg_name = ""
        else:
            strategy = PlacementGroupSchedulingStrategy(
                get_placement_group(pg_name),
                placement_group_bundle_index=0,
                placement_group_capture_child_tasks=True,
            )
        custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory")}
        # Orion's variables travel as an argument, not in runtime_env: a runtime_env that differs
        # per task makes Ray start a fresh worker process for every run (~1 s each).
        orion_env = {
            "ORION_WORKLOAD_ID": workload_id,
            "ORION_PLACEMENT_GROUP": pg_name,
            "ORION_NAMESPACE": self.namespace,
            # the tenant Orion runs this for (an inference's visibility comes from here, never
            # from the request: run_inference reads it)
            "ORION_TENANT_ID": tenant_id or "default",
        }
        if traceparent:  # the run span's context: tenant code with its own tracing joins the trace
            orion_env["TRACEPARENT"] = traceparent
        options = {"runtime_env": runtime_env} if runtime_env else {}
        remote_fn = self._run_callable.options(
            name=f"orion-{workload_id}-{attempt}",
            max_retries=0,
            num_cpus=bundle.get("CPU", 0),
            num_gpus=bundle.get("GPU", 0),
            memory=bundle.get("memory") or None,
            resources=custom or None,
            scheduling_strategy=strategy,
            **options,
        )
        ref = remote_fn.remote(
            function, args, kwargs, max_result_bytes, max_log_bytes, orion_env, tuple(allowed_modules)
        )
        self._runs[key] = ref
        return ref.task_id().hex()

    async def wait(
        self, workload_id: str, attempt: int, *, control_token: Optional[str] = None
    ) -> dict[str, Any]:
        """The run's envelope once it ends; ``{"lost": True}`` if this executor never started it."""
        check(self._control_token, control_token, "wait")
        ref = self._runs.get(_key(workload_id, attempt))
        if ref is None:
            return {"lost": True}
        try:
            return await ref
        except ray.exceptions.TaskCancelledError:
            return {"ok": False, "cancelled": True, "error": "cancelled"}
        except Exception as exc:  # worker crash, OOM kill, node loss, placement group removed
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:4000]}
        finally:
            await asyncio.sleep(0)

    def cancel(self, workload_id: str, attempt: int, *, control_token: Optional[str] = None) -> bool:
        """Force the run to stop now."""
        check(self._control_token, control_token, "cancel")
        ref = self._runs.pop(_key(workload_id, attempt), None)
        if ref is None:
            return False
        ray.cancel(ref, force=True)
        return True

    async def stop(
        self, workload_id: str, attempt: int, grace_s: float, *, control_token: Optional[str] = None
    ) -> bool:
        """Tell the run to stop (``KeyboardInterrupt`` in the task), wait up to ``grace_s`` for it
        to end, then force it. The run's ``wait`` reports it as cancelled."""
        check(self._control_token, control_token, "stop")
        ref = self._runs.get(_key(workload_id, attempt))
        if ref is None:
            return False
        ray.cancel(ref, force=False)
        done, _ = await asyncio.to_thread(ray.wait, [ref], timeout=grace_s)
        if not done:
            ray.cancel(ref, force=True)
        self._runs.pop(_key(workload_id, attempt), None)
        return True

    def forget(self, workload_id: str, attempt: int, *, control_token: Optional[str] = None) -> None:
        """Drop the run from this executor's account (it has ended)."""
        check(self._control_token, control_token, "forget")
        self._runs.pop(_key(workload_id, attempt), None)

    def has(self, workload_id: str, attempt: int) -> bool:
        return _key(workload_id, attempt) in self._runs

    def runs(self, *, control_token: Optional[str] = None) -> list[str]:
        """``<workload_id>:<attempt>`` of every run (every tenant's: guarded)."""
        check(self._control_token, control_token, "runs")
        return list(self._runs)

    def ping(self) -> str:
        return "ok"
