"""The scheduler: one scheduling cycle with numbered, timed phases, and one driver per admitted workload.

Runs on an asyncio loop (inside the ``orion-scheduler`` actor, or a test's loop). Every Ray call goes
through the ``runtime`` adapter and every state change through ``_set``, which checks the transition
table and writes the store before anything is acknowledged.

Cycle phases (see ARCHITECTURE.md): 1 snapshot · 2 order · 3 fit · 4 preempt · 5 reserve · 6 launch ·
7 requeue. Phases 2–4 are one pure call (``policy.admission.plan_cycle``); this module applies it.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
import uuid
from typing import Any, Callable, Optional

from ..config import PolicyConfig, SchedulerConfig
from ..metrics import OrionMetrics, workload_counts
from ..errors import Conflict, NotFound, QueueFull, ValidationError
from ..models import Workload, WorkloadSpec
from ..policy import retry_delay
from ..models import iso
from ..policy.admission import plan_cycle
from ..policy.cycle import CyclePlanner
from ..policy.fairshare import FairShare
from ..policy.live_placement import (Held, LivePlacer, bundle_request, outside_orion,
                                     placement_record)
from ..policy.placement import get_policy
from ..status import Status, check_transition
from .recovery import recover
from .tenants import TenantRegistry
from . import capacity_signal, estimates, node_ops, outside, views
from . import policy_bridge as bridge

log = logging.getLogger("orion.scheduler")

PHASES = ("snapshot", "order", "fit", "preempt", "reserve", "requeue")
ACK_FORECAST_MAX_QUEUED = 100  # deeper queues: the ack's position is by class and arrival only
GAUGE_REFRESH_S = 5.0
SERVING_REFRESH_S = 5.0
FULL_CYCLE_S = 1.0
MAX_LAUNCH_REQUEUES = 5  # launch errors are retried this often before the workload fails


class Scheduler:
    """Admits, places, runs and tracks workloads. ``store`` and ``runtime`` are passed in."""

    def __init__(self, store, runtime, config: Optional[SchedulerConfig] = None,
                 policy: Optional[PolicyConfig] = None, clock: Callable[[], float] = time.time,
                 metrics: Optional[OrionMetrics] = None):
        self.store = store
        self.runtime = runtime
        self.config = config or SchedulerConfig()
        self.clock = clock
        self.metrics = metrics or OrionMetrics(ray_mirror=False)
        self.tenants = TenantRegistry(store)
        self.active: dict[str, Workload] = {}
        self.drivers: dict[str, asyncio.Task] = {}
        # Every bundle Orion holds, per workload: the live snapshot is the nodes minus these.
        self.reservations: dict[str, list[Held]] = {}
        self.placement_policy = get_policy(self.config.placement_policy)
        saved = store.get_setting("policy", None)
        self.policy_config = (PolicyConfig.model_validate(saved) if saved is not None
                              else policy or PolicyConfig())
        self.policy = bridge.settings_from(self.tenants.tenants.values(), self.policy_config)
        self.fair = FairShare(self.policy_config.fair_share_half_life_s)
        # keeps the engine's score caches warm from cycle to cycle (see policy/cycle.py)
        self.planner = CyclePlanner(clock=time.perf_counter)
        self.runtimes = bridge.RunTimes()
        self.nominated: dict[str, set[str]] = {}   # preemptor → victims still stopping
        self.stopping: set[str] = set()             # victims being stopped
        self.wait_reasons: dict[str, list[dict]] = {}
        self.reservation: Optional[dict] = None
        self._cands: dict[str, Any] = {}
        self._forecast: Optional[tuple[float, int, dict]] = None
        self._version = 0  # bumped on every status change (forecast cache key)
        # GPUs tenants hold in serving replicas (counted against their quotas), refreshed by the loop
        self.serving_usage: dict[str, dict[str, float]] = {}
        self._serving_at = 0.0
        # capacity preempted for work outside Orion (a Serve replica): (expiry, node, resources)
        self.claims: list[tuple[float, str, dict[str, float]]] = []
        self.cycles = 0
        self.last_cycle: dict[str, Any] = {}
        self.started_at: Optional[float] = None
        self._wake: Optional[asyncio.Event] = None
        self._loop_task: Optional[asyncio.Task] = None
        self._stopping = False
        self._gauges_at = 0.0
        self._full_cycle_at = 0.0
        self._next_due = 0.0  # earliest backoff expiry among queued workloads
        self._shapes: dict[str, tuple] = {}
        # every node seen, with operator cordons and drains (persisted)
        self.nodebook = node_ops.load_book(store)
        self.autoscaler_status: dict[str, Any] = {}
        self._nodes_at = 0.0

    # == lifecycle ================================================================================
    async def start(self) -> None:
        """Rebuild state from the store, reconcile with Ray, then run the cycle loop."""
        if self._loop_task is not None:
            return
        self._wake = asyncio.Event()
        self._loop_task = asyncio.current_task()  # mark as starting (idempotent start)
        delay = 0.2
        while True:
            try:
                await recover(self)
                break
            except Exception:  # e.g. the executor is itself restarting: never give up
                log.exception("recovery failed; retrying in %.1fs", delay)
                for t in self.drivers.values():
                    t.cancel()
                self.drivers.clear()
                self.active.clear()
                self.reservations.clear()
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
        self.started_at = self.clock()
        self._loop_task = asyncio.create_task(self._loop())
        self.wake()

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        for t in list(self.drivers.values()):
            t.cancel()
        if self._loop_task is not None and self._loop_task is not asyncio.current_task():
            self._loop_task.cancel()

    def wake(self) -> None:
        """Run a cycle now rather than at the next tick (a submission should not wait)."""
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        interval = self.config.cycle_interval_ms / 1000
        while not self._stopping:
            woken = True
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            except asyncio.TimeoutError:
                woken = False
            self._wake.clear()
            try:
                # A tick with nothing new (no submission, no release, no backoff expired) cannot
                # admit more than the last cycle did, except when nodes joined: check each second.
                now = self.clock()
                if (woken or now >= self._next_due
                        or time.monotonic() - self._full_cycle_at > FULL_CYCLE_S):
                    self._full_cycle_at = time.monotonic()
                    self.run_cycle()
                if (self.runtime is not None and time.monotonic() - self._serving_at
                        > SERVING_REFRESH_S):
                    self._serving_at = time.monotonic()
                    asyncio.create_task(self._refresh_serving_usage())
                if time.monotonic() - self._nodes_at > node_ops.NODE_CHECK_S:
                    self._nodes_at = time.monotonic()
                    node_ops.check_nodes(self)  # lost nodes, drains
                if time.monotonic() - self._gauges_at > GAUGE_REFRESH_S:
                    self._gauges_at = time.monotonic()
                    self.refresh_gauges()  # Ray's metrics pipeline sees gauges without a scrape
            except Exception:  # the loop never dies: one bad cycle is logged and the next one runs
                log.exception("scheduling cycle %d failed", self.cycles)

    # == the scheduling cycle =====================================================================
    def run_cycle(self) -> dict[str, Any]:
        """One pass over the queue; admits as many workloads as fit, not one per cycle."""
        self.cycles += 1
        timings: dict[str, float] = {}
        t = time.perf_counter()
        now = self.clock()

        def phase(name: str) -> None:
            nonlocal t
            t2 = time.perf_counter()
            timings[name] = round((t2 - t) * 1000, 3)
            t = t2

        queued = [w for w in self.active.values() if w.status == Status.QUEUED]
        if not queued:
            self.last_cycle = {"cycle": self.cycles, "at": now, "admitted": 0, "phases_ms": {}}
            self.metrics.cycle({}, 0)
            return self.last_cycle
        # 1 snapshot: capacity per node minus what Orion holds, GPU by GPU
        placer = self.planner.adopt(self._placer())
        running = bridge.running_items(self, now)
        self.fair.advance(now, bridge.allocated(running))
        phase("snapshot")
        # 2 order (and the candidates' static data, cached per workload)
        eligible = [bridge.candidate(self, w) for w in queued if w.not_before <= now]
        self._next_due = min((w.not_before for w in queued if w.not_before > now),
                             default=float("inf"))
        phase("order")
        # 3 fit · 4 preempt: one pure pass over the queue (quota, fair share, placement, victims)
        plan = plan_cycle(placer, eligible, running, self.policy, self.fair,
                          bridge.capacity(placer.nodes), now, self.nominated,
                          extra_usage=self.serving_usage)
        plan.apply_fair_share(self.fair)  # planning no longer charges the long-lived fair share
        phase("fit")
        for victim, for_wid in plan.preempt:
            self._preempt(self.active[victim], for_wid)
        self.reservation = plan.reservation
        phase("preempt")
        admitted = [(self.active[c.workload_id], placed) for c, placed in plan.admitted]
        # 5 reserve: record in memory, persist, then create the placement group
        batch: list = []
        for w, placed in admitted:
            self.reservations[w.workload_id] = placed
            self.nominated.pop(w.workload_id, None)
            self.wait_reasons.pop(w.workload_id, None)
            self._set(w, Status.STARTING, "placement group requested", batch=batch, reason=None)
        self.store.update_many(batch)
        for w, placed in admitted:
            bundles, types, strategy, _ = self._shape(w)
            try:
                # Each bundle pinned to the node the engine chose: Ray realises Orion's decision.
                pg = self.runtime.create_pg(w.workload_id, bundles, strategy,
                                            [h.node_id for h in placed], types)
            except Exception as exc:  # e.g. Ray refused the group: requeue with backoff
                self._requeue(w, f"placement group creation failed: {exc}")
                continue
            # 6 launch happens in the driver once the group is ready
            self.drivers[w.workload_id] = asyncio.create_task(self._drive(w, pg))
        phase("reserve")
        # 7 requeue: what did not fit keeps its reasons (they feed explain)
        for wid, why in plan.reasons.items():
            self.wait_reasons[wid] = why
            w = self.active.get(wid)
            if w is not None and w.status == Status.QUEUED:
                w.reason = bridge.explain_reasons(why)
        phase("requeue")
        self.last_cycle = {"cycle": self.cycles, "at": now, "admitted": len(admitted),
                           "preempted": len(plan.preempt), "considered": len(plan.order),
                           "phases_ms": timings}
        self.metrics.cycle(timings, len(admitted))
        return self.last_cycle

    def _shape(self, w: Workload) -> tuple:
        """(bundles, gpu types, strategy, hashable shape) of a workload, computed once."""
        got = self._shapes.get(w.workload_id)
        if got is None:
            gang = w.spec.gang()
            bundles = [b.ray_bundle() for b in gang]
            types = [b.gpu_type for b in gang]
            strategy = w.spec.placement.ray_strategy
            got = self._shapes[w.workload_id] = (
                bundles, types, strategy,
                (strategy, tuple(types), tuple(tuple(sorted(b.items())) for b in bundles)))
        return got

    def _nodes(self) -> list:
        """The schedulable nodes with their totals, as the runtime reports them (none without a
        cluster)."""
        nodes = self.runtime.nodes() if self.runtime is not None else []
        off = self.nodebook.unschedulable()  # cordoned, draining, drained
        return [n for n in nodes if n.schedulable and n.node_id not in off]

    def _placer(self, nodes: Optional[list] = None) -> LivePlacer:
        """The live cluster as the placement engine sees it: nodes (default: the schedulable
        ones) minus every held bundle."""
        nodes = self._nodes() if nodes is None else nodes
        held = [h for hs in self.reservations.values() for h in hs]
        held += outside_orion(nodes, held, self._live_claims())
        by_id = {n.node_id: n for n in nodes}
        for h in held:
            n = by_id.get(h.node_id)
            if n is not None:
                for k, v in h.bundle.items():
                    n.free[k] = n.free.get(k, 0.0) - v
        return LivePlacer(self.placement_policy, nodes, held)

    async def _refresh_serving_usage(self) -> None:
        await outside.refresh_serving_usage(self)

    def _live_claims(self) -> dict[str, dict[str, float]]:
        return outside.live_claims(self)

    async def make_room(self, bundles: list[dict[str, float]], tenant_id: Optional[str] = None,
                        priority: str = "high", who: str = "serving",
                        hold_s: float = 120.0) -> dict[str, Any]:
        """Make room for work Orion does not launch itself (see ``outside.make_room``)."""
        return outside.make_room(self, bundles, tenant_id, priority, who, hold_s)

    def observe(self, w: Workload) -> None:
        """Let the placement policy learn the request mix from a workload's bundles."""
        for b in w.spec.gang():
            try:
                self.placement_policy.observe(bundle_request(b.ray_bundle(), b.gpu_type))
            except ValueError:  # a shape the engine cannot express (e.g. 1.5 GPUs): nothing to learn
                pass


    # == one workload's run =======================================================================
    async def _drive(self, w: Workload, pg, adopt_running: bool = False) -> None:
        """Wait for the reservation, launch, watch to the end, release. Never raises."""
        wid = w.workload_id
        try:
            if not adopt_running:
                asked = self.clock()
                ready = await self.runtime.wait_pg_ready(pg, self.config.placement_ready_timeout_s)
                if w.status != Status.STARTING:
                    return
                if ready:
                    self.metrics.placement_ready(self.clock() - asked)
                else:
                    self.metrics.readiness_timeout()
                    self.runtime.remove_pg(wid)
                    self._requeue(w, f"placement group not ready within "
                                     f"{self.config.placement_ready_timeout_s:g}s")
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
                await self._release(w)
                error = f"{type(exc).__name__}: {exc}"[:2000]
                if w.status == Status.STARTING and w.requeues < MAX_LAUNCH_REQUEUES:
                    # the launch itself failed (e.g. the Jobs agent is still starting): try again
                    self._requeue(w, f"launch failed, will retry: {error}")
                else:
                    self._fail_or_retry(w, f"orion error: {error}")
        finally:
            if self.drivers.get(wid) is asyncio.current_task():
                self.drivers.pop(wid, None)

    async def _launch(self, w: Workload, pg) -> None:
        spec = w.spec
        bundle = spec.gang()[0].ray_bundle()
        held = await self._realised(w, pg)
        nodes = [h.node_id for h in held]
        if spec.runs_as_task:
            task = spec
            if spec.workload_type == "inference":  # the task that asks the served model
                from ..serving.inference import as_task
                task = as_task(spec, w.tenant_id)
            await self.runtime.start_task(w.workload_id, w.attempt, task.function, task.args,
                                          task.kwargs, bundle, task.runtime_env,
                                          self.config.max_result_bytes, self.config.max_log_bytes)
        else:
            metadata = {"orion_workload_id": w.workload_id, "orion_tenant": w.tenant_id,
                        "orion_tenant_id": w.tenant_id,
                        "orion_attempt": str(w.attempt)}
            await self.runtime.submit_job(w.workload_id, w.attempt, spec.entrypoint, bundle,
                                          spec.runtime_env, metadata)
        if w.status != Status.STARTING:  # cancelled while launching: cancel() cleans up
            return
        placement = placement_record(held)
        self._set(w, Status.RUNNING, "launched", started_at=self.clock(), worker_id=nodes[0],
                  placement=placement)

    async def _realised(self, w: Workload, pg) -> list[Held]:
        """What Ray actually reserved for ``w``: the node of each bundle, and the GPU index of each
        shared-GPU bundle (Ray picks it; a probe in the bundle reads it). Orion's held bundles are
        corrected to it, and how often Ray followed the engine is counted."""
        planned = self.reservations.get(w.workload_id) or []
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
            seen = await asyncio.gather(*(self.runtime.pg_gpu_ids(pg, i, held[i].bundle["GPU"])
                                          for i in shared))
            for i, ids in zip(shared, seen):
                if not ids:
                    continue  # the probe failed: keep the expectation (the tightest-fit rule)
                matched = tuple(ids) == held[i].gpu_indices
                self.metrics.placement_followed("gpu", matched)
                held[i] = Held(held[i].node_id, held[i].bundle, tuple(ids), observed=True)
        if w.workload_id in self.reservations:
            self.reservations[w.workload_id] = held
        return held

    async def _watch(self, w: Workload) -> None:
        timeout = w.spec.timeout_s
        deadline = None if timeout is None else (w.started_at or self.clock()) + timeout
        if w.spec.runs_as_task:
            await self._watch_task(w, deadline)
        else:
            await self._watch_job(w, deadline)

    async def _watch_task(self, w: Workload, deadline: Optional[float]) -> None:
        wid, attempt = w.workload_id, w.attempt
        wait = self.runtime.wait_task(wid, attempt)
        try:
            remaining = None if deadline is None else max(0.0, deadline - self.clock())
            envelope = await asyncio.wait_for(wait, timeout=remaining)
        except asyncio.TimeoutError:
            await self.runtime.cancel_task(wid, attempt)
            await self._release(w)
            self._set(w, Status.FAILED, "timeout", error=f"timed out after {w.spec.timeout_s:g}s")
            return
        if w.status != Status.RUNNING:
            return
        await self.runtime.forget_task(wid, attempt)
        await self._release(w)
        if envelope.get("logs"):
            self.store.set_logs(wid, envelope["logs"])
        if envelope.get("lost"):
            self._requeue(w, "run lost with its Ray objects", new_attempt=True)
        elif not envelope.get("ok") and _infrastructure_failure(envelope.get("error")) \
                and w.requeues < MAX_LAUNCH_REQUEUES:
            # its worker or node died under it: not the workload's failure, run it again
            self._requeue(w, f"lost its worker or node: {envelope.get('error')}"[:2000],
                          new_attempt=True, backoff=False)
        elif envelope.get("ok"):
            self._set(w, Status.COMPLETED, "completed", result=envelope.get("result"), error=None)
        else:
            self._fail_or_retry(w, envelope.get("error") or "failed")

    async def _watch_job(self, w: Workload, deadline: Optional[float]) -> None:
        wid, attempt = w.workload_id, w.attempt
        while True:
            state = await self.runtime.job_state(wid, attempt)
            if w.status != Status.RUNNING:
                return
            if state is None:
                await self._release(w)
                self._requeue(w, "Ray job lost", new_attempt=True)
                return
            if state.terminal:
                break
            if deadline is not None and self.clock() >= deadline:
                await self.runtime.stop_job(wid, attempt)
                await self._save_job_logs(w)
                await self._release(w)
                self._set(w, Status.FAILED, "timeout", error=f"timed out after {w.spec.timeout_s:g}s")
                return
            await asyncio.sleep(self.config.job_poll_interval_s)
        await self._save_job_logs(w)
        await self._release(w)
        if state.status == "SUCCEEDED":
            self._set(w, Status.COMPLETED, "completed", result=None, error=None)
        else:
            code = f" (exit code {state.exit_code})" if state.exit_code is not None else ""
            self._fail_or_retry(w, f"job {state.status.lower()}{code}: {state.message}"[:4000])

    async def _save_job_logs(self, w: Workload) -> None:
        logs = await self.runtime.job_logs(w.workload_id, w.attempt)
        if logs is not None:
            self.store.set_logs(w.workload_id, clean_job_logs(logs)[-self.config.max_log_bytes:])

    async def _release(self, w: Workload) -> None:
        """Give the reservation back (removing the group also stops anything left inside it)."""
        self.reservations.pop(w.workload_id, None)
        self.runtime.remove_pg(w.workload_id)
        self.wake()

    def _preempt(self, w: Workload, for_wid: str) -> None:
        """Stop ``w`` for ``for_wid``: told first (graceful stop), forced after the grace period,
        then back to the queue as a new attempt. Its capacity counts as held until it is gone."""
        driver = self.drivers.pop(w.workload_id, None)
        if driver is not None:
            driver.cancel()
        self.stopping.add(w.workload_id)
        self.nominated.setdefault(for_wid, set()).add(w.workload_id)
        self._set(w, Status.PREEMPTED, f"preempted for {for_wid}", reason=f"preempted for {for_wid}")
        self.metrics.preemption(w.tenant_id)
        self.store.audit("scheduler", "preempt", w.workload_id, {"for": for_wid}, self.clock())
        self.drivers[w.workload_id] = asyncio.create_task(self._stop_preempted(w, for_wid))

    async def _stop_preempted(self, w: Workload, for_wid: str) -> None:
        wid, grace = w.workload_id, self.policy_config.preemption.grace_period_s
        try:
            if w.spec.runs_as_task:
                await self.runtime.stop_task(wid, w.attempt, grace)
            else:
                await self.runtime.stop_job(wid, w.attempt)
                await self._save_job_logs(w)
        except Exception as exc:  # stopping is best effort: removing the group stops it anyway
            log.warning("stopping preempted %s: %s", wid, exc)
        finally:
            self.stopping.discard(wid)
            for victims in self.nominated.values():
                victims.discard(wid)
            self.nominated = {k: v for k, v in self.nominated.items() if v}
            if self.drivers.get(wid) is asyncio.current_task():
                self.drivers.pop(wid, None)
        if w.status == Status.PREEMPTED:
            await self._release(w)
            self._requeue(w, f"preempted for {for_wid}", new_attempt=True, backoff=False)

    # == state changes ============================================================================
    def _set(self, w: Workload, status: Status, note: str = "", batch: Optional[list] = None,
             **fields: Any) -> None:
        """The one place a status changes: check the table, update, persist (or add to ``batch``)."""
        check_transition(w.status, status)
        now = self.clock()
        w.status = status
        w.updated_at = now
        for k, v in fields.items():
            setattr(w, k, v)
        self._version += 1
        self._cands.pop(w.workload_id, None)  # queued_since / expected run time may change
        if status == Status.COMPLETED and w.started_at is not None:
            self.runtimes.record(w, now - w.started_at)
        if status.terminal:
            w.finished_at = now
            self.active.pop(w.workload_id, None)
            self._shapes.pop(w.workload_id, None)
            self.reservations.pop(w.workload_id, None)
            self.nominated.pop(w.workload_id, None)
            self.wait_reasons.pop(w.workload_id, None)
        self.metrics.transition(w.tenant_id, w.priority.value, status.value)
        if status == Status.RUNNING and w.started_at is not None:
            self.metrics.wait_time(w.tenant_id, w.started_at - w.submitted_at)
        if status.terminal and w.started_at is not None:
            self.metrics.run_time(w.tenant_id, status.value, now - w.started_at)
        change = (w, (status.value, now, note))
        if batch is not None:
            batch.append(change)
        else:
            self.store.update(*change)

    def _requeue(self, w: Workload, why: str, new_attempt: bool = False,
                 backoff: bool = True) -> None:
        """Back to ``queued`` with backoff; a new attempt when a run was lost or is retried."""
        w.requeues += 1
        if new_attempt:
            w.attempt += 1
        delay = retry_delay(w.requeues, self.config.retry_backoff_base_s,
                            self.config.retry_backoff_max_s) if backoff else 0.0
        self.reservations.pop(w.workload_id, None)
        self._set(w, Status.QUEUED, why, not_before=self.clock() + delay, reason=why,
                  worker_id=None, placement=None)
        self.wake()

    def _fail_or_retry(self, w: Workload, error: str) -> None:
        if w.attempt <= w.spec.max_retries:
            self.metrics.retry(w.tenant_id)
            w.attempt += 1
            delay = retry_delay(w.attempt - 1, self.config.retry_backoff_base_s,
                                self.config.retry_backoff_max_s)
            self.reservations.pop(w.workload_id, None)
            self._set(w, Status.QUEUED, f"retry after failure: {error}"[:2000],
                      not_before=self.clock() + delay, error=error, reason="retry backoff",
                      worker_id=None, placement=None)
            self.wake()
        else:
            self._set(w, Status.FAILED, "failed", error=error)

    # == the interface the API (and the actor) expose =============================================
    async def submit(self, spec: dict[str, Any], tenant_id: str = "default",
                     who: Optional[str] = None) -> dict[str, Any]:
        """Validate, persist and enqueue; answers only after the store has the workload."""
        try:
            parsed = WorkloadSpec.model_validate(spec)
        except Exception as exc:  # pydantic's error → the contract's error
            raise ValidationError("invalid workload spec", _pydantic_details(exc)) from None
        _check_importable(parsed)
        protected = self.policy_config.preemption.protected_classes
        if not parsed.preemptible and parsed.priority.value not in protected:
            raise ValidationError("this priority class may not opt out of preemption", [
                {"field": "preemptible", "problem": f"false is only allowed for classes "
                                                    f"{', '.join(protected) or '(none)'}"}])
        if not self.tenants.known(tenant_id):
            raise ValidationError(f"unknown tenant {tenant_id!r}", [
                {"field": "metadata.tenant_id", "problem": "no such tenant is configured"}])
        rid = parsed.metadata.request_id
        if rid:
            existing = self.store.find_by_request_id(tenant_id, rid)
            if existing is not None:
                if existing.spec.fingerprint() != parsed.fingerprint():
                    raise Conflict(f"request_id {rid!r} was already used with a different spec",
                                   [{"field": "metadata.request_id", "problem": "reused"}])
                return self._ack(self.active.get(existing.workload_id, existing))
        if len(self.active) >= self.config.max_queue_size:
            raise QueueFull(f"the queue is full ({self.config.max_queue_size} workloads)",
                            retry_after=5)
        limit = getattr(self.tenants.get(tenant_id), "max_queued", None)
        if limit is not None and sum(1 for w in self.active.values()
                                     if w.tenant_id == tenant_id) >= limit:
            raise QueueFull(f"tenant {tenant_id!r} has {limit} unfinished workloads (its limit)",
                            retry_after=5)
        now = self.clock()
        w = Workload(workload_id=f"wl-{uuid.uuid4().hex[:16]}", tenant_id=tenant_id, spec=parsed,
                     status=Status.QUEUED, submitted_at=now, updated_at=now, seq=2**62)
        if parsed.deadline is not None and self.policy_config.refuse_infeasible_deadlines:
            self._refuse_if_deadline_unreachable(w)
        capacity_signal.check_backpressure(self, w)  # 429 if policy says and its pool can't grow
        self._version += 1
        self.store.insert(w, [(Status.SUBMITTED.value, now, "accepted"),
                              (Status.QUEUED.value, now, "")])
        self.active[w.workload_id] = w
        self.observe(w)
        for status in (Status.SUBMITTED, Status.QUEUED):
            self.metrics.transition(tenant_id, parsed.priority.value, status.value)
        self.store.audit(who or tenant_id, "submit", w.workload_id,
                         {"tenant_id": tenant_id, "workload_type": parsed.workload_type,
                          "priority": parsed.priority.value}, now)
        self.wake()
        return self._ack(w)

    def _ack(self, w: Workload) -> dict[str, Any]:
        out = {"workload_id": w.workload_id, "status": w.status.value,
               "queue_position": self._position(w), "estimated_start": None,
               "estimated_completion": None}
        queued = sum(1 for x in self.active.values() if x.status == Status.QUEUED)
        if w.status == Status.QUEUED and queued <= ACK_FORECAST_MAX_QUEUED:
            start, end = estimates.estimates(self).get(w.workload_id, (None, None))
            out.update(estimated_start=iso(start), estimated_completion=iso(end))
        return out

    def _position(self, w: Workload) -> Optional[int]:
        """Position in the policy's order (by class and arrival only when the queue is deep)."""
        if w.status != Status.QUEUED:
            return None
        queued = [x for x in self.active.values() if x.status == Status.QUEUED]
        if len(queued) <= ACK_FORECAST_MAX_QUEUED:
            ids = [c.workload_id for c in estimates.ordered(self)]
            if w.workload_id in ids:
                return ids.index(w.workload_id) + 1
        return 1 + sum(1 for x in queued if (x.priority.rank, x.seq) < (w.priority.rank, w.seq))

    def _refuse_if_deadline_unreachable(self, w: Workload) -> None:
        """422 when the forecast says ``w`` cannot end before its deadline (policy option)."""
        start, _ = estimates.estimates(self, extra=w).get(w.workload_id, (None, None))
        deadline = w.spec.deadline.timestamp()
        run = w.spec.timeout_s or 0.0
        if start is None or start + run > deadline:
            when = "never (no capacity is expected to free)" if start is None else iso(start)
            raise ValidationError("the deadline cannot be met", [{
                "field": "deadline", "problem": f"estimated start {when} plus timeout_s "
                                                f"{run:g}s is after the deadline"}])

    def _lookup(self, workload_id: str, tenant_id: Optional[str]) -> Workload:
        w = self.active.get(workload_id) or self.store.get(workload_id)
        if w is None or (tenant_id is not None and w.tenant_id != tenant_id):
            raise NotFound(f"no workload {workload_id!r}")
        return w

    async def get(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        w = self._lookup(workload_id, tenant_id)
        out = w.public(history=self.store.history(workload_id))
        out["queue_position"] = self._position(w)
        return out

    async def list(self, status: Optional[str] = None, tenant_id: Optional[str] = None,
                   limit: int = 50, cursor: Optional[int] = None) -> dict[str, Any]:
        rows = self.store.list(status=status, tenant_id=tenant_id, limit=limit + 1,
                               before_seq=cursor)
        items = [self.active.get(w.workload_id, w) for w in rows[:limit]]
        next_cursor = rows[limit - 1].seq if len(rows) > limit else None
        return {"items": [w.public() for w in items], "next_cursor": next_cursor}

    async def cancel(self, workload_id: str, tenant_id: Optional[str] = None,
                     who: Optional[str] = None) -> dict[str, Any]:
        """Stop the workload wherever it is; idempotent (a finished one answers its final state)."""
        w = self._lookup(workload_id, tenant_id)
        if w.status.terminal:
            return w.public()
        self.store.audit(who or tenant_id or "admin", "cancel", workload_id,
                         {"status": w.status.value}, self.clock())
        driver = self.drivers.pop(workload_id, None)
        if driver is not None:
            driver.cancel()
        was = w.status
        self._set(w, Status.CANCELLED, "cancelled by user")
        holding = (Status.STARTING, Status.RUNNING, Status.PREEMPTED)
        if was in holding:  # a launch may be in flight when starting; a stop when preempted
            self.stopping.discard(workload_id)
            if w.spec.runs_as_task:
                await self.runtime.cancel_task(workload_id, w.attempt)
            else:
                await self.runtime.stop_job(workload_id, w.attempt)
            await self._release(w)
        if was == Status.RUNNING and w.spec.workload_type == "job":
            await self._save_job_logs(w)
        return w.public()

    async def logs(self, workload_id: str, tenant_id: Optional[str] = None) -> str:
        w = self._lookup(workload_id, tenant_id)
        if w.spec.workload_type == "job" and w.status == Status.RUNNING:
            live = await self.runtime.job_logs(workload_id, w.attempt)
            if live is not None:
                return clean_job_logs(live)
        return self.store.get_logs(workload_id) or ""

    async def explain(self, workload_id: str, tenant_id: Optional[str] = None) -> dict[str, Any]:
        """Why the workload is not running yet (position, reasons)."""
        return views.explain(self, self._lookup(workload_id, tenant_id), self.clock())

    async def queue(self, tenant_id: Optional[str] = None) -> dict[str, Any]:
        return views.queue_summary(self, tenant_id)

    async def tenant_list(self) -> dict[str, Any]:
        return views.tenant_list(self)

    async def fragmentation(self) -> dict[str, Any]:
        """Stranded GPU capacity now, per node and per GPU type (and refresh the gauges)."""
        return views.fragmentation(self)

    # == nodes (see node_ops) ======================================================================
    async def nodes(self, include_ended: bool = True) -> dict[str, Any]:
        """Every node with its lifecycle state, free capacity and workloads."""
        return node_ops.nodes(self, include_ended)

    async def cordon(self, node_id: str, who: str = "admin",
                     reason: Optional[str] = None) -> dict[str, Any]:
        """No new placements on the node."""
        return node_ops.cordon(self, node_id, who, reason)

    async def uncordon(self, node_id: str, who: str = "admin") -> dict[str, Any]:
        """Placements allowed again (a drain is called off)."""
        return node_ops.uncordon(self, node_id, who)

    async def drain(self, node_id: str, who: str = "admin", deadline_s: Optional[float] = None,
                    reason: Optional[str] = None) -> dict[str, Any]:
        """Cordon; running work may end until the deadline, then it is preempted to the queue."""
        return node_ops.drain(self, node_id, who, deadline_s, reason)

    async def resources_available(self) -> dict[str, Any]:
        """Free GPUs by type and by node."""
        return node_ops.resources_available(self)

    async def autoscaler_view(self) -> dict[str, Any]:
        """What the autoscaler decides over: node samples, queued gangs, queue depth."""
        samples = node_ops.node_samples(self)
        return {"nodes": samples, "pending": node_ops.pending_gangs(self),
                "queued": sum(1 for w in self.active.values() if w.status == Status.QUEUED),
                "serving_gpus": sum(u.get("gpu", 0.0) for u in self.serving_usage.values()),
                "node_counts": self.nodebook.counts(), "at": self.clock()}

    async def autoscaler_report(self, status: dict[str, Any]) -> None:
        """The autoscaler's latest status (its loop, pools, GPU telemetry), kept for the API."""
        self.autoscaler_status = dict(status)
        self.autoscaler_status["received_at"] = self.clock()
        self.metrics.set_pools(status.get("pools") or [])

    async def gpu_utilization(self) -> dict[str, Any]:
        """Per GPU node: allocated GPUs in Orion's account, and device telemetry from NVML."""
        return node_ops.gpu_utilization(self, self.autoscaler_status)

    async def infrastructure_health(self) -> dict[str, Any]:
        """Nodes by state, recently lost nodes, and whether the control loops are alive."""
        return node_ops.infrastructure_health(self, self.autoscaler_status,
                                              await self.health())

    async def scaling_events(self, limit: int = 100, cursor: Optional[int] = None,
                             kind: Optional[str] = None, pool: Optional[str] = None
                             ) -> dict[str, Any]:
        """Scaling decisions and node changes, newest first."""
        rows = self.store.scaling_events(limit + 1, cursor, kind, pool)
        return {"items": rows[:limit],
                "next_cursor": rows[limit - 1]["id"] if len(rows) > limit else None}

    async def configure_tenants(self, tenants: list[dict], keys: dict[str, str],
                                admins: Optional[list[str]] = None, who: str = "admin",
                                policy: Optional[dict] = None) -> dict[str, Any]:
        """Replace the tenants and their key hashes, and the policy section if given (validated
        first; all or nothing). Quotas, weights and policy settings apply from the next cycle."""
        new_policy = self.policy_config
        if policy is not None:
            try:
                new_policy = PolicyConfig.model_validate(policy)
            except Exception as exc:
                raise ValidationError("invalid policy configuration", [
                    {"field": "policy." + d["field"], "problem": d["problem"]}
                    for d in _pydantic_details(exc)]) from None
        summary = self.tenants.configure(tenants, keys, admins)
        if policy is not None:
            self.store.put_setting("policy", new_policy.model_dump(mode="json"))
            self.policy_config = new_policy
            self.fair.half_life_s = new_policy.fair_share_half_life_s
        self.policy = bridge.settings_from(self.tenants.tenants.values(), self.policy_config)
        self._version += 1
        self.store.audit(who, "configure_tenants", None,
                         {"tenants": summary["tenants"], "keys": summary["keys"],
                          "version": summary["version"]}, self.clock())
        return summary

    async def metrics_text(self) -> str:
        """This scheduler's metrics in Prometheus text (gauges refreshed now)."""
        self.refresh_gauges()
        return self.metrics.render()

    def refresh_gauges(self) -> None:
        by_status, queued = workload_counts(self.active.values())
        self.metrics.set_workloads(by_status)
        self.metrics.set_queue_depth(queued)
        self.metrics.scheduler_up(self._loop_task is not None and not self._loop_task.done())
        try:
            views.fragmentation(self)  # sets the orion_gpu_free / orion_gpu_stranded gauges
        except Exception:  # the cluster view may be briefly unavailable; the next refresh retries
            log.debug("fragmentation gauges not refreshed", exc_info=True)

    async def keyring(self) -> dict[str, Any]:
        return self.tenants.keyring()

    async def audit_log(self, limit: int = 100, cursor: Optional[int] = None) -> dict[str, Any]:
        rows = self.store.audit_log(limit + 1, cursor)
        return {"items": rows[:limit], "next_cursor": rows[limit - 1]["id"] if len(rows) > limit
                else None}

    async def health(self) -> dict[str, Any]:
        store_ok, store_error = True, None
        try:
            self.store.ping()
        except Exception as exc:
            store_ok, store_error = False, str(exc)
        loop_ok = self._loop_task is not None and not self._loop_task.done()
        return {"scheduler": "ok" if loop_ok else "down", "store": "ok" if store_ok else "down",
                "store_error": store_error, "active": len(self.active), "cycles": self.cycles,
                "last_cycle": self.last_cycle}


# runtime_env keys that bring code the scheduler's own process cannot see
_CODE_CARRIERS = ("working_dir", "py_modules", "pip", "conda", "uv", "container", "image_uri")


# Ray errors that mean the run's process or node went away, not that the workload failed.
INFRA_ERRORS = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "OwnerDiedError",
                "ObjectLostError", "ObjectReconstructionFailed")


