"""Queue order: which queued workloads the cycle considers first.

The foundation orders by priority class, then by submission order. The multi-tenant policy
(fair share, deadlines) replaces ``PriorityFifoOrder`` behind the same ``QueueOrder`` interface.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class QueueItem:
    workload_id: str
    priority_rank: int      # 0 = critical … 4 = best_effort
    seq: int                # submission order (monotonic)
    tenant_id: str = "default"
    not_before: float = 0.0  # backoff: not eligible before this time


class QueueOrder(Protocol):
    def order(self, items: Sequence[QueueItem], now: float) -> list[QueueItem]:
        """Eligible items (``not_before <= now``), best first. Must not mutate ``items``."""


class PriorityFifoOrder:
    """Highest priority class first; first come, first served within a class."""

    def order(self, items: Sequence[QueueItem], now: float) -> list[QueueItem]:
        eligible = [i for i in items if i.not_before <= now]
        return sorted(eligible, key=lambda i: (i.priority_rank, i.seq))
