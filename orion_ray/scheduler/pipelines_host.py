"""The scheduler hosts the pipeline controller (issue 16): its loop reconciles the unfinished
pipeline runs each tick, and its service answers the ``/api/orch`` calls.

Why in the scheduler's loop rather than a detached ``orion-pipelines`` actor (for now): the
scheduler is already the store's one writer process, detached, restarted by Ray and guarded by
the control credential; a reconcile's node workloads are in the store in the same transaction as
its node rows and the scheduler takes them in at once (``ingest.pull``), with no second process
contending for SQLite's write lock; and a node's cancel is the scheduler's own ``cancel``. The
controller (``pipelines/controller.py``) knows only the store, so moving it to its own actor later
changes this module only. The cost: reconciles run between the cycle's slices (bounded pages).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..config import PipelinesConfig
from ..errors import NotFound, ValidationError
from ..models import WorkloadSpec
from ..pipelines import lineage, node_logs, ops_metrics, runs_store
from ..pipelines.controller import PipelineController
from ..pipelines.intake import accept
from ..pipelines.outputs import DEFAULT_MAX_BYTES, data_flow, has_container_runtime, read_output
from ..pipelines.progress import status_body
from ..pipelines.retry_run import retry_run
from ..pipelines.sql_kind import SQL_RUNNER
from ..trust import runtime_env_problems
from . import intake
from .every import Every
from .schedules_host import ScheduleHost

if TYPE_CHECKING:
    from .core import Scheduler

log = logging.getLogger("orion.pipelines")
TICK_S = 0.25  # the controller's tick at least this often (and when woken); it sweeps every run each SWEEP_S


class PipelineHost:
    """The controller in the scheduler's loop, and the pipeline calls of its service."""

    def __init__(self, sched: "Scheduler"):
        self.s = sched
        self.controller = PipelineController(
            sched.store,
            clock=sched.clock,
            max_queue_size=sched.config.max_queue_size,
            tenant_limit=lambda t: sched.policy_config.tenant_queue_limit(
                sched.tenants.get(t), sched.config.max_queue_size
            ),
        )
        self.every = Every(TICK_S, sched.clock)
        self.configure(None)
        self._pending: set[asyncio.Task] = set()
        self.schedules = ScheduleHost(self)  # cron slots and event triggers (schedules_host.py)

    def tick(self, woken: bool) -> int:
        """Reconcile when due (or woken: a workload moved, a run arrived); start the cancels it
        asks for. Returns how many workloads it submitted or changed."""
        if not hasattr(self.s.store, "_tx") or not self.every.due(force=woken):
            return 0
        before = self.controller.transitions
        fired = self.schedules.tick()  # first: the runs it stores are reconciled in this tick
        for wid in self.controller.tick():
            task = asyncio.ensure_future(self._cancel(wid))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return self.controller.transitions - before + fired

    def refresh_metrics(self) -> None:
        """The pipeline metrics (``ops_metrics.py``): gauges from the store, and what the
        controller saw since the last refresh; with the scheduler's other gauges
        (``refresh_gauges``: periodically and at a scrape). Never raises: metrics must not stop
        the loop."""
        try:
            runs, nodes = ops_metrics.counts(self.s.store)
            retries, durations = self.controller.observed.drain()
            self.s.metrics.pipelines(
                runs=runs,
                nodes=nodes,
                queued=ops_metrics.queued_tasks(self.s.book.active.values()),
                retries=retries,
                durations=durations,
            )
        except Exception:
            log.debug("pipeline metrics not refreshed", exc_info=True)

    def stats(self) -> dict[str, Any]:
        """The controller's counters since this scheduler started (``/health``'s ``pipelines``):
        node transitions written, reconciles, and seconds spent in its ticks (transitions per
        second of controller time is the ``pipelines`` benchmark's figure)."""
        c = self.controller
        return {
            "transitions": c.transitions,
            "reconciles": c.reconciles,
            "ticks": c.ticks,
            "busy_s": round(c.busy_s, 6),
            "cpu_s": round(c.cpu_s, 6),
        }

    async def _cancel(self, workload_id: str) -> None:
        try:
            await self.s.cancel(workload_id, None, "pipelines")
        except Exception:  # asked again at the next tick while the run is cancelling
            log.warning("cancel of %s failed", workload_id, exc_info=True)

    def configure(self, cfg: Optional[PipelinesConfig]) -> None:
        """Take ``orion.pipelines``: the artifact store of large outputs (default: ``artifacts/``
        next to the store file) and whether ``image`` nodes may run here."""
        self.controller.data = data_flow(cfg, store_path=getattr(self.s.store, "path", None))
        self.container_runtime = has_container_runtime(cfg)

    # -- the service's calls -----------------------------------------------------------------------
    def submit(self, body: dict[str, Any], tenant_id: str, who: Optional[str]) -> dict[str, Any]:
        check = self.checker(tenant_id, who)
        run, node_ids = accept(
            body,
            tenant_id=tenant_id,
            now=self.s.clock(),
            check=check,
            container_runtime=self.container_runtime,
        )
        run, _created = runs_store.create_run(self.s.store, run, node_ids, who=who or tenant_id)
        self.controller.touch(run.run_id)
        self.s.wake()
        return {"submission_id": run.submission_id, "state": run.status}

    def checker(self, tenant_id: str, who: Optional[str]) -> Callable[[WorkloadSpec], None]:
        """The checks a node's workload passes at the door for ``tenant_id`` submitting as ``who``
        (a submit, or a schedule's fire on behalf of whoever created it)."""
        by_admin = who == "admin"

        def check(spec: WorkloadSpec) -> None:
            env = dict(spec.runtime_env or {})
            if self.container_runtime:  # an image node's container, set by Orion (image_kind.py)
                env.pop("image_uri", None)
            if not by_admin:  # a tenant's environment goes through the allowlist, as on /workloads
                problems = runtime_env_problems(env)
                if problems:
                    raise ValidationError("runtime_env is not allowed", problems)
            intake.check_importable(spec)
            intake.check_spec(
                spec,
                tenant_id,
                protected=self.s.policy_config.preemption.protected_classes,
                known=self.s.tenants.known(tenant_id),
                tenant=self.s.tenants.get(tenant_id),
                by_admin=by_admin,
                # a sql node runs Orion's own DuckDB runner (sql_task.py), allowed for every tenant
                allowed_modules=intake.allowed_modules(self.s.tenants.get(tenant_id))
                + ((SQL_RUNNER.partition(":")[0],) if spec.function == SQL_RUNNER else ()),
            )

        return check

    def run_of(self, submission_id: str, tenant_id: Optional[str]) -> runs_store.PipelineRun:
        run = runs_store.find_run(self.s.store, submission_id, tenant_id)
        if run is None:
            raise NotFound(f"no pipeline run {submission_id[:128]!r}")
        return run

    def status(self, submission_id: str, tenant_id: Optional[str]) -> dict[str, Any]:
        run = self.run_of(submission_id, tenant_id)
        return status_body(self.s.store, run)

    async def output(
        self,
        submission_id: str,
        tenant_id: Optional[str],
        *,
        node: str,
        name: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> dict[str, Any]:
        """One output of a run: ``{"uri", "data"}`` (see ``pipelines/outputs.py``); the store's rows
        are read here, the artifact in a thread (an S3 read must not hold up the loop)."""
        run = self.run_of(submission_id, tenant_id)
        nodes = runs_store.node_runs(self.s.store, run.run_id)
        return await asyncio.to_thread(
            read_output, run, nodes, node=node, name=name, data=self.controller.data, max_bytes=max_bytes
        )

    def cancel(self, submission_id: str, tenant_id: Optional[str], who: Optional[str]) -> dict[str, Any]:
        run = self.run_of(submission_id, tenant_id)
        if not run.terminal:
            run = runs_store.request_cancel(self.s.store, run, who=who or run.tenant_id, now=self.s.clock())
            self.controller.touch(run.run_id)
            self.s.wake()
        return status_body(self.s.store, run)

    def retry(self, submission_id: str, tenant_id: Optional[str], who: Optional[str]) -> dict[str, Any]:
        """Run a failed or cancelled run again from its failed nodes (``retry_run.py``)."""
        run = self.run_of(submission_id, tenant_id)
        run = retry_run(self.s.store, run, who=who or run.tenant_id, now=self.s.clock())
        self.controller.touch(run.run_id)
        self.s.wake()
        return status_body(self.s.store, run)

    async def logs(
        self, submission_id: str, node: str, attempt: Optional[int], tenant_id: Optional[str]
    ) -> dict[str, Any]:
        """A node's attempt's logs (``node_logs.py``), as ``/api/v1/workloads/{id}/logs`` reads them."""
        run = self.run_of(submission_id, tenant_id)
        n, w = node_logs.node_workload(self.s.store, run, node, attempt)
        text = await self.s.logs(w.workload_id, run.tenant_id)
        return node_logs.logs_body(run, n, w, text)

    def lineage(self, submission_id: str, tenant_id: Optional[str]) -> dict[str, Any]:
        """The run's OpenLineage RunEvents (``lineage.py``)."""
        run = self.run_of(submission_id, tenant_id)
        return lineage.lineage_body(run, runs_store.node_runs(self.s.store, run.run_id))
