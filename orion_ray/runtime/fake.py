"""An in-memory ``Runtime`` for tests: nodes, placement groups, task and job runs that the test
completes, fails or loses at will, with a log of every call in order.

Nothing runs by itself: a group is ready at once (or when the test says, with ``auto_ready=False``),
and a run ends only when the test calls ``complete``, ``fail`` or ``lose`` (a job: ``finish_job``).
Every wait is an ``asyncio`` future, so a test drives the scheduler step by step on its own loop,
with no sleeps and no threads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Optional

from ..policy.fit import NodeView
from .base import JobState

NODE_DIED_UNEXPECTEDLY = 2  # Ray's DeathReason for a node that stopped heartbeating


def fake_node(
    node_id: str, *, gpus: float = 4.0, cpus: float = 8.0, gpu_type: Optional[str] = "A100", pool: str = "gpu"
) -> NodeView:
    """A node as ``Runtime.nodes()`` reports it."""
    total = {"CPU": float(cpus), "memory": 64e9}
    if gpus:
        total["GPU"] = float(gpus)
    labels = {"orion.io/pool": pool}
    if gpus and gpu_type:
        labels["ray.io/accelerator-type"] = gpu_type
    return NodeView(node_id, dict(total), total, labels, available=dict(total))


@dataclass
class FakePG:
    """A placement group: its bundles, the node of each, and whether it is reserved."""

    workload_id: str
    bundles: list[dict[str, float]]
    nodes: list[Optional[str]]
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FakePinned:
    """A pinned task's reservation: one bundle on one node, and no group."""

    workload_id: str
    node_id: str
    bundle: dict[str, float]


@dataclass
class FakeRun:
    """One attempt of a task or a job, ended by the test."""

    workload_id: str
    attempt: int
    kind: str  # "task" | "job"
    launch: dict[str, Any]  # the keyword arguments of start_task / submit_job
    ended: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    job: JobState = field(default_factory=lambda: JobState("RUNNING"))
    logs: str = ""


