"""The region agent's full listing for a resync (docs/regions.md, "Resync"; the control plane's
side: ``policy/status_resync.py``).

Read from the region's store: the last transition id first, then every workload not ended and those
ended since ``since``, each in the shape of a status change without its ``seq``. A transition that
lands between the two reads is both in the listing and, later, a change after ``through_seq``:
applied twice, forward both times, so nothing is missed and nothing moves back for good.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from ..policy.direct_usage import demand_of
from ..store.sqlite import SQLiteStore

STATUSES = {"submitted", "queued", "starting", "running", "preempted", "completed", "failed", "cancelled"}
_LAST = "(SELECT {col} FROM transitions t WHERE t.workload_id = w.workload_id ORDER BY t.id DESC LIMIT 1)"
_COLS = "w.workload_id, w.status, w.request_id, w.tenant_id, w.spec, " + ", ".join(
    _LAST.format(col=c) for c in ("at", "reason")
)
MAX_ENDED = 10_000  # the newest ended ones; older ones the control plane saw end, or never will

Origin = Callable[[Optional[str], str, str], Optional[tuple[str, int]]]


def spec_of(spec_text: str) -> dict[str, Any]:
    """A stored spec as a mapping (empty when unreadable)."""
    try:
        got = json.loads(spec_text)
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def listing(store: SQLiteStore, origin: Origin, since: float) -> tuple[int, list[dict[str, Any]]]:
    """``(last transition id, items)``; ``origin(request_id, tenant, spec_text)`` names a
    control-plane dispatch's ``(run, generation)``."""
    top = int((store._query("SELECT COALESCE(MAX(id), 0) FROM transitions", ()) or [(0,)])[0][0])
    rows = store._query(
        f"SELECT {_COLS} FROM workloads w WHERE w.status NOT IN ('completed', 'failed', 'cancelled')", ()
    )
    ended = store._query(
        f"SELECT {_COLS} FROM workloads w WHERE w.status IN ('completed', 'failed', 'cancelled')"
        " AND w.workload_id IN (SELECT workload_id FROM transitions WHERE at >= ?"
        " AND status IN ('completed', 'failed', 'cancelled') ORDER BY id DESC LIMIT ?)",
        (since, MAX_ENDED),
    )
    items = []
    for wid, status, rid, tenant, spec, at, reason in list(rows) + list(ended):
        if status not in STATUSES:
            continue
        item: dict[str, Any] = {
            "workload_id": wid,
            "status": status,
            "at": float(at if at is not None else since),
            "reason": (reason or "")[:2000],
            "tenant_id": tenant,
            "region_workload_id": wid,
            "demand": demand_of(spec_of(spec)),
        }
        who = origin(rid, tenant, spec)
        if who is not None:
            item.update(workload_id=who[0], generation=who[1])
        items.append(item)
    return top, items
