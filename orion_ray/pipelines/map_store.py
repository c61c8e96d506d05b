"""Map (fan-out) items and their counters in the SQLite store (schema 5: ``map_items``,
``map_nodes``). Reads are bounded by what moved (the transitions feed), what is in flight, or a
page; writes happen inside the controller's reconcile transaction (``write_plan``), each row
update guarded by the state it leaves and the counters moved only by the rows that changed, so a
repeated or stale reconcile counts nothing twice.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

from ..errors import Conflict, QueueFull
from ..input_limits import cap_text
from ..models import Workload
from .fanout import Counters, Item, ItemPlan
from .records import CANCELLED, FAILED, PENDING, SUBMITTED, SUCCEEDED

if TYPE_CHECKING:
    from ..store.sqlite import SQLiteStore

_ITEM_COLS = "idx, status, attempt, workload_id, not_before, output, error, started_at, finished_at"
_COUNTER_COLS = "total, next_idx, running, completed, failed, cancelled, retrying"
_ENDED = ("completed", "failed", "cancelled")  # a workload's terminal statuses
_CHUNK = 500  # ids per ``IN (…)``


def counters(store: "SQLiteStore", run_id: str, node_id: str) -> Optional[Counters]:
    """A map node's counters (None: not expanded yet)."""
    rows = _q(store, f"SELECT {_COUNTER_COLS} FROM map_nodes WHERE run_id=? AND node_id=?", (run_id, node_id))
    return Counters(*rows[0]) if rows else None


def run_counters(store: "SQLiteStore", run_id: str) -> dict[str, Counters]:
    """Every expanded map node's counters in a run."""
    rows = _q(store, f"SELECT node_id, {_COUNTER_COLS} FROM map_nodes WHERE run_id=?", (run_id,))
    return {r[0]: Counters(*r[1:]) for r in rows}


def moved_items(store: "SQLiteStore", run_id: str, node_id: str, after: Optional[int]) -> list[Item]:
    """Items in flight whose workloads ended: those with a transition after id ``after`` (the
    feed: an index range over transitions first, CROSS JOIN fixing that order), or, with ``after``
    None (a sweep), every item in flight whose workload ended or is gone."""
    where = "m.run_id=? AND m.node_id=? AND m.status=?"
    cols = ", ".join("m." + c.strip() for c in _ITEM_COLS.split(","))
    if after is not None:
        sql = (
            f"SELECT DISTINCT {cols} FROM transitions t "
            "CROSS JOIN map_items m INDEXED BY map_items_workload ON m.workload_id = t.workload_id "
            f"CROSS JOIN workloads w ON w.workload_id = m.workload_id WHERE t.id > ? AND {where} "
            "AND w.status IN (?,?,?)"
        )
        params: tuple[Any, ...] = (after, run_id, node_id, SUBMITTED, *_ENDED)
    else:
        sql = (
            f"SELECT {cols} FROM map_items m LEFT JOIN workloads w ON w.workload_id = m.workload_id "
            f"WHERE {where} AND (w.workload_id IS NULL OR w.status IN (?,?,?))"
        )
        params = (run_id, node_id, SUBMITTED, *_ENDED)
    return sorted((_item_of(r) for r in _q(store, sql, params)), key=lambda i: i.idx)


def waiting_items(store: "SQLiteStore", run_id: str, node_id: str) -> list[Item]:
    """Items waiting for a retry's backoff (a partial index: never a walk over all items)."""
    rows = _q(
        store,
        f"SELECT {_ITEM_COLS} FROM map_items WHERE run_id=? AND node_id=? AND status=? AND attempt > 0",
        (run_id, node_id, PENDING),
    )
    return [_item_of(r) for r in rows]


def inflight_workloads(store: "SQLiteStore", run_id: str, node_id: str) -> list[str]:
    """The workload ids of the items in flight (to cancel them)."""
    rows = _q(
        store,
        "SELECT workload_id FROM map_items WHERE run_id=? AND node_id=? AND status=?",
        (run_id, node_id, SUBMITTED),
    )
    return [r[0] for r in rows if r[0]]


