"""The controller's batched reads: what changed since a transition id, and the states of many node
workloads in one query. No Ray here.

Why: a reconcile used to read every node row of its run and ``store.get`` (a full parse of the
spec) every submitted node's workload, so a 1,000-node run cost thousands of reads per reconcile.
These reads let a reconcile touch only what moved: the change feed names the workloads with new
transitions per run, and ``workload_states`` reads just their status (and, once ended, result
and error) with ``IN (...)``, without parsing their specs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ..status import Status
from .records import RUN_ACTIVE
from .runs_store import _rows

if TYPE_CHECKING:
    from ..store.sqlite import SQLiteStore

CHUNK = 500  # ids per IN (...): under SQLite's bound on host parameters, with room to spare


@dataclass(frozen=True)
class WorkloadState:
    """What the engine reads of a node's workload (``engine.WorkloadView``)."""

    status: Status
    result: Any = None
    error: Optional[str] = None
    workload_id: str = field(default="", compare=False)
    attempt: int = 1  # the workload's own attempts (more than one: the scheduler restarted it)

    def model_copy(self, *, update: dict[str, Any]) -> "WorkloadState":
        """A copy with ``update`` applied (as a ``Workload``'s, for code that rewrites the view the
        engine gets, e.g. large outputs replaced by artifact references)."""
        return replace(self, **update)


def workload_states(store: "SQLiteStore", workload_ids: Iterable[str]) -> dict[str, Optional[WorkloadState]]:
    """The state of each workload: None for one not in the store or whose row cannot be read back
    (the engine counts it a failed attempt, as it did a ``store.get`` that found nothing). Result
    and error are parsed only for the ended ones: a running workload's state is its status."""
    ids = sorted(set(workload_ids))
    out: dict[str, Optional[WorkloadState]] = dict.fromkeys(ids)
    for i in range(0, len(ids), CHUNK):
        part = ids[i : i + CHUNK]
        marks = ",".join("?" * len(part))
        rows = _rows(
            store,
            f"SELECT workload_id, status, state FROM workloads WHERE workload_id IN ({marks})",
            tuple(part),
        )
        for wid, status, state in rows:
            out[wid] = _state_of(wid, status, state)
    return out


def _state_of(wid: str, status: str, state: str) -> Optional[WorkloadState]:
    try:
        st = Status(status)
        if not st.terminal:
            return WorkloadState(st, workload_id=wid)
        fields = json.loads(state)
        error = fields.get("error")
        return WorkloadState(
            st,
            fields.get("result"),
            None if error is None else str(error),
            workload_id=wid,
            attempt=int(fields.get("attempt") or 1),
        )
    except (ValueError, TypeError, AttributeError):  # an unreadable row: as if it were gone
        return None


def changes_since(store: "SQLiteStore", after: int) -> dict[str, set[str]]:
    """Unfinished runs one of whose node (or map item) workloads has a transition after id
    ``after``, each with those workloads (an index range over transitions, then an index lookup
    per row)."""
    rows = _rows(
        store,
        # CROSS JOIN: transitions' id range stays the outer loop (SQLite would otherwise walk
        # every node or item row ever written); a map node's items are its workloads
        "SELECT n.run_id, t.workload_id FROM transitions t "
        "CROSS JOIN node_runs n ON n.workload_id = t.workload_id "
        "JOIN pipeline_runs r ON r.run_id = n.run_id WHERE t.id > ? AND r.status IN (?, ?) "
        "UNION ALL SELECT m.run_id, t.workload_id FROM transitions t "
        "CROSS JOIN map_items m ON m.workload_id = t.workload_id "
        "JOIN pipeline_runs r ON r.run_id = m.run_id WHERE t.id > ? AND r.status IN (?, ?)",
        (after, *RUN_ACTIVE, after, *RUN_ACTIVE),
    )
    out: dict[str, set[str]] = {}
    for run_id, wid in rows:
        out.setdefault(run_id, set()).add(wid)
    return out
