"""The API replica's own access to the store: reads never touch the scheduler, and a submission
is one transaction written here.

The replica runs on the node that holds the SQLite file (``serve_app`` pins it to the head). Reads
use a read-only WAL connection, which never blocks the scheduler's writes and sees each commit at
once. A submission is written by one writer thread (so a wait for SQLite's write lock never
stalls the replica's event loop), after which the scheduler is notified without waiting; it also
tails the store by ``seq`` (``scheduler/ingest.py``), so a lost notification costs one tick.

Positions are the scheduler's: by the policy's order when the queue is shallow (the order the
scheduler stores after each cycle), else by class then arrival, counted over an index.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from .. import tracing
from ..config import PolicyConfig
from ..errors import NotFound
from ..models import Workload, WorkloadSpec
from ..scheduler.ingest import ORDER_SETTING, SHALLOW_QUEUE, new_workload
from ..scheduler.intake import check_spec
from ..scheduler.tenants import TenantRegistry
from ..scheduler.views import explain_body, queued_reasons, state_reason
from ..status import Status
from ..store import SQLiteStore


class _Cached:
    """A setting parsed again only when its stored text changes."""

    def __init__(self, name: str, parse: Callable[[Optional[str]], Any]):
        self.name, self.parse = name, parse
        self.raw: Optional[str] = "\0"  # never a stored text: the first read parses
        self.value: Any = None

    def get(self, store: SQLiteStore) -> Any:
        raw = store.raw_setting(self.name)
        if raw != self.raw:
            self.value, self.raw = self.parse(raw), raw
        return self.value


class StoreAccess:
    """Reads and submissions straight on the store, for one API replica."""

    def __init__(
        self,
        path: str,
        *,
        max_queue_size: int,
        synchronous: str = "normal",
        policy: Optional[PolicyConfig] = None,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = 2000,
        read_busy_timeout_ms: int = 50,
        store_config: Optional[dict] = None,
    ):
        self.path = path
        # ``orion.store`` when it is not the SQLite file at ``path`` (backend postgres)
        self.store_config = store_config
        # the writer waits for the lock in its own thread; reads run on the replica's event
        # loop, so a locked store answers them 503 quickly instead of freezing the replica
        self.busy_timeout_ms = busy_timeout_ms
        self.max_queue_size = max_queue_size
        self.synchronous = synchronous
        self.clock = clock
        self.reader = self._open(read_only=True, busy_timeout_ms=read_busy_timeout_ms)
        self._writer: Optional[SQLiteStore] = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="orion-store-write")
        default = policy or PolicyConfig()
        self._policy = _Cached(
            "policy", lambda raw: PolicyConfig.model_validate_json(raw) if raw else default
        )
        self._tenants = _Cached("tenants", lambda raw: TenantRegistry(self.reader))
        self._order = _Cached(ORDER_SETTING, lambda raw: json.loads(raw) if raw else [])

    def _open(self, *, read_only: bool, busy_timeout_ms: int) -> SQLiteStore:
        """A connection to the store: the SQLite file at ``path``, or ``store_config``'s backend."""
        if self.store_config and self.store_config.get("backend") == "postgres":
            from ..config import StoreConfig
            from ..store.open import open_store

            cfg = StoreConfig.model_validate(self.store_config)
            return open_store(cfg, read_only=read_only, busy_timeout_ms=busy_timeout_ms)
        if read_only:
            return SQLiteStore(self.path, read_only=True, busy_timeout_ms=busy_timeout_ms)
        return SQLiteStore(self.path, self.synchronous, busy_timeout_ms=busy_timeout_ms)

    def close(self) -> None:
        """Close both connections (tests; a replica keeps them for its life)."""
        self._pool.shutdown(wait=True)
        if self._writer is not None:
            self._writer.close()
        self.reader.close()

    # -- settings --------------------------------------------------------------------------------
    def policy(self) -> PolicyConfig:
        return self._policy.get(self.reader)

    def tenants(self) -> TenantRegistry:
        return self._tenants.get(self.reader)

    def keyring(self) -> dict[str, Any]:
        """The tenants' key hashes and the admin keys, as the scheduler persisted them."""
        return self.tenants().keyring()

    # -- a submission ----------------------------------------------------------------------------
    def writes_here(self, spec: WorkloadSpec) -> bool:
        """False when the spec needs a check only the scheduler can make (the deadline forecast,
        capacity back-pressure): such a submission goes through the scheduler as before."""
        p = self.policy()
        if p.reject_when_capacity_unavailable:
            return False
        return not (spec.deadline is not None and p.refuse_infeasible_deadlines)

    async def submit(self, spec: WorkloadSpec, tenant_id: str, who: str) -> Workload:
        """Check, then write in one transaction (in the writer thread); returns the stored
        workload (the first one for a repeated ``request_id``)."""
        from ..scheduler.intake import allowed_modules, check_importable  # the head node's environment

        check_importable(spec)
        tenants, policy = self.tenants(), self.policy()
        check_spec(
            spec,
            tenant_id,
            protected=policy.preemption.protected_classes,
            known=tenants.known(tenant_id),
            tenant=tenants.get(tenant_id),
            by_admin=who == "admin",
            allowed_modules=allowed_modules(tenants.get(tenant_id)),
        )
        limit = policy.tenant_queue_limit(tenants.get(tenant_id), self.max_queue_size)
        with tracing.span("orion.submit", tenant_id=tenant_id, workload_type=spec.workload_type) as span:
            w = new_workload(spec, tenant_id, self.clock())  # keeps this span's traceparent

            def write() -> Workload:
                if self._writer is None:
                    self._writer = self._open(read_only=False, busy_timeout_ms=self.busy_timeout_ms)
                return self._writer.submit(
                    w, who=who, max_queue_size=self.max_queue_size, tenant_limit=limit
                )[0]

            got = await asyncio.get_running_loop().run_in_executor(self._pool, write)
            if span is not None:  # a repeated request_id answers the first workload
                span.set_attribute("orion.workload_id", got.workload_id)
            return got

    def ack(self, w: Workload) -> dict[str, Any]:
        """The acknowledgement from the store alone (no forecast: that is the scheduler's)."""
        return {
            "workload_id": w.workload_id,
            "status": w.status.value,
            "queue_position": self.position(w),
            "estimated_start": None,
            "estimated_completion": None,
        }

    def shallow(self) -> bool:
        """Whether the queue is short enough for the scheduler to forecast its starts."""
        return self.reader.count_queued(SHALLOW_QUEUE + 1) <= SHALLOW_QUEUE

    # -- positions -------------------------------------------------------------------------------
    def positions(self, w: Workload) -> tuple[Optional[int], Optional[int]]:
        """(overall, within its tenant), as the scheduler's ``get``/``_position`` reports
        them: the policy's order for a shallow queue, else class then arrival."""
        if w.status != Status.QUEUED:
            return None, None
        if self.shallow():
            order = self._order.get(self.reader)  # as of the last cycle: drop who has left
            still = self.reader.queued_among([wid for wid, _ in order])
            order = [(wid, t) for wid, t in order if wid in still]
            ids = [wid for wid, _ in order]
            if w.workload_id in ids:
                mine = [wid for wid, t in order if t == w.tenant_id]
                return ids.index(w.workload_id) + 1, mine.index(w.workload_id) + 1
        rank, seq = w.priority.rank, w.seq
        overall = 1 + sum(self.reader.queued_ahead(rank, seq))
        return overall, 1 + sum(self.reader.queued_ahead(rank, seq, w.tenant_id))

    def position(self, w: Workload) -> Optional[int]:
        if w.status != Status.QUEUED:
            return None
        if not self.shallow():  # the common deep-queue case: one count, not two
            return 1 + sum(self.reader.queued_ahead(w.priority.rank, w.seq))
        return self.positions(w)[0]

    # -- reads -----------------------------------------------------------------------------------
    def workload(self, workload_id: str, tenant_id: Optional[str]) -> Workload:
        """The stored workload; 404 for an unknown id or another tenant's (no leak)."""
        w = self.reader.get(workload_id)
        if w is None or (tenant_id is not None and w.tenant_id != tenant_id):
            raise NotFound(f"no workload {workload_id!r}")
        return w

    def get(self, workload_id: str, tenant_id: Optional[str]) -> dict[str, Any]:
        """``GET /api/v1/workloads/{id}``: the workload, its history and queue position."""
        w = self.workload(workload_id, tenant_id)
        out = w.public(history=self.reader.history(workload_id))
        out["queue_position"] = self.position(w)
        return out

    def list(
        self, status: Optional[str], tenant_id: Optional[str], limit: int, cursor: Optional[int]
    ) -> dict[str, Any]:
        """Newest first, paged by ``seq`` (the scheduler's ``list``, read here)."""
        rows = self.reader.list(status=status, tenant_id=tenant_id, limit=limit + 1, before_seq=cursor)
        next_cursor = rows[limit - 1].seq if len(rows) > limit else None
        return {"items": [w.public() for w in rows[:limit]], "next_cursor": next_cursor}

    def stored_logs(self, w: Workload) -> Optional[str]:
        """The stored logs, or None when only the scheduler has them (a running job's)."""
        if w.spec.workload_type == "job" and w.status == Status.RUNNING:
            return None
        return self.reader.get_logs(w.workload_id) or ""

    def audit_log(self, limit: int, cursor: Optional[int]) -> dict[str, Any]:
        rows = self.reader.audit_log(limit + 1, cursor)
        return {"items": rows[:limit], "next_cursor": rows[limit - 1]["id"] if len(rows) > limit else None}

    def explain(self, workload_id: str, tenant_id: Optional[str]) -> dict[str, Any]:
        """Explain's stored parts (position, backoff, the last cycle's reasons, what is ahead),
        for when the scheduler cannot answer in time. The forecast and the autoscaler's view
        are live, so they are absent here (``no_estimate``)."""
        w = self.workload(workload_id, tenant_id)
        now = self.clock()
        reasons: list[dict[str, str]] = []
        position: dict[str, Optional[int]] = {"tenant": None, "overall": None}
        if w.status == Status.QUEUED:
            overall, mine = self.positions(w)
            position = {"overall": overall, "tenant": mine}
            higher, same = self.reader.queued_ahead(w.priority.rank, w.seq)
            reasons = queued_reasons(w, now, self.reader.wait_of(workload_id) or [], higher=higher, same=same)
            if not reasons:
                reasons.append(
                    {"code": "next_cycle", "message": "eligible: the next scheduling cycle will consider it"}
                )
            reasons.append(
                {
                    "code": "no_estimate",
                    "message": "no estimate: the scheduler did "
                    "not answer in time (these reasons are its last stored ones)",
                }
            )
        else:
            reasons.append(state_reason(w))
        return explain_body(w, position, reasons, None, None)
