"""SQLite (WAL) store: every accepted workload and every transition, written before it is acknowledged."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Optional

from ..models import Workload, WorkloadSpec, iso
from ..status import Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workloads (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workload_id  TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL,
    request_id   TEXT,
    status       TEXT NOT NULL,
    spec         TEXT NOT NULL,
    state        TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS workloads_request ON workloads(tenant_id, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS workloads_status ON workloads(status);
CREATE TABLE IF NOT EXISTS transitions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workload_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    at           REAL NOT NULL,
    attempt      INTEGER NOT NULL,
    reason       TEXT
);
CREATE INDEX IF NOT EXISTS transitions_workload ON transitions(workload_id);
CREATE TABLE IF NOT EXISTS settings (
    name         TEXT PRIMARY KEY,
    value        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           REAL NOT NULL,
    who          TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT,
    details      TEXT
);
CREATE TABLE IF NOT EXISTS scaling_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           REAL NOT NULL,
    kind         TEXT NOT NULL,
    pool         TEXT,
    node_id      TEXT,
    trigger      TEXT,
    reason       TEXT,
    before       INTEGER,
    after        INTEGER,
    outcome      TEXT,
    duration_s   REAL,
    details      TEXT
);
CREATE INDEX IF NOT EXISTS scaling_events_kind ON scaling_events(kind, id);
CREATE TABLE IF NOT EXISTS demand_history (
    at           REAL NOT NULL,
    pool         TEXT NOT NULL,
    nodes_needed REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS demand_history_at ON demand_history(at);
CREATE TABLE IF NOT EXISTS logs (
    workload_id  TEXT PRIMARY KEY,
    text         TEXT NOT NULL
);
"""

# Lifecycle fields live in one JSON column so adding a field needs no migration.
_STATE_FIELDS = ("attempt", "submitted_at", "started_at", "finished_at", "updated_at", "not_before",
                 "requeues", "worker_id", "placement", "result", "error", "reason")