def item_values(store: "SQLiteStore", run_id: str, node_id: str, idxs: list[int]) -> dict[int, Any]:
    """The items (the values mapped over) at these indexes."""
    out: dict[int, Any] = {}
    for i in range(0, len(idxs), _CHUNK):
        part = idxs[i : i + _CHUNK]
        marks = ",".join("?" * len(part))
        rows = _q(
            store,
            f"SELECT idx, item FROM map_items WHERE run_id=? AND node_id=? AND idx IN ({marks})",
            (run_id, node_id, *part),
        )
        out.update({idx: json.loads(item) for idx, item in rows})
    return out


def outputs(
    store: "SQLiteStore", run_id: str, node_id: str
) -> list[tuple[int, str, Optional[dict[str, Any]]]]:
    """Every item's (index, state, outputs): read once, when the node ends (its fan-in)."""
    rows = _q(
        store,
        "SELECT idx, status, output FROM map_items WHERE run_id=? AND node_id=? ORDER BY idx",
        (run_id, node_id),
    )
    return [(idx, st, None if out is None else json.loads(out)) for idx, st, out in rows]


def items_page(
    store: Any, run_id: str, node_id: str, *, after: int, limit: int, state: Optional[str] = None
) -> list[Item]:
    """Up to ``limit`` items with an index above ``after``, in index order (a key range)."""
    sql = f"SELECT {_ITEM_COLS} FROM map_items WHERE run_id=? AND node_id=? AND idx > ?"
    params: list[Any] = [run_id, node_id, int(after)]
    if state:
        sql += " AND status=?"
        params.append(state)
    sql += " ORDER BY idx LIMIT ?"
    params.append(int(limit))
    return [_item_of(r) for r in _q(store, sql, tuple(params))]


def create_items(db: Any, run_id: str, node_id: str, items: list[Any]) -> None:
    """A map node's item rows (all pending) and its counters, inside the caller's transaction;
    ``OR IGNORE``: a repeated expansion keeps the first."""
    db.execute(
        "INSERT OR IGNORE INTO map_nodes(run_id, node_id, total) VALUES (?,?,?)",
        (run_id, node_id, len(items)),
    )
    db.executemany(
        "INSERT OR IGNORE INTO map_items(run_id, node_id, idx, status, item) VALUES (?,?,?,?,?)",
        [(run_id, node_id, i, PENDING, json.dumps(v, allow_nan=False)) for i, v in enumerate(items)],
    )


def reopen(db: Any, run_id: str, node_id: str) -> int:
    """Every item of an ended map node that did not succeed made runnable again, inside the
    caller's transaction, for a retry of the node that re-runs only those (the items that
    succeeded keep their outputs). An item that had started waits as a retry (its next attempt
    gets a new request id); one that never started is pending again from ``next_idx``. The
    node's row is the caller's to set back (``pending`` or ``submitted``): a map node launched
    again resumes from its stored items. Returns how many items were reopened."""
    where = "run_id=? AND node_id=? AND status IN (?, ?)"
    key = (run_id, node_id, FAILED, CANCELLED)
    first_unstarted = db.execute(
        f"SELECT MIN(idx) FROM map_items WHERE {where} AND attempt = 0", key
    ).fetchone()[0]
    started = db.execute(
        f"UPDATE map_items SET status=?, workload_id=NULL, not_before=0, output=NULL, error=NULL, "
        f"finished_at=NULL WHERE {where} AND attempt > 0",
        (PENDING, *key),
    ).rowcount
    unstarted = db.execute(
        f"UPDATE map_items SET status=?, error=NULL, finished_at=NULL WHERE {where} AND attempt = 0",
        (PENDING, *key),
    ).rowcount
    db.execute(
        "UPDATE map_nodes SET failed=0, cancelled=0, running=0, retrying=?, "
        "next_idx=COALESCE(?, next_idx) WHERE run_id=? AND node_id=?",
        (started, first_unstarted, run_id, node_id),
    )
    return int(started) + int(unstarted)


