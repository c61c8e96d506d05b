"""What the pipeline metrics take from the controller and the store. Pure but for the store reads
(``counts``): the host (``scheduler/pipelines_host.py``) moves them into ``OrionMetrics``.

- ``orion_pipeline_runs{status}``: runs in each state (a gauge, counted in the store);
- ``orion_pipeline_nodes{state}``: nodes of unfinished runs in each state;
- ``orion_pipeline_tasks_queued``: node workloads waiting in the scheduler's queue;
- ``orion_pipeline_node_seconds{status}``: a node's time from its first launch to its end;
- ``orion_pipeline_node_retries{kind}``: node attempts retried after a ``user`` or ``system`` failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .records import NODE_TERMINAL, RUN_ACTIVE

MAX_KEPT = 10_000  # node durations kept between two drains (a bound, never reached per tick)


@dataclass
class Observed:
    """Retries and node durations seen by reconciles since the last ``drain``."""

    retries: dict[str, int] = field(default_factory=dict)
    durations: list[tuple[str, float]] = field(default_factory=list)  # (node's end state, seconds)

    def add(self, run: Any, plan: Any) -> None:
        """Take what one reconcile's plan changed."""
        for _node, kind in plan.retries:
            self.retries[kind] = self.retries.get(kind, 0) + 1
        for n in plan.changed:
            if n.status in NODE_TERMINAL and n.started_at is not None and n.finished_at is not None:
                if len(self.durations) < MAX_KEPT:
                    self.durations.append((n.status, max(0.0, n.finished_at - n.started_at)))

    def drain(self) -> tuple[dict[str, int], list[tuple[str, float]]]:
        """What was seen, and start again."""
        out = (self.retries, self.durations)
        self.retries, self.durations = {}, []
        return out


def counts(store: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Runs per state, and nodes of unfinished runs per state, from the store."""
    runs = {
        r[0]: int(r[1])
        for r in store._query("SELECT status, COUNT(*) FROM pipeline_runs GROUP BY status", ())
    }
    nodes = {
        r[0]: int(r[1])
        for r in store._query(
            "SELECT n.status, COUNT(*) FROM node_runs n JOIN pipeline_runs r ON r.run_id = n.run_id "
            "WHERE r.status IN (?, ?) GROUP BY n.status",
            RUN_ACTIVE,
        )
    }
    return runs, nodes


def queued_tasks(workloads: Any) -> int:
    """Node workloads (labelled ``orion.pipeline``) queued in the scheduler."""
    return sum(
        1
        for w in workloads
        if w.status.value == "queued" and "orion.pipeline" in (w.spec.metadata.labels or {})
    )