class SQLiteStore:
    """The embedded default store. Thread-safe: one connection behind a lock."""

    def __init__(self, path: str, synchronous: str = "normal"):
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        if path != ":memory:":
            os.chmod(path, 0o600)

    # -- writes ------------------------------------------------------------------------------
    def insert(self, workload: Workload, transitions: list[tuple[str, float, str]]) -> None:
        with self._lock, self._tx():
            cur = self._db.execute(
                "INSERT INTO workloads(workload_id, tenant_id, request_id, status, spec, state) "
                "VALUES (?,?,?,?,?,?)",
                (workload.workload_id, workload.tenant_id, workload.spec.metadata.request_id,
                 workload.status.value, workload.spec.model_dump_json(), _state(workload)))
            workload.seq = cur.lastrowid
            for status, at, reason in transitions:
                self._add_transition(workload, status, at, reason)

    def update(self, workload: Workload, transition: Optional[tuple[str, float, str]]) -> None:
        self.update_many([(workload, transition)])

    def update_many(self, changes) -> None:
        if not changes:
            return
        with self._lock, self._tx():
            for workload, transition in changes:
                self._db.execute("UPDATE workloads SET status=?, state=? WHERE workload_id=?",
                                 (workload.status.value, _state(workload), workload.workload_id))
                if transition is not None:
                    self._add_transition(workload, *transition)

    def set_logs(self, workload_id: str, logs: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO logs(workload_id, text) VALUES (?,?)",
                             (workload_id, logs))

    def put_setting(self, name: str, value) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings(name, value) VALUES (?,?)",
                             (name, json.dumps(value)))

    def get_setting(self, name: str, default=None):
        rows = self._query("SELECT value FROM settings WHERE name=?", (name,))
        return json.loads(rows[0][0]) if rows else default

    def audit(self, who: str, action: str, target: Optional[str], details: dict, at: float) -> None:
        """Record who did what, when (submissions, cancellations, configuration changes)."""
        with self._lock:
            self._db.execute("INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
                             (at, who, action, target, json.dumps(details, default=str)))

    def audit_log(self, limit: int = 100, before_id: Optional[int] = None) -> list[dict]:
        sql, params = "SELECT id, at, who, action, target, details FROM audit", []
        if before_id is not None:
            sql += " WHERE id<?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(int(limit))
        return [{"id": i, "at": iso(at), "who": who, "action": a, "target": t,
                 "details": json.loads(d or "{}")}
                for i, at, who, a, t, d in self._query(sql, tuple(params))]

    def add_scaling_event(self, event: dict) -> int:
        """Record one scaling or node-lifecycle event; returns its id. ``event`` has ``at``,
        ``kind`` and any of ``pool``, ``node_id``, ``trigger``, ``reason``, ``before``, ``after``,
        ``outcome``, ``duration_s``; other keys go to ``details``."""
        cols = ("pool", "node_id", "trigger", "reason", "before", "after", "outcome",
                "duration_s")
        details = {k: v for k, v in event.items() if k not in cols + ("at", "kind")}
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO scaling_events(at, kind, pool, node_id, trigger, reason, before, "
                "after, outcome, duration_s, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (float(event["at"]), str(event["kind"]), *(event.get(c) for c in cols),
                 json.dumps(details, default=str)))
            return cur.lastrowid

    def update_scaling_event(self, event_id: int, outcome: str, duration_s: Optional[float],
                             **details) -> None:
        """Set an event's outcome once it is known (e.g. the nodes came up), merging details."""
        with self._lock:
            row = self._db.execute("SELECT details FROM scaling_events WHERE id=?",
                                   (event_id,)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[0] or "{}"), **details}
            self._db.execute("UPDATE scaling_events SET outcome=?, duration_s=?, details=? "
                             "WHERE id=?", (outcome, duration_s, json.dumps(merged, default=str),
                                            event_id))

    def scaling_events(self, limit: int = 100, before_id: Optional[int] = None,
                       kind: Optional[str] = None, pool: Optional[str] = None) -> list[dict]:
        """Scaling and node events, newest first."""
        where, params = [], []
        if before_id is not None:
            where.append("id<?")
            params.append(before_id)
        if kind:
            where.append("kind=?")
            params.append(kind)
        if pool:
            where.append("pool=?")
            params.append(pool)
        sql = ("SELECT id, at, kind, pool, node_id, trigger, reason, before, after, outcome, "
               "duration_s, details FROM scaling_events")
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        params.append(int(limit))
        return [{"id": i, "at": iso(at), "kind": k, "pool": p, "node_id": n, "trigger": t,
                 "reason": r, "before": b, "after": a, "outcome": o, "duration_s": d,
                 "details": json.loads(det or "{}")}
                for i, at, k, p, n, t, r, b, a, o, d, det in self._query(sql, tuple(params))]

    def add_history(self, points: list[tuple[float, str, float]], keep_after: float) -> None:
        """Record demand samples ``(at, pool, nodes_needed)`` for prediction; drop samples older
        than ``keep_after`` in the same write."""
        with self._lock, self._tx():
            self._db.executemany("INSERT INTO demand_history(at, pool, nodes_needed) "
                                 "VALUES (?,?,?)", points)
            self._db.execute("DELETE FROM demand_history WHERE at<?", (keep_after,))

    def history_since(self, since: float) -> list[tuple[float, str, float]]:
        """Demand samples at or after ``since``, oldest first."""
        return [tuple(r) for r in self._query(
            "SELECT at, pool, nodes_needed FROM demand_history WHERE at>=? ORDER BY at", (since,))]

    # -- reads -------------------------------------------------------------------------------
    def get(self, workload_id: str) -> Optional[Workload]:
        rows = self._query("SELECT * FROM workloads WHERE workload_id=?", (workload_id,))
        return _row(rows[0]) if rows else None

    def find_by_request_id(self, tenant_id: str, request_id: str) -> Optional[Workload]:
        rows = self._query("SELECT * FROM workloads WHERE tenant_id=? AND request_id=?",
                           (tenant_id, request_id))
        return _row(rows[0]) if rows else None

    def list(self, *, status=None, tenant_id=None, limit=50, before_seq=None) -> list[Workload]:
        where, params = [], []
        if status:
            where.append("status=?")
            params.append(status)
        if tenant_id:
            where.append("tenant_id=?")
            params.append(tenant_id)
        if before_seq is not None:
            where.append("seq<?")
            params.append(before_seq)
        sql = "SELECT * FROM workloads" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(int(limit))
        return [_row(r) for r in self._query(sql, tuple(params))]

    def active(self) -> list[Workload]:
        terminal = tuple(s.value for s in (Status.COMPLETED, Status.FAILED, Status.CANCELLED))
        rows = self._query("SELECT * FROM workloads WHERE status NOT IN (?,?,?) ORDER BY seq",
                           terminal)
        return [_row(r) for r in rows]

    def history(self, workload_id: str) -> list[dict]:
        rows = self._query("SELECT status, at, attempt, reason FROM transitions "
                           "WHERE workload_id=? ORDER BY id", (workload_id,))
        return [{"status": s, "at": iso(at), "attempt": a, "reason": r} for s, at, a, r in rows]

    def get_logs(self, workload_id: str) -> Optional[str]:
        rows = self._query("SELECT text FROM logs WHERE workload_id=?", (workload_id,))
        return rows[0][0] if rows else None

    def count_runs(self, workload_id: str) -> int:
        """How many times the workload entered ``running`` (used by tests and the recovery benchmark)."""
        rows = self._query("SELECT COUNT(*) FROM transitions WHERE workload_id=? AND status=?",
                           (workload_id, Status.RUNNING.value))
        return rows[0][0]

    def ping(self) -> None:
        self._query("SELECT 1", ())

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals ---------------------------------------------------------------------------
    def _tx(self):
        return _Transaction(self._db)

    def _add_transition(self, workload: Workload, status: str, at: float, reason: str) -> None:
        self._db.execute("INSERT INTO transitions(workload_id, status, at, attempt, reason) "
                         "VALUES (?,?,?,?,?)",
                         (workload.workload_id, status, at, workload.attempt, reason))

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock:
            cur = self._db.execute(sql, params)
            cur.row_factory = None
            return cur.fetchall()


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False


def _state(w: Workload) -> str:
    return json.dumps({f: getattr(w, f) for f in _STATE_FIELDS}, default=str)


def _row(row: tuple) -> Workload:
    seq, workload_id, tenant_id, _request_id, status, spec, state = row
    # "stored" on the Workload too: validating it re-runs the spec's checks (a passed deadline).
    stored = {"stored": True}
    return Workload.model_validate(
        dict(workload_id=workload_id, tenant_id=tenant_id, seq=seq, status=Status(status),
             spec=WorkloadSpec.model_validate_json(spec, context=stored), **json.loads(state)),
        context=stored)
