"""What the scheduler needs from a runtime, declared once: ``Runtime`` is the interface
``RayRuntime`` implements and ``runtime/fake.py`` imitates in memory for tests.

Only what the scheduler (cycle, drivers, recovery, node operations, serving usage) calls is here;
``RayRuntime``'s other public helpers (the executor handle, the dashboard URL) are its own business.
This module imports nothing from Ray, so policy-side code and tests may use its types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

from ..policy.fit import NodeView


@dataclass
class JobState:
    """A Ray job's state as the Jobs API reports it."""

    status: str  # PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
    message: str = ""
    exit_code: Optional[int] = None

    @property
    def terminal(self) -> bool:
        """The job has ended (successfully or not)."""
        return self.status in ("SUCCEEDED", "FAILED", "STOPPED")


class Runtime(Protocol):
    """Placement groups, task runs and Ray jobs, named after the workload (see ``ray_runtime``).

    A placement group is ``orion-<workload_id>``; a task run is keyed ``<workload_id>:<attempt>``
    and a job run has the submission id ``orion-<workload_id>-<attempt>``, so a restarted scheduler
    finds every object again and one attempt is never launched twice.
    """

    # -- the cluster ----------------------------------------------------------------------------
    def nodes(self) -> list[NodeView]:
        """Alive nodes with totals and labels (fresh copies: callers may change ``free``)."""
        ...

    def node_deaths(self) -> dict[str, tuple[int, str]]:
        """Why each dead node died: ``{node_id: (Ray's DeathReason, message)}``."""
        ...

    # -- placement groups -----------------------------------------------------------------------
    def create_pg(
        self,
        workload_id: str,
        bundles: list[dict[str, float]],
        strategy: str,
        nodes: Optional[list[str]] = None,
        gpu_types: Optional[list[Optional[str]]] = None,
        *,
        pinned: bool = False,
    ) -> Any:
        """Create the workload's group, each bundle pinned to ``nodes[i]`` when given.

        ``pinned`` (one bundle, ``nodes`` given): no group at all, only a handle that launches the
        task on ``nodes[0]`` with the bundle's resources; ready at once, nothing to remove."""
        ...

    async def wait_pg_ready(self, pg: Any, timeout_s: float) -> bool:
        """``True`` once the group is reserved; ``False`` after ``timeout_s``."""
        ...

    def group_ids(self) -> list[str]:
        """Ray's hex id of every group this runtime created and still holds: the autoscaler
        leaves them out of Ray's pending demand (Orion counts their gangs itself)."""
        ...

    def pg_nodes(self, pg: Any) -> list[Optional[str]]:
        """The node of each bundle of a ready group."""
        ...

    async def pg_gpu_ids(self, pg: Any, bundle_index: int, gpu: float) -> Optional[list[int]]:
        """The GPU indices Ray gave a shared-GPU bundle (``None`` if unknown)."""
        ...

    def get_pg(self, workload_id: str) -> Any:
        """The workload's live group, or ``None``."""
        ...

    def remove_pg(self, workload_id: str) -> bool:
        """Remove the workload's group (stops what runs in it); ``False`` if there was none."""
        ...

    def orion_pg_workloads(self) -> list[str]:
        """Workload ids of every live Orion group (for orphan clean-up)."""
        ...

    async def serving_gpu_usage(self) -> dict:
        """GPUs serving replicas hold, ``{"by_tenant": {tenant: gpus}}``."""
        ...

    # -- task runs ------------------------------------------------------------------------------
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
        """Start one attempt of a task inside the workload's group (a pinned one on its node, in
        worker processes shared only with the same ``tenant_id``'s pinned tasks)."""
        ...

    async def wait_task(self, workload_id: str, attempt: int) -> dict:
        """The run's envelope once it ends: ``ok``, ``result``, ``error``, ``logs``, ``lost``."""
        ...

    async def cancel_task(self, workload_id: str, attempt: int) -> None:
        """Cancel the run now (best effort)."""
        ...

    async def stop_task(self, workload_id: str, attempt: int, grace_s: float) -> None:
        """Interrupt the run, forced after ``grace_s``."""
        ...

    async def forget_task(self, workload_id: str, attempt: int) -> None:
        """Drop an ended run's record."""
        ...

    async def task_runs(self) -> set[str]:
        """``<workload_id>:<attempt>`` of every run still owned."""
        ...

    # -- job runs -------------------------------------------------------------------------------
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
        """Submit one attempt of a Ray job whose work runs in the workload's group."""
        ...

    async def job_state(self, workload_id: str, attempt: int) -> Optional[JobState]:
        """The attempt's state, or ``None`` if Ray does not know it."""
        ...

    async def stop_job(self, workload_id: str, attempt: int) -> None:
        """Stop the attempt (best effort)."""
        ...

    async def job_logs(self, workload_id: str, attempt: int) -> Optional[str]:
        """The attempt's driver logs, or ``None``."""
        ...