def _infrastructure_failure(error: Optional[str]) -> bool:
    return bool(error) and error.split(":", 1)[0].strip() in INFRA_ERRORS


def _check_importable(spec: WorkloadSpec) -> None:
    """Refuse a task whose module cannot be found, unless its runtime_env brings the code.

    Only the module is located (``find_spec``, which imports parent packages but not the module
    itself), so no user code runs in the scheduler.
    """
    if spec.workload_type != "task" or not spec.function:
        return
    env = spec.runtime_env or {}
    if any(env.get(k) for k in _CODE_CARRIERS) or "PYTHONPATH" in (env.get("env_vars") or {}):
        return
    module = spec.function.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValidationError(f"cannot import module {module!r} of {spec.function!r}", [
            {"field": "function", "problem": "module not importable on the cluster (install it "
                                             "or ship it with runtime_env working_dir/py_modules)"}])


_RAY_JOB_NOISE = ("Runtime env is setting up.", "Running entrypoint for job ")


def clean_job_logs(text: str) -> str:
    """The job's own output, without the lines Ray's job manager adds."""
    lines = text.splitlines(keepends=True)
    return "".join(l for l in lines if not any(n in l for n in _RAY_JOB_NOISE))


def _pydantic_details(exc: Exception) -> list[dict[str, str]]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [{"field": "", "problem": str(exc)}]
    return [{"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in errors()]
