"""The store interface: durable desired state. SQLite is the embedded default; others may follow."""

from __future__ import annotations

from typing import Callable, Optional, Protocol

from ..models import Workload


class Transition(dict):
    """One recorded status change: ``{"status", "at", "attempt", "reason"}``."""


class WorkloadStore(Protocol):
    def insert(self, workload: Workload, transitions: list[tuple[str, float, str]]) -> None:
        """Persist a new workload with its first transitions, atomically."""

    def update(self, workload: Workload, transition: Optional[tuple[str, float, str]]) -> None:
        """Persist a workload's new state and (if given) the transition that led to it."""

    def update_many(self, changes: list[tuple[Workload, Optional[tuple[str, float, str]]]]) -> None:
        """Several ``update``s in one durable write."""

    def submit(
        self,
        workload: Workload,
        *,
        who: str,
        max_queue_size: int,
        tenant_limit: Optional[int] = None,
        check: Optional[Callable[[Workload], None]] = None,
    ) -> tuple[Workload, bool]:
        """A new workload in one transaction: idempotency by ``request_id``, queue limits, row,
        first transitions, audit. ``(workload, created)``; the first one for a repeated id."""

    def set_waits(self, changes: list[tuple[Workload, Optional[list[dict]]]]) -> None:
        """Persist queued workloads' ``reason`` and detailed wait reasons (for readers)."""

    def count_active(self, tenant_id: Optional[str] = None) -> int: ...

    def count_queued(self, cap: int) -> int: ...

    def queued_ahead(self, rank: int, seq: int, tenant_id: Optional[str] = None) -> tuple[int, int]:
        """Queued ahead by class then arrival: ``(higher class, same class)``."""

    def queued_among(self, workload_ids: list[str]) -> set[str]: ...

    def after_seq(self, seq: int, limit: int = 1000) -> list[Workload]:
        """Unfinished workloads with ``seq`` above ``seq``, in order (the scheduler's intake)."""

    def max_seq(self) -> int: ...

    def wait_of(self, workload_id: str) -> Optional[list[dict]]: ...

    def raw_setting(self, name: str) -> Optional[str]: ...

    def get(self, workload_id: str) -> Optional[Workload]: ...

    def find_by_request_id(self, tenant_id: str, request_id: str) -> Optional[Workload]: ...

    def list(
        self,
        *,
        status: Optional[str] = None,
        tenant_id: Optional[str] = None,
        limit: int = 50,
        before_seq: Optional[int] = None,
    ) -> list[Workload]: ...

    def active(self) -> list[Workload]:
        """Every workload not in a terminal status (what the scheduler rebuilds from)."""

    def history(self, workload_id: str) -> list[dict]: ...

    def set_logs(self, workload_id: str, logs: str) -> None: ...

    def get_logs(self, workload_id: str) -> Optional[str]: ...

    def put_setting(self, name: str, value) -> None:
        """Persist a JSON-serialisable setting (e.g. the running tenants configuration)."""

    def get_setting(self, name: str, default=None): ...

    def audit(self, who: str, action: str, target: Optional[str], details: dict, at: float) -> None:
        """Record who did what, when."""

    def audit_log(self, limit: int = 100, before_id: Optional[int] = None) -> list[dict]: ...

    def add_scaling_event(self, event: dict) -> int:
        """Record a scaling decision or a node-lifecycle change; returns its id."""

    def update_scaling_event(
        self, event_id: int, outcome: str, duration_s: Optional[float], **details
    ) -> None: ...

    def scaling_events(
        self,
        limit: int = 100,
        before_id: Optional[int] = None,
        kind: Optional[str] = None,
        pool: Optional[str] = None,
    ) -> list[dict]: ...

    def ping(self) -> None:
        """Raise if the store cannot answer."""

    def close(self) -> None: ...


def quarantined_count(store: object) -> int:
    """How many stored rows ``store`` found unreadable and skipped (0 for a store that does not
    quarantine): reported in ``/health`` so an operator sees them."""
    count = getattr(store, "quarantined_count", None)
    return int(count()) if callable(count) else 0
