"""Start-up reconciliation: rebuild actual state from Ray, never from memory.

Desired state comes from the store. For each unfinished workload: adopt its run if its Ray objects
are still alive (the executor still owns the task attempt, or the Ray job of this attempt exists),
otherwise requeue it as a new attempt. Placement groups of workloads that are not active are removed.
An attempt is only ever launched under its own id (task key / job submission id), and a lost attempt
is requeued under a new one, so a workload never runs twice at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from ..models import Workload
from ..policy.live_placement import Held, held_from_record
from ..runtime.base import Runtime
from ..status import Status
from ..store.base import quarantined_count
from .driver import WorkloadDriver
from .transitions import WorkloadBook

log = logging.getLogger("orion.recovery")


async def recover(
    *,
    store: Any,
    runtime: Runtime,
    book: WorkloadBook,
    driver: WorkloadDriver,
    observe: Callable[[Workload], None],
    clock: Callable[[], float],
) -> dict[str, int]:
    """Load unfinished workloads, adopt or requeue each, remove orphaned reservations.

    ``observe`` lets the placement policy learn each workload's request mix again."""
    counts = {"queued": 0, "adopted": 0, "relaunched": 0, "requeued": 0, "orphans_removed": 0}
    workloads = store.active()  # an unreadable row is quarantined there, never retried here
    if quarantined_count(store):
        log.error("recovery skipped %d unreadable row(s) (quarantined)", quarantined_count(store))
    task_runs = await runtime.task_runs()
    live_pgs = set(runtime.orion_pg_workloads())
    jobs = [
        w
        for w in workloads
        if w.spec.workload_type == "job" and w.status in (Status.STARTING, Status.RUNNING)
    ]
    job_states = dict(
        zip(
            [w.workload_id for w in jobs],
            await asyncio.gather(*(runtime.job_state(w.workload_id, w.attempt) for w in jobs)),
        )
    )

    for w in workloads:
        book.active[w.workload_id] = w
        observe(w)
        wid = w.workload_id
        if w.status == Status.PREEMPTED:  # its stop was under way: finish it, a new attempt
            if w.spec.runs_as_task:
                await runtime.cancel_task(wid, w.attempt)
            else:
                await runtime.stop_job(wid, w.attempt)
            if wid in live_pgs:
                runtime.remove_pg(wid)
            book.requeue(w, "preempted (stopped after a restart)", new_attempt=True, backoff=False)
            counts["requeued"] += 1
            continue
        if w.status == Status.SUBMITTED:
            book.set(w, Status.QUEUED, "recovered")
        if w.status == Status.QUEUED:
            if wid in live_pgs:  # created just before a crash, never recorded as starting
                runtime.remove_pg(wid)
            counts["queued"] += 1
            continue
        if w.spec.runs_as_task:
            alive = f"{wid}:{w.attempt}" in task_runs
        else:
            state = job_states.get(wid)
            alive = state is not None
        pg = runtime.get_pg(wid) if wid in live_pgs else None
        pinned = pg is None and alive and _pinned_record(w)
        if pinned:
            # a pinned task has no group to read: its reservation is rebuilt from its record
            node = w.placement[0]["node_id"]
            pg = runtime.create_pg(wid, [w.spec.gang()[0].ray_bundle()], "PACK", nodes=[node], pinned=True)
            driver.pinned.add(wid)
        if alive:
            if w.status == Status.STARTING:
                nodes = runtime.pg_nodes(pg) if pg is not None else []
                book.set(
                    w,
                    Status.RUNNING,
                    "adopted after restart",
                    started_at=clock(),
                    worker_id=nodes[0] if nodes else None,
                    placement=(
                        w.placement if pinned else [{"bundle": i, "node_id": n} for i, n in enumerate(nodes)]
                    ),
                )
            _reserve_from(book, runtime, w, pg)
            driver.start(w, pg, adopt_running=True)
            counts["adopted"] += 1
        elif w.status == Status.STARTING and pg is not None:
            # reserved but never launched: wait for the same group and launch this attempt
            _reserve_from(book, runtime, w, pg)
            driver.start(w, pg)
            counts["relaunched"] += 1
        else:
            if pg is not None:
                runtime.remove_pg(wid)
            book.requeue(
                w, "lost on restart: its Ray objects were gone", new_attempt=(w.status == Status.RUNNING)
            )
            counts["requeued"] += 1

    for wid in live_pgs - set(book.active):
        runtime.remove_pg(wid)
        counts["orphans_removed"] += 1
    for key in task_runs:
        wid, _, attempt = key.rpartition(":")
        w = book.active.get(wid)
        # a queued workload's run (no group removal ends a pinned one) would run it twice
        if w is None or w.attempt != int(attempt) or w.status == Status.QUEUED:
            await runtime.cancel_task(wid, int(attempt))
    log.info("recovered: %s", counts)
    return counts


def _pinned_record(w: Workload) -> bool:
    """``w`` may be a pinned task (``scheduler.pin_single_bundle_tasks``): one bundle, and a
    stored node for it (a pinned task records its node when it is reserved)."""
    return (
        w.spec.runs_as_task
        and len(w.spec.gang()) == 1
        and bool(w.placement)
        and bool(w.placement[0].get("node_id"))
    )


def _reserve_from(book: WorkloadBook, runtime: Runtime, w: Workload, pg: Any) -> None:
    bundles = [b.ray_bundle() for b in w.spec.gang()]
    nodes = runtime.pg_nodes(pg) if pg is not None else []
    if nodes and all(nodes):
        held = held_from_record(w.placement, bundles)
        if [h.node_id for h in held] != nodes:  # never launched (no record): GPUs by Ray's rule
            held = [Held(n, b) for n, b in zip(nodes, bundles)]
        book.reservations[w.workload_id] = held