def write_plan(
    store: "SQLiteStore",
    run_id: str,
    node_id: str,
    plan: ItemPlan,
    workloads: dict[int, Workload],
    *,
    now: float,
    max_queue_size: int,
    tenant_limit: Optional[int],
    who: str = "pipelines",
) -> tuple[int, Optional[str]]:
    """Write one reconcile of a map node inside the caller's transaction: settled items, the
    launches (each item's workload submitted as a REST one is: idempotent by its request id,
    within the queue limits; the first refused launch ends the launching), the items not
    started cancelled when the node stops, and the counters by the rows that changed. Returns
    (how many item rows changed, why launching stopped or None)."""
    db = store._db
    delta = {"running": 0, "completed": 0, "failed": 0, "cancelled": 0, "retrying": 0}
    bucket = {SUCCEEDED: "completed", FAILED: "failed", CANCELLED: "cancelled", PENDING: "retrying"}
    changed, stopped, next_idx = 0, None, 0
    for it in plan.settled:
        cur = db.execute(
            "UPDATE map_items SET status=?, workload_id=?, not_before=?, output=?, error=?, finished_at=? "
            "WHERE run_id=? AND node_id=? AND idx=? AND status=? AND workload_id IS ?",
            (
                it.status,
                it.workload_id if it.status != PENDING else None,
                it.not_before,
                None if it.output is None else json.dumps(it.output, allow_nan=False),
                cap_text(it.error),
                it.finished_at,
                run_id,
                node_id,
                it.idx,
                SUBMITTED,
                it.workload_id,
            ),
        )
        if cur.rowcount:
            changed += 1
            delta["running"] -= 1
            delta[bucket[it.status]] += 1
    for it, prior in plan.launches:
        w = workloads.get(it.idx)
        if w is None:  # its workload could not be built (e.g. the item over a bound): it fails
            error = plan.build_errors.get(it.idx, "its workload could not be built")
            cur = db.execute(
                "UPDATE map_items SET status=?, attempt=?, error=?, finished_at=? "
                "WHERE run_id=? AND node_id=? AND idx=? AND status=? AND attempt=?",
                (FAILED, it.attempt, cap_text(error), now, run_id, node_id, it.idx, PENDING, prior),
            )
            bump = "failed"
        else:
            try:
                got, _created = store._submit(
                    w, who=who, max_queue_size=max_queue_size, tenant_limit=tenant_limit
                )
            except (QueueFull, Conflict) as exc:
                stopped = cap_text(exc.message)
                break
            cur = db.execute(
                "UPDATE map_items SET status=?, attempt=?, workload_id=?, "
                "started_at=COALESCE(started_at, ?), finished_at=NULL "
                "WHERE run_id=? AND node_id=? AND idx=? AND status=? AND attempt=?",
                (SUBMITTED, it.attempt, got.workload_id, now, run_id, node_id, it.idx, PENDING, prior),
            )
            bump = "running"
        if cur.rowcount:
            changed += 1
            delta[bump] += 1
            if prior:
                delta["retrying"] -= 1
            else:
                next_idx = max(next_idx, it.idx + 1)
    if plan.cancel_rest:
        cur = db.execute(
            "UPDATE map_items SET status=?, error=?, finished_at=? WHERE run_id=? AND node_id=? AND status=?",
            (CANCELLED, cap_text("not started: " + plan.cancel_rest), now, run_id, node_id, PENDING),
        )
        changed += cur.rowcount
        delta["cancelled"] += cur.rowcount
    db.execute(
        "UPDATE map_nodes SET running=running+?, completed=completed+?, failed=failed+?, "
        "cancelled=cancelled+?, retrying=CASE WHEN ? THEN 0 ELSE retrying+? END, "
        "next_idx=CASE WHEN ? THEN total ELSE MAX(next_idx, ?) END WHERE run_id=? AND node_id=?",
        (
            delta["running"],
            delta["completed"],
            delta["failed"],
            delta["cancelled"],
            bool(plan.cancel_rest),
            delta["retrying"],
            bool(plan.cancel_rest),
            next_idx,
            run_id,
            node_id,
        ),
    )
    return changed, stopped


def _q(store: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return list(store._query(sql, params))


def _item_of(row: tuple[Any, ...]) -> Item:
    idx, status, attempt, wid, not_before, output, error, started, finished = row
    return Item(
        idx=idx,
        status=status,
        attempt=attempt,
        workload_id=wid,
        not_before=not_before,
        output=None if output is None else json.loads(output),
        error=error,
        started_at=started,
        finished_at=finished,
    )