class FakeRuntime:
    """The ``Runtime`` interface in memory. ``calls`` lists ``(method, workload_id, attempt)``."""

    def __init__(self, nodes: Optional[list[NodeView]] = None, *, auto_ready: bool = True):
        self.alive: dict[str, NodeView] = {n.node_id: n for n in nodes or []}
        self.deaths: dict[str, tuple[int, str]] = {}
        self.pgs: dict[str, FakePG] = {}
        self.pinned: dict[str, FakePinned] = {}  # reservations without a group
        self.runs: dict[str, FakeRun] = {}  # "<workload_id>:<attempt>" → run
        self.auto_ready = auto_ready
        self.serving: dict[str, float] = {}
        self.calls: list[tuple[str, str, Optional[int]]] = []

    # -- what the test does -----------------------------------------------------------------------
    def add_node(self, node: NodeView) -> None:
        """A node joins the cluster."""
        self.alive[node.node_id] = node

    def lose_node(self, node_id: str) -> list[str]:
        """The node dies (Ray records it as an unexpected death). Its runs are left hanging, as
        they are until Orion notices; removing their groups ends them. A pinned task has no group:
        its run ends at once with the node's death, as Ray reports it to the run's owner. Returns
        the workload ids with a bundle there."""
        self.alive.pop(node_id, None)
        self.deaths[node_id] = (NODE_DIED_UNEXPECTEDLY, "missed too many heartbeats")
        pinned = [p.workload_id for p in self.pinned.values() if p.node_id == node_id]
        for run in self._live():
            if run.workload_id in pinned and run.kind == "task":
                self._end(run, {"ok": False, "error": f"NodeDiedError: node {node_id} died"})
        return [pg.workload_id for pg in self.pgs.values() if node_id in pg.nodes] + pinned

    def make_ready(self, workload_id: str) -> None:
        """Ray reserved the group (with ``auto_ready=False``)."""
        self.pgs[workload_id].ready.set()

    def run_of(self, workload_id: str, attempt: Optional[int] = None) -> FakeRun:
        """The workload's run of ``attempt`` (default: its latest)."""
        if attempt is None:
            attempt = max(r.attempt for r in self.runs.values() if r.workload_id == workload_id)
        return self.runs[f"{workload_id}:{attempt}"]

    def complete(self, workload_id: str, result: Any = None, logs: str = "") -> None:
        """The latest task run ends well with ``result``."""
        self._end(self.run_of(workload_id), {"ok": True, "result": result, "logs": logs})

    def fail(self, workload_id: str, error: str = "ValueError: boom", logs: str = "") -> None:
        """The latest task run raises (``error`` is ``"<Type>: <message>"``)."""
        self._end(self.run_of(workload_id), {"ok": False, "error": error, "logs": logs})

    def lose(self, workload_id: str) -> None:
        """The latest task run's Ray objects are gone (e.g. the executor died)."""
        self._end(self.run_of(workload_id), {"ok": False, "lost": True, "error": "lost"})

    def finish_job(
        self,
        workload_id: str,
        status: str = "SUCCEEDED",
        *,
        exit_code: int = 0,
        message: str = "",
        logs: str = "",
    ) -> None:
        """The latest job run reaches ``status`` (``SUCCEEDED``, ``FAILED`` or ``STOPPED``)."""
        run = self.run_of(workload_id)
        run.job = JobState(status, message, exit_code)
        run.logs = logs

    def live_runs(self) -> list[str]:
        """Runs not ended yet, ``<workload_id>:<attempt>``."""
        return sorted(f"{r.workload_id}:{r.attempt}" for r in self._live())

    def _live(self) -> list[FakeRun]:
        return [r for r in self.runs.values() if not r.ended.done() and not r.job.terminal]

    @staticmethod
    def _end(run: FakeRun, envelope: dict) -> None:
        if not run.ended.done():
            run.ended.set_result(envelope)
        if run.kind == "job" and not run.job.terminal:
            run.job = JobState("STOPPED" if envelope.get("ok") is False else "SUCCEEDED")

    # -- the cluster ----------------------------------------------------------------------------
    def nodes(self) -> list[NodeView]:
        return [
            NodeView(
                n.node_id,
                dict(n.total),
                dict(n.total),
                dict(n.labels),
                available=dict(n.available) if n.available is not None else None,
            )
            for n in self.alive.values()
        ]

    def node_deaths(self) -> dict[str, tuple[int, str]]:
        return dict(self.deaths)

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
    ) -> "FakePG | FakePinned":
        if pinned:  # like Ray's adapter: no group, ready at once
            self.calls.append(("pin", workload_id, None))
            if len(bundles) != 1 or not nodes or not nodes[0]:
                raise ValueError("a pinned reservation is one bundle on a given node")
            handle = FakePinned(workload_id, nodes[0], dict(bundles[0]))
            self.pinned[workload_id] = handle
            return handle
        self.calls.append(("create_pg", workload_id, None))
        first = next(iter(self.alive), None)
        pg = FakePG(workload_id, list(bundles), list(nodes) if nodes else [first] * len(bundles))
        if self.auto_ready:
            pg.ready.set()
        self.pgs[workload_id] = pg
        return pg

    async def wait_pg_ready(self, pg: "FakePG | FakePinned", timeout_s: float) -> bool:
        if isinstance(pg, FakePinned):
            return True
        try:
            await asyncio.wait_for(pg.ready.wait(), timeout=timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    def group_ids(self) -> list[str]:
        return [f"fake-{wid}" for wid in self.pgs]

    def pg_nodes(self, pg: "FakePG | FakePinned") -> list[Optional[str]]:
        if isinstance(pg, FakePinned):
            return [pg.node_id]
        return list(pg.nodes)

    async def pg_gpu_ids(self, pg: FakePG, bundle_index: int, gpu: float) -> Optional[list[int]]:
        return None  # unknown: the scheduler keeps the engine's expectation

    def get_pg(self, workload_id: str) -> Optional[FakePG]:
        return self.pgs.get(workload_id)

    def remove_pg(self, workload_id: str) -> bool:
        self.calls.append(("remove_pg", workload_id, None))
        if self.pinned.pop(workload_id, None) is not None:
            return True  # nothing in Ray, and its run is not ended by this (as with Ray)
        pg = self.pgs.pop(workload_id, None)
        if pg is None:
            return False
        for run in list(self.runs.values()):  # removing the group kills what runs inside it
            if run.workload_id == workload_id:
                self._end(run, {"ok": False, "error": "WorkerCrashedError: group removed"})
        return True

    def orion_pg_workloads(self) -> list[str]:
        return list(self.pgs)

    async def serving_gpu_usage(self) -> dict:
        return {"by_tenant": dict(self.serving)}

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
        self.calls.append(("start_task", workload_id, attempt))
        key = f"{workload_id}:{attempt}"
        if key in self.runs or any(r.workload_id == workload_id for r in self._live()):
            raise AssertionError(f"{workload_id} would run twice (attempt {attempt})")
        self.runs[key] = FakeRun(
            workload_id,
            attempt,
            "task",
            {
                "function": function,
                "args": args,
                "kwargs": kwargs,
                "bundle": bundle,
                "runtime_env": runtime_env,
                "tenant_id": tenant_id,
                "traceparent": traceparent,
                "node_id": self.pinned[workload_id].node_id if workload_id in self.pinned else None,
            },
        )
        return key

    async def wait_task(self, workload_id: str, attempt: int) -> dict:
        run = self.runs.get(f"{workload_id}:{attempt}")
        if run is None:
            return {"lost": True, "error": "no such run"}
        return await asyncio.shield(run.ended)

    async def cancel_task(self, workload_id: str, attempt: int) -> None:
        self.calls.append(("cancel_task", workload_id, attempt))
        run = self.runs.get(f"{workload_id}:{attempt}")
        if run is not None:
            self._end(run, {"ok": False, "error": "TaskCancelledError: cancelled"})

    async def stop_task(self, workload_id: str, attempt: int, grace_s: float) -> None:
        self.calls.append(("stop_task", workload_id, attempt))
        run = self.runs.get(f"{workload_id}:{attempt}")
        if run is not None:
            self._end(run, {"ok": False, "error": "TaskCancelledError: stopped"})

    async def forget_task(self, workload_id: str, attempt: int) -> None:
        self.calls.append(("forget_task", workload_id, attempt))

    async def task_runs(self) -> set[str]:
        return {k for k, r in self.runs.items() if r.kind == "task" and not r.ended.done()}

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
        self.calls.append(("submit_job", workload_id, attempt))
        key = f"{workload_id}:{attempt}"
        if key not in self.runs:  # idempotent, like Ray's submission ids
            if any(r.workload_id == workload_id for r in self._live()):
                raise AssertionError(f"{workload_id} would run twice (attempt {attempt})")
            self.runs[key] = FakeRun(
                workload_id,
                attempt,
                "job",
                {
                    "entrypoint": entrypoint,
                    "bundle": bundle,
                    "runtime_env": runtime_env,
                    "metadata": metadata,
                },
            )
        return f"orion-{workload_id}-{attempt}"

    async def job_state(self, workload_id: str, attempt: int) -> Optional[JobState]:
        run = self.runs.get(f"{workload_id}:{attempt}")
        if run is None or run.ended.done() and run.ended.result().get("lost"):
            return None
        return run.job

    async def stop_job(self, workload_id: str, attempt: int) -> None:
        self.calls.append(("stop_job", workload_id, attempt))
        run = self.runs.get(f"{workload_id}:{attempt}")
        if run is not None and not run.job.terminal:
            run.job = JobState("STOPPED", "stopped")
            if not run.ended.done():
                run.ended.set_result({"ok": False, "error": "stopped"})

    async def job_logs(self, workload_id: str, attempt: int) -> Optional[str]:
        run = self.runs.get(f"{workload_id}:{attempt}")
        return None if run is None else run.logs
