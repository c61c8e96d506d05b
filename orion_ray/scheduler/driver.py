"""One workload's run: wait for its reservation, launch, watch to the end, release; and the stop of
a preempted run.

A ``WorkloadDriver`` keeps one asyncio task per workload that holds capacity. Every Ray call goes
through the ``runtime`` and every status change through the ``WorkloadBook``; a driver never raises
(one bad workload never stops the scheduler) and never launches an attempt twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping, Optional

from ..config import PolicyConfig, SchedulerConfig
from ..errors import StoreUnavailable
from ..inference_task import as_task
from ..input_limits import cap_text, strict_json_problem
from ..log_format import log_context
from ..metrics import OrionMetrics
from ..models import Workload
from ..policy.live_placement import Held, placement_record
from ..policy.markets import with_market
from ..runtime.base import Runtime
from ..runtime.conventions import clean_job_logs, infrastructure_failure
from ..status import Status
from .transitions import WorkloadBook
from .workload_spans import run_traceparent

log = logging.getLogger("orion.scheduler")

MAX_LAUNCH_REQUEUES = 5  # launch errors are retried this often before the workload fails
HOLDING = (Status.STARTING, Status.RUNNING, Status.PREEMPTED)  # states that hold a group
# A pinned task's capacity is Ray's again the moment the task ends, but the runtime's node
# snapshot (``available``, refreshed about once a second) may still show it used; for this long
# after its release it is not mistaken for work outside Orion (which would hold the node idle
# until the next snapshot: ~1 admission per node per second on a full cluster).
RELEASED_GRACE_S = 3.0
# A write the store refused is tried again after this long, doubling up to the max.
STORE_RETRY_S = 0.05
STORE_RETRY_MAX_S = 2.0


def pinnable(w: Workload, enabled: bool) -> bool:
    """Whether ``w`` runs pinned to its node without a group of its own
    (``scheduler.pin_single_bundle_tasks``): a task with one bundle and no fractional GPU (a
    shared GPU needs the group's probe to learn which device Ray gave it). Gangs, jobs and
    inference keep their group."""
    if not enabled or w.spec.workload_type != "task":
        return False
    gang = w.spec.gang()
    if len(gang) != 1:
        return False
    gpu = float(gang[0].ray_bundle().get("GPU", 0.0))
    return gpu == int(gpu)


class WorkloadDriver:
    """The drivers of the workloads that hold capacity, keyed by workload id (``tasks``)."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        store: Any,
        book: WorkloadBook,
        clock: Callable[[], float],
        metrics: OrionMetrics,
        config: SchedulerConfig,
        policy: Callable[[], PolicyConfig],
        wake: Callable[[], None],
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        tenant_modules: Callable[[str], tuple[str, ...]] = lambda tenant: (),
        node_labels: Callable[[], Mapping[str, Mapping[str, str]]] = dict,
    ):
        self.runtime = runtime
        self.node_labels = node_labels  # node id → labels: the pool and market go in the record
        self.store = store
        self.book = book
        self.clock = clock
        self.metrics = metrics
        self.config = config
        self.policy = policy  # the live policy section (the grace period may be reloaded)
        self.wake = wake
        self.sleep = sleep  # between job polls (tests pass one that only yields)
        # the modules the operator allows a tenant's tasks (the worker checks the denylist again)
        self.tenant_modules = tenant_modules
        self.tasks: dict[str, asyncio.Task] = {}
        self.pinned: set[str] = set()  # workloads reserved without a group (see ``pinnable``)
        self._released: list[tuple[float, Held]] = []  # pinned bundles given back, with when

    # -- the drivers ------------------------------------------------------------------------------
    def start(self, w: Workload, pg: Any, *, adopt_running: bool = False) -> asyncio.Task:
        """Drive ``w`` in its group ``pg`` (``adopt_running``: its run is already under way)."""
        with log_context(tenant_id=w.tenant_id, workload_id=w.workload_id):  # the task's log lines
            task = self.tasks[w.workload_id] = asyncio.create_task(
                self.drive(w, pg, adopt_running=adopt_running)
            )
        return task

    def stop(self, workload_id: str) -> None:
        """Stop driving (the run itself is left to the caller)."""
        task = self.tasks.pop(workload_id, None)
        if task is not None:
            task.cancel()

    def stop_all(self) -> None:
        """Stop every driver (the scheduler stops, or recovery starts over)."""
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

    def _done(self, workload_id: str) -> None:
        if self.tasks.get(workload_id) is asyncio.current_task():
            self.tasks.pop(workload_id, None)

    async def durably(self, w: Workload, step: Callable[[], Any]) -> None:
        """Run ``step`` (a write about ``w``: its next status, its logs) until the store takes
        it. A store that refuses (locked, its file gone) leaves ``w`` as it was (``book.set``
        changes memory only after the write), so the same step is retried after a backoff;
        if ``w`` changed meanwhile (a cancel got through first), the step is moot."""
        status, delay = w.status, STORE_RETRY_S
        while True:
            try:
                step()
                return
            except StoreUnavailable as exc:
                log.warning("store refused a write for %s (retrying in %.2fs): %s", w.workload_id, delay, exc)
            await self.sleep(delay)
            delay = min(delay * 2, STORE_RETRY_MAX_S)
            if w.status != status:
                return

    # -- one run ---------------------------------------------------------------------------------
    async def drive(self, w: Workload, pg: Any, *, adopt_running: bool = False) -> None:
        """Wait for the reservation, launch, watch to the end, release. Never raises."""
        wid = w.workload_id
        try:
            if not adopt_running:
                asked = self.clock()
                timeout = self.config.placement_ready_timeout_s
                ready = await self.runtime.wait_pg_ready(pg, timeout)
                if w.status != Status.STARTING:
                    return
                if ready:
                    self.metrics.placement_ready(self.clock() - asked)
                else:
                    self.metrics.readiness_timeout()
                    self.runtime.remove_pg(wid)
                    await self.durably(
                        w, lambda: self.book.requeue(w, f"placement group not ready within {timeout:g}s")
                    )
                    return
                await self._launch(w, pg)
                if w.status != Status.RUNNING:
                    return
            await self._watch(w)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad workload never stops the scheduler
            log.warning("driver of %s: %s: %s", wid, type(exc).__name__, exc)
            if not w.status.terminal:
                await self.release(w)
                error = f"{type(exc).__name__}: {exc}"[:2000]
                if w.status == Status.STARTING and w.requeues < MAX_LAUNCH_REQUEUES:
                    # the launch itself failed (e.g. the Jobs agent is still starting): try again
                    await self.durably(w, lambda: self.book.requeue(w, f"launch failed, will retry: {error}"))
                else:
                    await self.durably(w, lambda: self.book.fail_or_retry(w, f"orion error: {error}"))
        finally:
            self._done(wid)

    async def _launch(self, w: Workload, pg: Any) -> None:
        spec = w.spec
        bundle = spec.gang()[0].ray_bundle()
        held = await self._realised(w, pg)
        run_tp = run_traceparent(w)  # the run span's id, known before the run span is emitted
        if spec.runs_as_task:
            task = spec
            if spec.workload_type == "inference":  # the task that asks the served model
                task = as_task(spec, w.tenant_id)
            await self.runtime.start_task(
                w.workload_id,
                w.attempt,
                function=task.function,
                args=task.args,
                kwargs=task.kwargs,
                bundle=bundle,
                runtime_env=task.runtime_env,
                max_result_bytes=self.config.max_result_bytes,
                max_log_bytes=self.config.max_log_bytes,
                tenant_id=w.tenant_id,
                allowed_modules=self.tenant_modules(w.tenant_id),
                **({"traceparent": run_tp} if run_tp else {}),
            )
        else:
            metadata = {
                "orion_workload_id": w.workload_id,
                "orion_tenant": w.tenant_id,
                "orion_tenant_id": w.tenant_id,
                "orion_attempt": str(w.attempt),
                **({"orion_traceparent": run_tp} if run_tp else {}),
            }
            await self.runtime.submit_job(
                w.workload_id,
                w.attempt,
                entrypoint=spec.entrypoint,
                bundle=bundle,
                runtime_env=spec.runtime_env,
                metadata=metadata,
            )
        if w.status != Status.STARTING:  # cancelled while launching: cancel() cleans up
            return
        started = self.clock()
        await self.durably(
            w,
            lambda: self.book.set(
                w,
                Status.RUNNING,
                "launched",
                started_at=started,
                worker_id=held[0].node_id,
                placement=with_market(placement_record(held), self.node_labels()),
            ),
        )

    async def _realised(self, w: Workload, pg: Any) -> list[Held]:
        """What Ray actually reserved for ``w``: the node of each bundle, and the GPU index of each
        shared-GPU bundle (Ray picks it; a probe in the bundle reads it). Orion's held bundles are
        corrected to it, and how often Ray followed the engine is counted."""
        reservations = self.book.reservations
        planned = reservations.get(w.workload_id) or []
        nodes = self.runtime.pg_nodes(pg)
        bundles = [b.ray_bundle() for b in w.spec.gang()]
        held: list[Held] = []
        for i, (node, bundle) in enumerate(zip(nodes, bundles)):
            plan = planned[i] if i < len(planned) else None
            gpus = plan.gpu_indices if plan is not None and plan.node_id == node else ()
            held.append(Held(node, bundle, gpus))
        node_match = sum(1 for p, h in zip(planned, held) if p.node_id == h.node_id)
        self.metrics.placement_followed("node", True, node_match)
        self.metrics.placement_followed("node", False, len(held) - node_match)
        shared = [i for i, h in enumerate(held) if h.shared_gpu]
        if shared:
            seen = await asyncio.gather(
                *(self.runtime.pg_gpu_ids(pg, i, held[i].bundle["GPU"]) for i in shared)
            )
            for i, ids in zip(shared, seen):
                if not ids:
                    continue  # the probe failed: keep the expectation (the tightest-fit rule)
                matched = tuple(ids) == held[i].gpu_indices
                self.metrics.placement_followed("gpu", matched)
                held[i] = Held(held[i].node_id, held[i].bundle, tuple(ids), observed=True)
        if w.workload_id in reservations:
            reservations[w.workload_id] = held
        return held

    async def _watch(self, w: Workload) -> None:
        timeout = w.spec.timeout_s
        deadline = None if timeout is None else (w.started_at or self.clock()) + timeout
        if w.spec.runs_as_task:
            await self._watch_task(w, deadline)
        else:
            await self._watch_job(w, deadline)

    async def _watch_task(self, w: Workload, deadline: Optional[float]) -> None:
        wid, attempt, timeout = w.workload_id, w.attempt, w.spec.timeout_s
        wait = self.runtime.wait_task(wid, attempt)
        try:
            remaining = None if deadline is None else max(0.0, deadline - self.clock())
            envelope = await asyncio.wait_for(wait, timeout=remaining)
        except asyncio.TimeoutError:
            await self.runtime.cancel_task(wid, attempt)
            await self.release(w)
            await self.durably(
                w, lambda: self.book.set(w, Status.FAILED, "timeout", error=f"timed out after {timeout:g}s")
            )
            return
        if w.status != Status.RUNNING:
            return
        await self.release(w)
        if envelope.get("logs"):  # the runner caps them; a runtime that does not is capped here
            text = cap_text(envelope["logs"], self.config.max_log_bytes, keep="tail") or ""
            await self.durably(w, lambda: self.store.set_logs(wid, text))
        await self.durably(w, lambda: self._ended(w, envelope))
        # only once the outcome is stored: a scheduler killed before that finds the run still
        # held by the executor on restart and adopts its result, instead of running it again
        await self.runtime.forget_task(wid, attempt)

    def _ended(self, w: Workload, envelope: dict) -> None:
        """The task's run ended with ``envelope``: the status that follows."""
        if envelope.get("lost"):
            self.book.requeue(w, "run lost with its Ray objects", new_attempt=True)
        elif (
            not envelope.get("ok")
            and infrastructure_failure(envelope.get("error"))
            and w.requeues < MAX_LAUNCH_REQUEUES
        ):
            # its worker or node died under it: not the workload's failure, run it again
            self.book.requeue(
                w, f"lost its worker or node: {envelope.get('error')}"[:2000], new_attempt=True, backoff=False
            )
        elif envelope.get("ok") and (bad := strict_json_problem(envelope.get("result"))) is not None:
            # a result no reader could answer (the runner checks too; this is the last door)
            self.book.set(w, Status.FAILED, "failed", result=None, error=bad)
        elif envelope.get("ok"):
            self.book.set(w, Status.COMPLETED, "completed", result=envelope.get("result"), error=None)
        else:
            self.book.fail_or_retry(w, envelope.get("error") or "failed")

    async def _watch_job(self, w: Workload, deadline: Optional[float]) -> None:
        wid, attempt = w.workload_id, w.attempt
        while True:
            state = await self.runtime.job_state(wid, attempt)
            if w.status != Status.RUNNING:
                return
            if state is None:
                await self.release(w)
                await self.durably(w, lambda: self.book.requeue(w, "Ray job lost", new_attempt=True))
                return
            if state.terminal:
                break
            if deadline is not None and self.clock() >= deadline:
                await self.runtime.stop_job(wid, attempt)
                await self.save_job_logs(w)
                await self.release(w)
                await self.durably(
                    w,
                    lambda: self.book.set(
                        w, Status.FAILED, "timeout", error=f"timed out after {w.spec.timeout_s:g}s"
                    ),
                )
                return
            await self.sleep(self.config.job_poll_interval_s)
        await self.save_job_logs(w)
        await self.release(w)
        if state.status == "SUCCEEDED":
            await self.durably(
                w, lambda: self.book.set(w, Status.COMPLETED, "completed", result=None, error=None)
            )
        else:
            code = f" (exit code {state.exit_code})" if state.exit_code is not None else ""
            error = f"job {state.status.lower()}{code}: {state.message}"[:4000]
            await self.durably(w, lambda: self.book.fail_or_retry(w, error))

    async def save_job_logs(self, w: Workload) -> None:
        """Keep the job attempt's own output (the tail) in the store."""
        logs = await self.runtime.job_logs(w.workload_id, w.attempt)
        if logs is not None:
            text = cap_text(clean_job_logs(logs), self.config.max_log_bytes, keep="tail") or ""
            await self.durably(w, lambda: self.store.set_logs(w.workload_id, text))

    async def release(self, w: Workload) -> None:
        """Give the reservation back (removing the group also stops anything left inside it)."""
        held = self.book.reservations.pop(w.workload_id, None)
        if w.workload_id in self.pinned:
            self.pinned.discard(w.workload_id)
            now = self.clock()
            self._released += [(now, h) for h in held or []]
        self.runtime.remove_pg(w.workload_id)
        self.wake()

    def released_recently(self) -> list[Held]:
        """Pinned bundles given back within ``RELEASED_GRACE_S``: a node snapshot read before
        their release still shows them used, and that is not work outside Orion."""
        if self._released:
            cutoff = self.clock() - RELEASED_GRACE_S
            self._released = [(t, h) for t, h in self._released if t > cutoff]
        return [h for _, h in self._released]

    async def cancel_run(self, w: Workload, was: Status) -> None:
        """``w`` was cancelled from state ``was``: stop its run and give back what it held."""
        self.stop(w.workload_id)
        if was in HOLDING:  # a launch may be in flight when starting; a stop when preempted
            self.book.stopping.discard(w.workload_id)
            if w.spec.runs_as_task:
                await self.runtime.cancel_task(w.workload_id, w.attempt)
            else:
                await self.runtime.stop_job(w.workload_id, w.attempt)
            await self.release(w)
        if was == Status.RUNNING and w.spec.workload_type == "job":
            await self.save_job_logs(w)

    def abandon(self, w: Workload) -> None:
        """The node under ``w`` is gone: stop driving it and drop its group (Ray would otherwise
        reschedule the group's lost bundles). Its status is the caller's to change."""
        wid = w.workload_id
        self.stop(wid)
        self.book.stopping.discard(wid)
        self.book.reservations.pop(wid, None)
        self.pinned.discard(wid)
        try:
            self.runtime.remove_pg(wid)
        except Exception:  # best effort: the group may already be gone
            log.debug("removing the group of %s", wid, exc_info=True)

    # -- preemption ------------------------------------------------------------------------------
    def preempt(self, w: Workload, for_wid: str) -> None:
        """Stop ``w`` for ``for_wid``: told first (graceful stop), forced after the grace period,
        then back to the queue as a new attempt. Its capacity counts as held until it is gone."""
        # stored first: when the store refuses, its run and driver go on and a later pass decides again
        why = self.preempted_for(w, for_wid)
        self.book.set(w, Status.PREEMPTED, why, reason=why)
        self.stop(w.workload_id)
        self.book.nominate(w.workload_id, for_wid)
        self.metrics.preemption(w.tenant_id)
        self.store.audit("scheduler", "preempt", w.workload_id, {"for": for_wid}, self.clock())
        self.tasks[w.workload_id] = asyncio.create_task(self._stop_preempted(w, for_wid))

    def preempted_for(self, w: Workload, for_wid: str) -> str:
        """The reason a preempted workload's tenant reads: the id of the workload it made room
        for only when that is the tenant's own (another tenant's ids never reach it; the audit
        log keeps the id for the admin)."""
        other = self.book.active.get(for_wid)
        if other is not None and other.tenant_id == w.tenant_id:
            return f"preempted for {for_wid}"
        if other is not None or for_wid.startswith("wl-"):
            return "preempted for a higher-priority workload of another tenant"
        return f"preempted for {for_wid}"  # not a workload: a node drain, a serving replica

    async def _stop_preempted(self, w: Workload, for_wid: str) -> None:
        wid, grace = w.workload_id, self.policy().preemption.grace_period_s
        try:
            if w.spec.runs_as_task:
                await self.runtime.stop_task(wid, w.attempt, grace)
            else:
                await self.runtime.stop_job(wid, w.attempt)
                await self.save_job_logs(w)
        except Exception as exc:  # stopping is best effort: removing the group stops it anyway
            log.warning("stopping preempted %s: %s", wid, exc)
        finally:
            self.book.stopped(wid)
            self._done(wid)
        if w.status == Status.PREEMPTED:
            await self.release(w)
            why = self.preempted_for(w, for_wid)
            await self.durably(w, lambda: self.book.requeue(w, why, new_attempt=True, backoff=False))
