"""SQLite (WAL) store: every accepted workload and every transition, written before it is acknowledged."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import Conflict, QueueFull
from ..models import Workload, iso
from ..status import Status
from . import retention
from .files import private_dir
from .guard import FileIdentity, is_fault, private_file, tighten, unavailable
from .rows import Transaction, state_json, workload_of
from .schema import BUCKET, SCHEMA_VERSION, check_version, migrate

log = logging.getLogger("orion.store")
_TERMINAL = tuple(s.value for s in (Status.COMPLETED, Status.FAILED, Status.CANCELLED))

_COLS = "seq, workload_id, tenant_id, request_id, status, spec, state"


class SQLiteStore:
    """The embedded default store. Thread-safe: one connection behind a lock.

    ``read_only`` opens the file as a WAL reader (``mode=ro``, ``query_only``): it never blocks
    the writer and sees each commit at once; the schema is then the writer's to create.
    """

    def __init__(
        self,
        path: str,
        synchronous: str = "normal",
        read_only: bool = False,
        *,
        busy_timeout_ms: int = 5000,
    ):
        self.path = path
        self.read_only = read_only
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._lock = threading.Lock()
        on_disk = path != ":memory:"
        # How long a statement waits for another process's write lock. On an event loop (the
        # scheduler's, the API replica's reads) that wait blocks everything else, so those open
        # with a short one and treat "locked" as a 503 / a retry on a later tick.
        busy = f"PRAGMA busy_timeout={int(busy_timeout_ms)}"
        self.quarantined: dict[str, str] = {}  # workload id → why its row cannot be read
        # a single writer's fence (``store/lease.Fence``): set, every write checks its token first
        self.fence: Optional[Any] = None
        if read_only:
            uri = "file:" + str(Path(path).expanduser()) + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA query_only=1")
            self._db.execute(busy)
            self._identity = FileIdentity(str(Path(path).expanduser()))
            check_version(self._db, path)
            return
        if on_disk:
            file = Path(path).expanduser()
            private_dir(file.parent)
            # created 0600 before SQLite opens it: SQLite gives the -wal and -shm it creates the
            # database file's mode, so none of the three is ever world-readable
            private_file(file)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._identity = FileIdentity(str(Path(path).expanduser()) if on_disk else None)
        self._db.execute(busy)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        if on_disk:
            tighten(Path(path).expanduser())
        if check_version(self._db, path) < SCHEMA_VERSION:
            with self._lock, self._tx():
                migrate(self._db, path)

    def check_file(self) -> None:
        """Raise ``StoreUnavailable`` when the database file was deleted or replaced while open
        (the scheduler calls it each tick; every commit checks it first)."""
        self._identity.check()

    # -- writes ------------------------------------------------------------------------------
    def insert(self, workload: Workload, transitions: list[tuple[str, float, str]]) -> None:
        with self._lock, self._tx():
            self._insert(workload, transitions)

    def _insert(self, workload: Workload, transitions: list[tuple[str, float, str]]) -> None:
        """The insert itself, inside the caller's transaction (see ``submission.submit``)."""
        cur = self._db.execute(
            "INSERT INTO workloads(workload_id, tenant_id, request_id, status, spec, state, rank) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                workload.workload_id,
                workload.tenant_id,
                workload.spec.metadata.request_id,
                workload.status.value,
                workload.spec.model_dump_json(),
                state_json(workload),
                workload.priority.rank,
            ),
        )
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
                self._db.execute(
                    "UPDATE workloads SET status=?, state=? WHERE workload_id=?",
                    (workload.status.value, state_json(workload), workload.workload_id),
                )
                if transition is not None:
                    self._add_transition(workload, *transition)

    def set_waits(self, changes: list[tuple[Workload, Optional[list[dict]]]], chunk: int = 500) -> None:
        """Persist queued workloads' wait reasons (``reason`` and the detailed ``wait`` list) as
        the cycle leaves them, in transactions of at most ``chunk`` rows so that a submission
        never waits behind one long write."""
        for i in range(0, len(changes), chunk):
            with self._lock, self._tx():
                # json_set: only the reason changes (no re-encoding of the whole state)
                self._db.executemany(
                    "UPDATE workloads SET state=json_set(state, '$.reason', ?), wait=? "
                    "WHERE workload_id=? AND status=?",
                    [
                        (
                            w.reason,
                            None if wait is None else json.dumps(wait),
                            w.workload_id,
                            Status.QUEUED.value,
                        )
                        for w, wait in changes[i : i + chunk]
                    ],
                )

    def set_logs(self, workload_id: str, logs: str) -> None:
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO logs(workload_id, text) VALUES (?,?)", (workload_id, logs)
            )

    def put_setting(self, name: str, value) -> None:
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO settings(name, value) VALUES (?,?)", (name, json.dumps(value))
            )

    def get_setting(self, name: str, default=None):
        rows = self._query("SELECT value FROM settings WHERE name=?", (name,))
        return json.loads(rows[0][0]) if rows else default

    def audit(self, who: str, action: str, target: Optional[str], details: dict, at: float) -> None:
        """Record who did what, when (submissions, cancellations, configuration changes)."""
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
                (at, who, action, target, json.dumps(details, default=str)),
            )

    def audit_log(self, limit: int = 100, before_id: Optional[int] = None) -> list[dict]:
        sql, params = "SELECT id, at, who, action, target, details FROM audit", []
        if before_id is not None:
            sql += " WHERE id<?"
            params.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(int(limit))
        return [
            {"id": i, "at": iso(at), "who": who, "action": a, "target": t, "details": json.loads(d or "{}")}
            for i, at, who, a, t, d in self._query(sql, tuple(params))
        ]

    def add_scaling_event(self, event: dict) -> int:
        """Record one scaling or node-lifecycle event; returns its id. ``event`` has ``at``,
        ``kind`` and any of ``pool``, ``node_id``, ``trigger``, ``reason``, ``before``, ``after``,
        ``outcome``, ``duration_s``; other keys go to ``details``."""
        cols = ("pool", "node_id", "trigger", "reason", "before", "after", "outcome", "duration_s")
        details = {k: v for k, v in event.items() if k not in cols + ("at", "kind")}
        with self._lock, self._tx():
            cur = self._db.execute(
                "INSERT INTO scaling_events(at, kind, pool, node_id, trigger, reason, before, "
                "after, outcome, duration_s, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    float(event["at"]),
                    str(event["kind"]),
                    *(event.get(c) for c in cols),
                    json.dumps(details, default=str),
                ),
            )
            return cur.lastrowid

    def update_scaling_event(
        self, event_id: int, outcome: str, duration_s: Optional[float], **details
    ) -> None:
        """Set an event's outcome once it is known (e.g. the nodes came up), merging details."""
        with self._lock, self._tx():
            row = self._db.execute("SELECT details FROM scaling_events WHERE id=?", (event_id,)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[0] or "{}"), **details}
            self._db.execute(
                "UPDATE scaling_events SET outcome=?, duration_s=?, details=? WHERE id=?",
                (outcome, duration_s, json.dumps(merged, default=str), event_id),
            )

    def scaling_events(
        self,
        limit: int = 100,
        before_id: Optional[int] = None,
        kind: Optional[str] = None,
        pool: Optional[str] = None,
    ) -> list[dict]:
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
        sql = (
            "SELECT id, at, kind, pool, node_id, trigger, reason, before, after, outcome, "
            "duration_s, details FROM scaling_events"
        )
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        params.append(int(limit))
        return [
            {
                "id": i,
                "at": iso(at),
                "kind": k,
                "pool": p,
                "node_id": n,
                "trigger": t,
                "reason": r,
                "before": b,
                "after": a,
                "outcome": o,
                "duration_s": d,
                "details": json.loads(det or "{}"),
            }
            for i, at, k, p, n, t, r, b, a, o, d, det in self._query(sql, tuple(params))
        ]

    def add_history(self, points: list[tuple[float, str, float]], keep_after: float) -> None:
        """Record demand samples ``(at, pool, nodes_needed)`` for prediction; drop samples older
        than ``keep_after`` in the same write."""
        with self._lock, self._tx():
            self._db.executemany("INSERT INTO demand_history(at, pool, nodes_needed) VALUES (?,?,?)", points)
            self._db.execute("DELETE FROM demand_history WHERE at<?", (keep_after,))

    def history_since(self, since: float) -> list[tuple[float, str, float]]:
        """Demand samples at or after ``since``, oldest first."""
        return [
            tuple(r)
            for r in self._query(
                "SELECT at, pool, nodes_needed FROM demand_history WHERE at>=? ORDER BY at", (since,)
            )
        ]

    # -- a submission: one transaction -------------------------------------------------------
    def submit(
        self,
        workload: Workload,
        *,
        who: str,
        max_queue_size: int,
        tenant_limit: Optional[int] = None,
        check: Optional[Callable[[Workload], None]] = None,
    ) -> tuple[Workload, bool]:
        """Admit ``workload`` to the store: idempotency by ``request_id``, the queue limits, the
        row, its first two transitions and the audit record, all in ONE transaction (one
        commit). Returns ``(workload, True)``, or ``(the first workload, False)`` for a repeated
        ``request_id``. Raises ``Conflict`` (the id reused with another spec) or ``QueueFull``;
        ``check`` may raise too (called inside the transaction, before the insert). Whoever
        writes it, the scheduler takes the row in by its ``seq`` (``after_seq``)."""
        with self._lock, self._tx():
            return self._submit(
                workload, who=who, max_queue_size=max_queue_size, tenant_limit=tenant_limit, check=check
            )

    def _submit(
        self,
        workload: Workload,
        *,
        who: str,
        max_queue_size: int,
        tenant_limit: Optional[int] = None,
        check: Optional[Callable[[Workload], None]] = None,
    ) -> tuple[Workload, bool]:
        """``submit`` inside the caller's transaction (a pipeline reconcile writes its node
        workloads and its node runs in one). ``QueueFull`` and ``Conflict`` are raised before
        anything is written, so the caller's transaction may go on."""
        tenant, rid = workload.tenant_id, workload.spec.metadata.request_id
        now = workload.updated_at if workload.updated_at is not None else time.time()
        if rid:
            row = self._db.execute(
                f"SELECT {_COLS} FROM workloads WHERE tenant_id=? AND request_id=?", (tenant, rid)
            ).fetchone()
            if row is not None:
                first = workload_of(row)
                if first.spec.fingerprint() != workload.spec.fingerprint():
                    raise Conflict(
                        f"request_id {rid!r} was already used with a different spec",
                        [{"field": "metadata.request_id", "problem": "reused"}],
                    )
                return first, False
        total = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM active_counts").fetchone()[0]
        if total >= max_queue_size:
            raise QueueFull(f"the queue is full ({max_queue_size} workloads)", retry_after=5)
        if tenant_limit is not None and self._active_of(tenant) >= tenant_limit:
            raise QueueFull(
                f"tenant {tenant!r} has {tenant_limit} unfinished workloads (its limit)", retry_after=5
            )
        if check is not None:
            check(workload)
        self._insert(workload, [(Status.SUBMITTED.value, now, "accepted"), (Status.QUEUED.value, now, "")])
        self._db.execute(
            "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
            (
                now,
                who,
                "submit",
                workload.workload_id,
                json.dumps(
                    {
                        "tenant_id": tenant,
                        "workload_type": workload.spec.workload_type,
                        "priority": workload.priority.value,
                    }
                ),
            ),
        )
        return workload, True

    def _active_of(self, tenant_id: str) -> int:
        row = self._db.execute("SELECT n FROM active_counts WHERE tenant_id=?", (tenant_id,)).fetchone()
        return row[0] if row else 0

    # -- the queue as readers see it -----------------------------------------------------------
    def count_active(self, tenant_id: Optional[str] = None) -> int:
        """Unfinished workloads (all, or one tenant's): what the queue limits count."""
        if tenant_id is not None:
            return self._query(
                "SELECT COALESCE(SUM(n), 0) FROM active_counts WHERE tenant_id=?", (tenant_id,)
            )[0][0]
        return self._query("SELECT COALESCE(SUM(n), 0) FROM active_counts", ())[0][0]

    def count_queued(self, cap: int) -> int:
        """How many are queued, counting no further than ``cap`` (an index range, bounded)."""
        return self._query(
            "SELECT COUNT(*) FROM (SELECT 1 FROM workloads WHERE status=? LIMIT ?) AS q",
            (Status.QUEUED.value, int(cap)),
        )[0][0]

    def queued_ahead(self, rank: int, seq: int, tenant_id: Optional[str] = None) -> tuple[int, int]:
        """Queued workloads ahead of (``rank``, ``seq``) by class then arrival, as
        ``(of a higher class, of the same class)``. Overall: sums over the per-(class, block)
        counts plus one count within the block; for a tenant: range counts over its index.
        Never a scan of the queue."""
        queued = Status.QUEUED.value
        if tenant_id is not None:
            where = "tenant_id=? AND status=?"
            return self._query(
                f"SELECT (SELECT COUNT(*) FROM workloads WHERE {where} AND rank<?), "
                f"(SELECT COUNT(*) FROM workloads WHERE {where} AND rank=? AND seq<?)",
                (tenant_id, queued, rank, tenant_id, queued, rank, seq),
            )[0]
        block = seq // BUCKET
        higher, same_blocks, same_in = self._query(
            "SELECT (SELECT COALESCE(SUM(n), 0) FROM queue_buckets WHERE rank<?), "
            "(SELECT COALESCE(SUM(n), 0) FROM queue_buckets WHERE rank=? AND bucket<?), "
            "(SELECT COUNT(*) FROM workloads WHERE status=? AND rank=? AND seq>=? AND seq<?)",
            (rank, rank, block, queued, rank, block * BUCKET, seq),
        )[0]
        return higher, same_blocks + same_in

    def queued_among(self, workload_ids: list[str]) -> set[str]:
        """Which of these (a short list) are still queued."""
        if not workload_ids:
            return set()
        marks = ",".join("?" * len(workload_ids))
        return {
            r[0]
            for r in self._query(
                f"SELECT workload_id FROM workloads WHERE status=? AND workload_id IN ({marks})",
                (Status.QUEUED.value, *workload_ids),
            )
        }

    def after_seq(self, seq: int, limit: int = 1000) -> list[Workload]:
        """Unfinished workloads written after ``seq``, in order of ``seq`` (the intake tail)."""
        terminal = tuple(s.value for s in (Status.COMPLETED, Status.FAILED, Status.CANCELLED))
        rows = self._query(
            f"SELECT {_COLS} FROM workloads WHERE seq>? AND status NOT IN (?,?,?) ORDER BY seq LIMIT ?",
            (int(seq), *terminal, int(limit)),
        )
        return self._rows(rows)

    def max_seq(self) -> int:
        """The highest ``seq`` written so far (0 for an empty store)."""
        return self._query("SELECT COALESCE(MAX(seq), 0) FROM workloads", ())[0][0]

    def wait_of(self, workload_id: str) -> Optional[list[dict]]:
        """The reasons the last cycle gave for not admitting a queued workload (or None)."""
        rows = self._query("SELECT wait FROM workloads WHERE workload_id=?", (workload_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def raw_setting(self, name: str) -> Optional[str]:
        """A setting's stored JSON text (cheap to compare: readers re-parse only on change)."""
        rows = self._query("SELECT value FROM settings WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def last_transition_id(self) -> int:
        """The newest transition's id (0 when there is none): where a change feed starts."""
        rows = self._query("SELECT COALESCE(MAX(id), 0) FROM transitions", ())
        return int(rows[0][0]) if rows else 0

    def transitions_since(self, after: int) -> dict[str, int]:
        """The newest transition id after ``after`` per tenant (tenants with none are absent):
        which tenants' workloads changed since a feed last looked (an index range, not a scan)."""
        rows = self._query(
            "SELECT w.tenant_id, MAX(t.id) FROM transitions t JOIN workloads w "
            "ON w.workload_id = t.workload_id WHERE t.id > ? GROUP BY w.tenant_id",
            (after,),
        )
        return {str(t): int(n) for t, n in rows}

    # -- reads -------------------------------------------------------------------------------
    def get(self, workload_id: str) -> Optional[Workload]:
        """The workload, or None (unknown, or quarantined: its row cannot be read back)."""
        rows = self._query(f"SELECT {_COLS} FROM workloads WHERE workload_id=?", (workload_id,))
        return self._read(rows[0]) if rows else None

    def find_by_request_id(self, tenant_id: str, request_id: str) -> Optional[Workload]:
        rows = self._query(
            f"SELECT {_COLS} FROM workloads WHERE tenant_id=? AND request_id=?", (tenant_id, request_id)
        )
        return self._read(rows[0]) if rows else None

    def list(self, *, status=None, tenant_id=None, limit=50, before_seq=None) -> list[Workload]:
        """Newest first. A row that cannot be read back is skipped (quarantined), and the page
        is filled from older rows, so one bad row never shortens or ends a listing."""
        base, fixed = [], []  # the filters that stay; only the page's start moves
        if status:
            base.append("status=?")
            fixed.append(status)
        if tenant_id:
            base.append("tenant_id=?")
            fixed.append(tenant_id)
        out: list[Workload] = []
        while len(out) < int(limit):
            want = int(limit) - len(out)
            where, params = list(base), list(fixed)
            if before_seq is not None:
                where.append("seq<?")
                params.append(before_seq)
            sql = f"SELECT {_COLS} FROM workloads" + (" WHERE " + " AND ".join(where) if where else "")
            sql += " ORDER BY seq DESC LIMIT ?"
            params.append(want)
            rows = self._query(sql, tuple(params))
            out += self._rows(rows)
            if len(rows) < want:
                break
            before_seq = rows[-1][0]
        return out

    def active(self) -> list[Workload]:
        sql = f"SELECT {_COLS} FROM workloads WHERE status NOT IN (?,?,?) ORDER BY seq"
        rows = self._query(sql, _TERMINAL)
        return self._rows(rows)

    def history(self, workload_id: str) -> list[dict]:
        rows = self._query(
            "SELECT status, at, attempt, reason FROM transitions WHERE workload_id=? ORDER BY id",
            (workload_id,),
        )
        return [{"status": s, "at": iso(at), "attempt": a, "reason": r} for s, at, a, r in rows]

    def get_logs(self, workload_id: str) -> Optional[str]:
        rows = self._query("SELECT text FROM logs WHERE workload_id=?", (workload_id,))
        return rows[0][0] if rows else None

    def count_runs(self, workload_id: str) -> int:
        """How many times the workload entered ``running`` (used by tests and the recovery benchmark)."""
        rows = self._query(
            "SELECT COUNT(*) FROM transitions WHERE workload_id=? AND status=?",
            (workload_id, Status.RUNNING.value),
        )
        return rows[0][0]

    def prune(self, *, now: float, keep_s: dict[str, float], limit: int = 500) -> dict[str, int]:
        """Retention: delete up to ``limit`` rows of each kind (``retention.STEPS``) older than
        its window in ``keep_s`` (seconds; a kind absent or 0 is kept for ever), one short
        transaction per kind. Returns how many rows each kind lost (``limit``: there may be more)."""
        out: dict[str, int] = {}
        for kind, step in retention.STEPS.items():
            window = keep_s.get(kind) or 0
            if window <= 0:
                continue
            with self._lock, self._tx():
                out[kind] = step(self._db, now - window, limit)
        # pipeline runs: each run's own ttl_days, else the default window (which may be 0)
        default = keep_s.get("pipeline_runs") or 0
        with self._lock, self._tx():
            n = retention.ended_pipeline_runs(self._db, now=now, default_s=default, limit=limit)
        if n or default > 0:
            out["pipeline_runs"] = n
        return out

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot answer or its file is gone or replaced."""
        self._identity.check()
        self._query("SELECT 1", ())

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- quarantine: rows that cannot be read back --------------------------------------------
    def _rows(self, rows: list[tuple]) -> list[Workload]:
        return [w for w in map(self._read, rows) if w is not None]

    def _read(self, row: tuple) -> Optional[Workload]:
        """The row as a workload, or None when it cannot be read back (written by an older
        Orion that let such input in, or damaged): quarantined, so one row never blocks a
        listing, another workload's read, the intake or recovery."""
        try:
            return workload_of(row)
        except Exception as exc:  # any parse failure: the row is skipped, never the read
            self._quarantine(row, exc)
            return None

    def _quarantine(self, row: tuple, exc: Exception) -> None:
        seq, wid, status = row[0], row[1], row[4]
        first = wid not in self.quarantined
        self.quarantined[wid] = f"{type(exc).__name__}: {str(exc)[:300]}"
        if first:
            log.error(
                "workload %s (seq %s): stored row cannot be read back; quarantined: %s",
                wid,
                seq,
                self.quarantined[wid],
            )
        if self.read_only or status in _TERMINAL:
            return
        # the writer ends it, so it no longer counts against the queue limits nor is recovered
        why = "quarantined: its stored record cannot be read back"
        now = time.time()
        with self._lock, self._tx():
            self._db.execute(
                "UPDATE workloads SET status=? WHERE workload_id=? AND status=?",
                (Status.FAILED.value, wid, status),
            )
            self._db.execute(
                "INSERT INTO transitions(workload_id, status, at, attempt, reason) VALUES (?,?,?,?,?)",
                (wid, Status.FAILED.value, now, 0, why),
            )
            self._db.execute(
                "INSERT INTO audit(at, who, action, target, details) VALUES (?,?,?,?,?)",
                (now, "store", "quarantine", wid, json.dumps({"error": self.quarantined[wid]})),
            )

    def quarantined_count(self) -> int:
        """How many rows this connection found unreadable (reported in ``/health``)."""
        return len(self.quarantined)

    # -- internals ---------------------------------------------------------------------------
    def _tx(self) -> "Transaction":
        return Transaction(self._db, self._identity, self.fence)

    def _raw_tx(self) -> "Transaction":
        """A write transaction without the fence: the lease's own writes (``store/lease.py``)."""
        return Transaction(self._db, self._identity)

    def _add_transition(self, workload: Workload, status: str, at: float, reason: str) -> None:
        self._db.execute(
            "INSERT INTO transitions(workload_id, status, at, attempt, reason) VALUES (?,?,?,?,?)",
            (workload.workload_id, status, at, workload.attempt, reason),
        )

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock:
            try:
                cur = self._db.execute(sql, params)
                cur.row_factory = None
                return cur.fetchall()
            except sqlite3.Error as exc:
                if is_fault(exc):
                    raise unavailable(exc) from exc
                raise
