"""Usage records: who held what, where, from when to when (requested and, where known, used).

A batch workload's records come from its status history: each stretch from ``starting`` (its
placement group holds the capacity from then) to the next status that gives the capacity back
(``preempted``, ``queued``, ``completed``, ``failed``, ``cancelled``) is one segment, so a preempted
and restarted workload is charged for each run it actually had and nothing for the time it waited.
A serving replica's records are replica-hours with the replica's resources, and carry the tokens
its ``/v1`` answers reported. Capacity records are node-hours of a pool (what idle cost is
measured against).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Optional, Sequence

GIB = 1024.0**3
HOLDING = frozenset({"starting", "running"})
KINDS = ("workload", "replica")


@dataclass(frozen=True)
class UsageRecord:
    """One segment of held resources. ``gpus`` may be a fraction (a shared GPU)."""

    kind: str  # "workload" (batch) or "replica" (serving)
    ref: str  # workload id, or deployment/replica
    tenant: str
    pool: str
    market: str
    start: float
    end: float
    gpus: float = 0.0
    cpus: float = 0.0
    memory_gib: float = 0.0
    gpu_type: Optional[str] = None
    used_gpus: Optional[float] = None  # telemetry, where it exists
    used_cpus: Optional[float] = None
    used_memory_gib: Optional[float] = None
    tokens: int = 0

    @property
    def hours(self) -> float:
        """Length of the segment in hours."""
        return max(0.0, self.end - self.start) / 3600.0

    def charged(self) -> tuple[float, float, float]:
        """(GPUs, vCPUs, GiB) charged per hour: max(requested, used) of each."""
        return (
            max(self.gpus, self.used_gpus or 0.0),
            max(self.cpus, self.used_cpus or 0.0),
            max(self.memory_gib, self.used_memory_gib or 0.0),
        )

    def clip(self, lo: float, hi: float) -> Optional["UsageRecord"]:
        """The part of the segment inside [lo, hi) (tokens split by time), or ``None``."""
        s, e = max(self.start, lo), min(self.end, hi)
        if e <= s:
            return None
        if s == self.start and e == self.end:
            return self
        share = (e - s) / (self.end - self.start) if self.end > self.start else 0.0
        return replace(self, start=s, end=e, tokens=int(round(self.tokens * share)))


@dataclass(frozen=True)
class CapacityRecord:
    """Node-hours a pool offered: ``nodes`` nodes of the given shape from ``start`` to ``end``."""

    pool: str
    market: str
    start: float
    end: float
    gpus: float = 0.0  # per node
    cpus: float = 0.0
    memory_gib: float = 0.0
    nodes: int = 1
    gpu_type: Optional[str] = None
    instance_type: Optional[str] = None

    def clip(self, lo: float, hi: float) -> Optional["CapacityRecord"]:
        """The part inside [lo, hi), or ``None``."""
        s, e = max(self.start, lo), min(self.end, hi)
        return None if e <= s else replace(self, start=s, end=e)


def segments(history: Sequence[tuple[str, float]], now: float) -> list[tuple[float, float]]:
    """The (start, end) stretches a workload held capacity, from its ordered ``(status, at)``
    transitions; a stretch still open ends at ``now``."""
    out: list[tuple[float, float]] = []
    start: Optional[float] = None
    for status, at in history:
        if status in HOLDING:
            if start is None:
                start = at
        elif start is not None:
            out.append((start, max(start, at)))
            start = None
    if start is not None:
        out.append((start, max(start, now)))
    return out


def workload_records(
    *,
    workload_id: str,
    tenant: str,
    history: Sequence[tuple[str, float]],
    bundles: Iterable[dict],
    gpu_type: Optional[str],
    pool: str,
    market: str,
    now: float,
) -> list[UsageRecord]:
    """A batch workload's usage records: one per held stretch, with the gang's total request
    (Ray bundle units: ``GPU``, ``CPU``, ``memory`` in bytes)."""
    gpus = cpus = mem = 0.0
    for b in bundles:
        gpus += float(b.get("GPU", 0.0))
        cpus += float(b.get("CPU", 0.0))
        mem += float(b.get("memory", 0.0)) / GIB
    return [
        UsageRecord(
            kind="workload",
            ref=workload_id,
            tenant=tenant,
            pool=pool,
            market=market,
            start=s,
            end=e,
            gpus=gpus,
            cpus=cpus,
            memory_gib=mem,
            gpu_type=gpu_type,
        )
        for s, e in segments(history, now)
    ]
