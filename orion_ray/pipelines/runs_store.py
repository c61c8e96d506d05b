"""Pipeline runs and node runs in the SQLite store (schema 4): a submission is one transaction, and
so is each reconcile of a run (its node workloads, its node rows and its own row together).

These functions work on a ``SQLiteStore`` (its connection, lock and transaction; the tables are
schema 4 in ``store/schema.py``). They live here rather than in ``orion_ray.store`` because their
rows are the pipeline records: the store, an adapter, imports nothing above the model layer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..errors import Conflict, QueueFull
from ..input_limits import cap_text
from ..models import Workload
from .records import CANCELLING, PENDING, RUN_ACTIVE, RUNNING, SUBMITTED, NodeRun, PipelineRun

if TYPE_CHECKING:
    from ..store.sqlite import SQLiteStore

_RUN_COLS = (
    "seq, run_id, tenant_id, submission_id, status, body, created_at, updated_at, finished_at, error, "
    "retries, retried_at"
)
_NODE_COLS = (
    "node_id, status, attempt, workload_id, not_before, outputs, error, reason, started_at, finished_at, "
    "user_failures, system_failures, attempt_base, user_base"
)


def fingerprint(body: dict[str, Any]) -> str:
    """A canonical form that tells a repeated submission from a conflicting one."""
    return json.dumps(body, sort_keys=True)


def create_run(
    store: "SQLiteStore", run: PipelineRun, node_ids: list[str], *, who: str
) -> tuple[PipelineRun, bool]:
    """Store a new run and its pending nodes, with an audit record, in one transaction.
    Returns ``(run, True)``, or ``(the first run, False)`` for a ``submission_id`` the tenant
    used before with the same body; ``Conflict`` (409) for one used with another body."""
    with store._lock, store._tx():
        out = insert_run(store, run, node_ids, who=who)
    return out


def insert_run(
    store: "SQLiteStore", run: PipelineRun, node_ids: list[str], *, who: str
) -> tuple[PipelineRun, bool]:
    """``create_run`` inside the caller's transaction (a schedule's fire writes its run and its
    own bookkeeping together)."""
    body = fingerprint(run.body)
    db = store._db
    row = db.execute(
        f"SELECT {_RUN_COLS}, fingerprint FROM pipeline_runs WHERE tenant_id=? AND submission_id=?",
        (run.tenant_id, run.submission_id),
    ).fetchone()
    if row is not None:
        if row[-1] != body:
            raise Conflict(
                f"submission_id {run.submission_id!r} was already used with a different pipeline",
                [{"field": "runtime_params.submission_id", "problem": "reused"}],
            )
        return _run_of(row[:-1]), False
    cur = db.execute(
        "INSERT INTO pipeline_runs(run_id, tenant_id, submission_id, status, body, fingerprint, "
        "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
        (
            run.run_id,
            run.tenant_id,
            run.submission_id,
            run.status,
            json.dumps(run.body),
            body,
            run.created_at,
            run.updated_at,
        ),
    )
    run.seq = int(cur.lastrowid or 0)
    db.executemany(
        "INSERT INTO node_runs(run_id, node_id, position, status) VALUES (?,?,?,?)",
        [(run.run_id, node_id, i, PENDING) for i, node_id in enumerate(node_ids)],
    )
    db.execute(
        "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
        (
            run.created_at,
            who,
            "pipeline_submit",
            run.run_id,
            json.dumps({"tenant_id": run.tenant_id, "submission_id": run.submission_id}),
        ),
    )
    return run, True


def find_run(store: "SQLiteStore", submission_id: str, tenant_id: Optional[str]) -> Optional[PipelineRun]:
    """The run a tenant knows by ``submission_id`` (the admin, ``tenant_id`` None: the newest run
    of that id, whoever's)."""
    if tenant_id is None:
        rows = _rows(
            store,
            f"SELECT {_RUN_COLS} FROM pipeline_runs WHERE submission_id=? ORDER BY seq DESC LIMIT 1",
            (submission_id,),
        )
    else:
        rows = _rows(
            store,
            f"SELECT {_RUN_COLS} FROM pipeline_runs WHERE tenant_id=? AND submission_id=?",
            (tenant_id, submission_id),
        )
    return _run_of(rows[0]) if rows else None


def get_run(store: "SQLiteStore", run_id: str, *, body: bool = True) -> Optional[PipelineRun]:
    """The run (``body=False``: without its submission, for a reader that keeps it parsed)."""
    rows = _rows(store, f"SELECT {_cols(body)} FROM pipeline_runs WHERE run_id=?", (run_id,))
    return _run_of(rows[0]) if rows else None


def active_runs(
    store: "SQLiteStore", limit: int = 1000, after_seq: int = 0, *, body: bool = True
) -> list[PipelineRun]:
    """Unfinished runs, oldest first, from ``after_seq`` on (the controller walks them in pages;
    ``body=False``: without their submissions, which it keeps parsed)."""
    rows = _rows(
        store,
        f"SELECT {_cols(body)} FROM pipeline_runs WHERE status IN (?, ?) AND seq > ? ORDER BY seq LIMIT ?",
        (*RUN_ACTIVE, after_seq, limit),
    )
    return [_run_of(r) for r in rows]


def runs_touched_since(store: "SQLiteStore", after: int, limit: int = 1000) -> list[PipelineRun]:
    """Unfinished runs one of whose node workloads has a transition after id ``after`` (the
    controller's change feed: an index range over transitions, then one lookup per row; CROSS
    JOIN keeps SQLite from walking every node or item row ever written instead)."""
    rows = _rows(
        store,
        f"SELECT {', '.join('r.' + c.strip() for c in _RUN_COLS.split(','))} FROM pipeline_runs r "
        "WHERE r.status IN (?, ?) AND r.run_id IN (SELECT n.run_id FROM transitions t "
        "CROSS JOIN node_runs n ON n.workload_id = t.workload_id WHERE t.id > ? "
        "UNION SELECT m.run_id FROM transitions t CROSS JOIN map_items m ON m.workload_id = t.workload_id "
        "WHERE t.id > ?) ORDER BY r.seq LIMIT ?",
        (*RUN_ACTIVE, after, after, limit),
    )
    return [_run_of(r) for r in rows]


def node_runs(store: "SQLiteStore", run_id: str) -> list[NodeRun]:
    """The run's nodes, in the spec's order."""
    rows = _rows(store, f"SELECT {_NODE_COLS} FROM node_runs WHERE run_id=? ORDER BY position", (run_id,))
    return [_node_of(r) for r in rows]


def request_cancel(store: "SQLiteStore", run: PipelineRun, *, who: str, now: float) -> PipelineRun:
    """Mark a running run ``cancelling`` (the controller stops its nodes); idempotent: a run that
    is cancelling or finished is returned as it is."""
    with store._lock, store._tx():
        cur = store._db.execute(
            "UPDATE pipeline_runs SET status=?, updated_at=? WHERE run_id=? AND status=?",
            (CANCELLING, now, run.run_id, RUNNING),
        )
        if cur.rowcount:
            store._db.execute(
                "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
                (now, who, "pipeline_cancel", run.run_id, json.dumps({"tenant_id": run.tenant_id})),
            )
    return get_run(store, run.run_id) or run


def commit_reconcile(
    store: "SQLiteStore",
    run: PipelineRun,
    *,
    nodes: list[NodeRun],
    launches: list[tuple[NodeRun, Workload]],
    max_queue_size: int,
    tenant_limit: Optional[int] = None,
    who: str = "pipelines",
    extra: Optional[Callable[[], None]] = None,
) -> list[Workload]:
    """One reconcile of ``run``, in ONE transaction: each launch's workload is submitted as a REST
    submission is (idempotent by its ``request_id`` ``submission/node/attempt``, within the queue
    limits), its node row records that workload; the changed ``nodes`` and the run's own row are
    written. A launch the queue has no room for leaves its node pending with the reason, for a
    later reconcile. Returns the workloads newly stored. The run's state is written only when it
    ends, and only over an active one: a cancel asked meanwhile (by an API replica) is never
    overwritten with ``running``. ``extra`` writes more in the same transaction, after the node
    rows (a map node's items: ``map_reconcile.MapWork.write``)."""
    stored: list[Workload] = []
    with store._lock, store._tx():
        db = store._db
        for node, workload in launches:
            try:
                got, created = store._submit(
                    workload, who=who, max_queue_size=max_queue_size, tenant_limit=tenant_limit
                )
            except (QueueFull, Conflict) as exc:
                node.status, node.attempt, node.workload_id = PENDING, node.attempt - 1, None
                node.reason = cap_text(exc.message)
                continue
            node.status, node.workload_id, node.reason = SUBMITTED, got.workload_id, None
            if created:
                stored.append(got)
        for node in [*nodes, *(n for n, _ in launches)]:
            db.execute(
                "UPDATE node_runs SET status=?, attempt=?, workload_id=?, not_before=?, outputs=?, "
                "error=?, reason=?, started_at=?, finished_at=?, user_failures=?, system_failures=? "
                "WHERE run_id=? AND node_id=?",
                (
                    node.status,
                    node.attempt,
                    node.workload_id,
                    node.not_before,
                    None if node.outputs is None else json.dumps(node.outputs, allow_nan=False),
                    cap_text(node.error),
                    cap_text(node.reason),
                    node.started_at,
                    node.finished_at,
                    node.user_failures,
                    node.system_failures,
                    run.run_id,
                    node.node_id,
                ),
            )
        if extra is not None:
            extra()
        if run.terminal:  # only an ending is written: ``cancelling`` is the API's to set
            db.execute(
                "UPDATE pipeline_runs SET status=?, updated_at=?, finished_at=?, error=? "
                "WHERE run_id=? AND status IN (?, ?)",
                (run.status, run.updated_at, run.finished_at, cap_text(run.error), run.run_id, *RUN_ACTIVE),
            )
        else:
            db.execute("UPDATE pipeline_runs SET updated_at=? WHERE run_id=?", (run.updated_at, run.run_id))
    return stored


def _cols(body: bool) -> str:
    """The run's columns; without ``body`` it reads back as ``{}`` (parsing a 1,000-node body at
    every reconcile was most of a reconcile's cost)."""
    return _RUN_COLS if body else _RUN_COLS.replace("body", "NULL")


def _rows(store: "SQLiteStore", sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return list(store._query(sql, params))


def _run_of(row: tuple[Any, ...]) -> PipelineRun:
    seq, run_id, tenant_id, submission_id, status, body, created, updated, finished, error = row[:10]
    return PipelineRun(
        run_id=run_id,
        tenant_id=tenant_id,
        submission_id=submission_id,
        status=status,
        body={} if body is None else json.loads(body),
        created_at=created,
        updated_at=updated,
        finished_at=finished,
        error=error,
        seq=seq,
        retries=row[10] or 0,
        retried_at=row[11],
    )


def _node_of(row: tuple[Any, ...]) -> NodeRun:
    node_id, status, attempt, workload_id, not_before, outputs, error, reason, started, finished = row[:10]
    return NodeRun(
        node_id=node_id,
        status=status,
        attempt=attempt,
        workload_id=workload_id,
        not_before=not_before,
        outputs=None if outputs is None else json.loads(outputs),
        error=error,
        reason=reason,
        started_at=started,
        finished_at=finished,
        user_failures=row[10] or 0,
        system_failures=row[11] or 0,
        attempt_base=row[12] or 0,
        user_base=row[13] or 0,
    )
