"""The SQLite store's schema and its migrations: the tables, and the indexes, counters and
triggers (schema 2) that let readers answer queue positions and queue limits without a scan."""

from __future__ import annotations

import os
import sqlite3
from typing import Callable

SCHEMA = """
CREATE TABLE IF NOT EXISTS workloads (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workload_id  TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL,
    request_id   TEXT,
    status       TEXT NOT NULL,
    spec         TEXT NOT NULL,
    state        TEXT NOT NULL,
    rank         INTEGER,
    wait         TEXT
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

# Added after the first schema: old files get these columns, indexes and triggers on open.
# ``rank`` (the priority class, 0 highest) makes a queue position an index range count;
# ``wait`` is the scheduler's last reasons for not admitting a queued workload (explain).
# ``active_counts`` (unfinished workloads per tenant) is kept by triggers in the same transaction
# as every write, so the queue limits are O(1) whoever writes (the scheduler or an API replica).
# ``queue_buckets`` counts queued workloads per (class, block of 256 seqs), kept the same way: a
# queue position is then a sum over a few bucket rows plus a count within one block, not a walk
# over every queued workload ahead.
SCHEMA_2 = """
CREATE INDEX IF NOT EXISTS workloads_queue ON workloads(status, rank, seq);
CREATE INDEX IF NOT EXISTS workloads_tenant_queue ON workloads(tenant_id, status, rank, seq);
CREATE TABLE IF NOT EXISTS active_counts (
    tenant_id    TEXT PRIMARY KEY,
    n            INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS workloads_count_insert AFTER INSERT ON workloads
WHEN NEW.status NOT IN ('completed', 'failed', 'cancelled')
BEGIN
    INSERT INTO active_counts(tenant_id, n) VALUES (NEW.tenant_id, 1)
        ON CONFLICT(tenant_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS workloads_count_update AFTER UPDATE OF status ON workloads
WHEN (OLD.status IN ('completed', 'failed', 'cancelled'))
     != (NEW.status IN ('completed', 'failed', 'cancelled'))
BEGIN
    INSERT INTO active_counts(tenant_id, n)
        VALUES (NEW.tenant_id, CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled')
                                    THEN -1 ELSE 1 END)
        ON CONFLICT(tenant_id) DO UPDATE SET n = n + excluded.n;
END;
CREATE TABLE IF NOT EXISTS queue_buckets (
    rank         INTEGER NOT NULL,
    bucket       INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    PRIMARY KEY (rank, bucket)
);
CREATE TRIGGER IF NOT EXISTS workloads_queue_insert AFTER INSERT ON workloads
WHEN NEW.status = 'queued'
BEGIN
    INSERT INTO queue_buckets(rank, bucket, n) VALUES (NEW.rank, NEW.seq / 256, 1)
        ON CONFLICT(rank, bucket) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS workloads_queue_update AFTER UPDATE OF status ON workloads
WHEN (OLD.status = 'queued') != (NEW.status = 'queued')
BEGIN
    INSERT INTO queue_buckets(rank, bucket, n)
        VALUES (NEW.rank, NEW.seq / 256, CASE WHEN NEW.status = 'queued' THEN 1 ELSE -1 END)
        ON CONFLICT(rank, bucket) DO UPDATE SET n = n + excluded.n;
    DELETE FROM queue_buckets WHERE rank = NEW.rank AND bucket = NEW.seq / 256 AND n = 0;
END;
"""
BUCKET = 256  # seqs per queue_buckets row (the triggers' ``NEW.seq / 256``)
RANK_SQL = (
    "CASE json_extract(spec, '$.priority') WHEN 'critical' THEN 0 WHEN 'high' THEN 1 "
    "WHEN 'normal' THEN 2 WHEN 'low' THEN 3 WHEN 'best_effort' THEN 4 ELSE 2 END"
)
ENDED = "status IN ('completed', 'failed', 'cancelled')"
# Retention finds what to delete through these indexes, a small batch at a time, never a scan.
SCHEMA_3 = f"""
CREATE INDEX IF NOT EXISTS workloads_ended ON workloads(json_extract(state, '$.finished_at'))
    WHERE {ENDED};
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE INDEX IF NOT EXISTS scaling_events_at ON scaling_events(at);
"""

# Pipelines (issue 16): a run per submission, a row per node of it. ``submission_id`` is unique per
# tenant (a repeated submission returns the first run); ``node_runs`` hold each node's state, its
# current attempt and that attempt's workload, and its outputs (inline JSON, capped).
SCHEMA_4 = """
CREATE TABLE IF NOT EXISTS pipeline_runs (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id         TEXT NOT NULL UNIQUE,
    tenant_id      TEXT NOT NULL,
    submission_id  TEXT NOT NULL,
    status         TEXT NOT NULL,
    body           TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    finished_at    REAL,
    error          TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS pipeline_runs_submission ON pipeline_runs(tenant_id, submission_id);
CREATE INDEX IF NOT EXISTS pipeline_runs_status ON pipeline_runs(status, seq);
CREATE TABLE IF NOT EXISTS node_runs (
    run_id         TEXT NOT NULL,
    node_id        TEXT NOT NULL,
    position       INTEGER NOT NULL,
    status         TEXT NOT NULL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    workload_id    TEXT,
    not_before     REAL NOT NULL DEFAULT 0,
    outputs        TEXT,
    error          TEXT,
    reason         TEXT,
    started_at     REAL,
    finished_at    REAL,
    PRIMARY KEY (run_id, node_id)
);
CREATE INDEX IF NOT EXISTS node_runs_workload ON node_runs(workload_id) WHERE workload_id IS NOT NULL;
"""

# Schema 5: the items of map (fan-out) nodes, one row each so that a 10,000-item map never
# rewrites one large row, and a counters row per map node (what progress shows without a count).
SCHEMA_5 = """
CREATE TABLE IF NOT EXISTS map_nodes (
    run_id         TEXT NOT NULL,
    node_id        TEXT NOT NULL,
    total          INTEGER NOT NULL,
    next_idx       INTEGER NOT NULL DEFAULT 0,
    running        INTEGER NOT NULL DEFAULT 0,
    completed      INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,
    cancelled      INTEGER NOT NULL DEFAULT 0,
    retrying       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, node_id)
);
CREATE TABLE IF NOT EXISTS map_items (
    run_id         TEXT NOT NULL,
    node_id        TEXT NOT NULL,
    idx            INTEGER NOT NULL,
    status         TEXT NOT NULL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    workload_id    TEXT,
    not_before     REAL NOT NULL DEFAULT 0,
    item           TEXT NOT NULL,
    output         TEXT,
    error          TEXT,
    started_at     REAL,
    finished_at    REAL,
    PRIMARY KEY (run_id, node_id, idx)
);
CREATE INDEX IF NOT EXISTS map_items_workload ON map_items(workload_id) WHERE workload_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS map_items_inflight ON map_items(run_id, node_id, idx) WHERE status = 'submitted';
CREATE INDEX IF NOT EXISTS map_items_waiting ON map_items(run_id, node_id, idx)
    WHERE status = 'pending' AND attempt > 0;
"""

# Schedules and event triggers (issue 16, docs/pipelines-schedules.md): one row per schedule
# (``kind`` cron) or trigger (``kind`` event), names unique per tenant. ``last_slot`` is written in
# the same transaction as the run a slot fires. ``pipeline_events`` holds posted events and Orion's
# own, which the two triggers below write in the same transaction as the run's or workload's end
# (only while a trigger of that type exists), so none is lost across a crash; ``handled`` is set
# in the transaction that fires the runs it matched. ``public_id`` is random: the ids a tenant
# sees (``<trigger>-ev<public_id>``) tell nothing of other tenants' events.
SCHEMA_6 = """
CREATE TABLE IF NOT EXISTS pipeline_schedules (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    event_type     TEXT,
    body           TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    paused         INTEGER NOT NULL DEFAULT 0,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    last_slot      REAL,
    next_at        REAL,
    last_run       TEXT,
    fired          INTEGER NOT NULL DEFAULT 0,
    missed         INTEGER NOT NULL DEFAULT 0,
    skipped        INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    last_skip      TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS pipeline_schedules_name ON pipeline_schedules(tenant_id, name);
CREATE INDEX IF NOT EXISTS pipeline_schedules_due ON pipeline_schedules(kind, paused, next_at);
CREATE INDEX IF NOT EXISTS pipeline_schedules_event ON pipeline_schedules(event_type, tenant_id)
    WHERE kind = 'event';
CREATE TABLE IF NOT EXISTS pipeline_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id      TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    type           TEXT NOT NULL,
    labels         TEXT NOT NULL,
    at             REAL NOT NULL,
    source         TEXT NOT NULL,
    handled        INTEGER NOT NULL DEFAULT 0,
    fired          TEXT
);
CREATE INDEX IF NOT EXISTS pipeline_events_pending ON pipeline_events(id) WHERE handled = 0;
CREATE INDEX IF NOT EXISTS pipeline_events_at ON pipeline_events(at);
CREATE TRIGGER IF NOT EXISTS pipeline_run_ended AFTER UPDATE OF status ON pipeline_runs
WHEN NEW.status IN ('succeeded', 'failed') AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
    AND EXISTS (SELECT 1 FROM pipeline_schedules s WHERE s.kind = 'event' AND s.tenant_id = NEW.tenant_id
                AND s.event_type = (CASE NEW.status WHEN 'succeeded' THEN 'pipeline.completed'
                                    ELSE 'pipeline.failed' END))
BEGIN
    INSERT INTO pipeline_events(public_id, tenant_id, type, labels, at, source) VALUES (
        lower(hex(randomblob(6))), NEW.tenant_id,
        CASE NEW.status WHEN 'succeeded' THEN 'pipeline.completed' ELSE 'pipeline.failed' END,
        json_object('pipeline_id', json_extract(NEW.body, '$.dag_spec.pipeline_id'),
                    'submission_id', NEW.submission_id, 'tenant', NEW.tenant_id),
        COALESCE(NEW.finished_at, NEW.updated_at), 'orion');
END;
CREATE TRIGGER IF NOT EXISTS workload_ended AFTER INSERT ON transitions
WHEN NEW.status IN ('completed', 'failed')
    AND EXISTS (SELECT 1 FROM pipeline_schedules s WHERE s.kind = 'event'
                AND s.event_type = 'workload.' || NEW.status
                AND s.tenant_id = (SELECT tenant_id FROM workloads WHERE workload_id = NEW.workload_id))
BEGIN
    INSERT INTO pipeline_events(public_id, tenant_id, type, labels, at, source)
    SELECT lower(hex(randomblob(6))), w.tenant_id, 'workload.' || NEW.status,
           json_patch(COALESCE(json_extract(w.spec, '$.metadata.labels'), '{}'),
                      json_object('workload_id', w.workload_id, 'tenant', w.tenant_id)),
           NEW.at, 'orion'
    FROM workloads w WHERE w.workload_id = NEW.workload_id;
END;
"""


class SchemaTooNew(RuntimeError):
    """The file was written by a newer Orion: opening it could corrupt what this one does not know."""


def _v1(db: sqlite3.Connection) -> None:
    """The first tables (``IF NOT EXISTS``: an unversioned file of any age passes)."""
    for stmt in split_statements(SCHEMA):
        db.execute(stmt)


def _v2(db: sqlite3.Connection) -> None:
    """Ranks, per-tenant counters and queue buckets, counted again from the rows."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(workloads)")}
    for col, kind in (("rank", "INTEGER"), ("wait", "TEXT")):
        if col not in cols:
            db.execute(f"ALTER TABLE workloads ADD COLUMN {col} {kind}")
    db.execute(f"UPDATE workloads SET rank = {RANK_SQL} WHERE rank IS NULL")
    for stmt in split_statements(SCHEMA_2):
        db.execute(stmt)
    db.execute("DELETE FROM active_counts")
    db.execute(
        "INSERT INTO active_counts(tenant_id, n) SELECT tenant_id, COUNT(*) "
        f"FROM workloads WHERE NOT {ENDED} GROUP BY tenant_id"
    )
    db.execute("DELETE FROM queue_buckets")
    db.execute(
        "INSERT INTO queue_buckets(rank, bucket, n) SELECT rank, seq / 256, "
        "COUNT(*) FROM workloads WHERE status='queued' GROUP BY 1, 2"
    )


def _v3(db: sqlite3.Connection) -> None:
    """Indexes for retention (ended workloads by end time, audit and events by time)."""
    for stmt in split_statements(SCHEMA_3):
        db.execute(stmt)


def _v4(db: sqlite3.Connection) -> None:
    """Pipeline runs and their node runs."""
    for stmt in split_statements(SCHEMA_4):
        db.execute(stmt)


def _v5(db: sqlite3.Connection) -> None:
    """Map (fan-out) items and their per-node counters."""
    for stmt in split_statements(SCHEMA_5):
        db.execute(stmt)


def _v6(db: sqlite3.Connection) -> None:
    """Pipeline schedules, event triggers and events."""
    for stmt in split_statements(SCHEMA_6):
        db.execute(stmt)


def _v7(db: sqlite3.Connection) -> None:
    """Pipelines' operations (docs/pipelines-operations.md): each node's user and system failures
    counted apart, with the counts its retry budget starts from since the run was last retried,
    and each run's retries."""
    for table, cols in (
        (
            "node_runs",
            (
                ("user_failures", "INTEGER NOT NULL DEFAULT 0"),
                ("system_failures", "INTEGER NOT NULL DEFAULT 0"),
                ("attempt_base", "INTEGER NOT NULL DEFAULT 0"),
                ("user_base", "INTEGER NOT NULL DEFAULT 0"),
            ),
        ),
        ("pipeline_runs", (("retries", "INTEGER NOT NULL DEFAULT 0"), ("retried_at", "REAL"))),
    ):
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for col, kind in cols:
            if col not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {kind}")


SCHEMA_8 = """
CREATE TABLE IF NOT EXISTS quota_reservations (
    key          TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    demand       TEXT NOT NULL,
    state        TEXT NOT NULL,
    at           REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS quota_reservations_holding ON quota_reservations(tenant_id, state);
CREATE TABLE IF NOT EXISTS quota_charges (
    key          TEXT NOT NULL,
    window_start REAL NOT NULL,
    resource     TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    hours        REAL NOT NULL,
    PRIMARY KEY (key, window_start, resource)
);
CREATE INDEX IF NOT EXISTS quota_charges_window ON quota_charges(tenant_id, window_start);
CREATE TABLE IF NOT EXISTS regions (
    name         TEXT PRIMARY KEY,
    record       TEXT NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    run_id       TEXT PRIMARY KEY,
    region       TEXT,
    generation   INTEGER NOT NULL,
    status       TEXT NOT NULL,
    retries_left INTEGER NOT NULL DEFAULT 0,
    restartable  INTEGER NOT NULL DEFAULT 0,
    updated_at   REAL NOT NULL,
    started_at   REAL,
    request      TEXT
);
CREATE INDEX IF NOT EXISTS assignments_region ON assignments(region);
"""


def _v8(db: sqlite3.Connection) -> None:
    """The control plane's tables (docs/regions.md): global quota reservations and GPU-hour
    charges per window, the region records (state, last heartbeat, status sequence) and the runs'
    assignments (region and generation, the fencing token)."""
    for stmt in split_statements(SCHEMA_8):
        db.execute(stmt)


SCHEMA_9 = """
CREATE TABLE IF NOT EXISTS leases (
    name         TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    token        INTEGER NOT NULL,
    expires_at   REAL NOT NULL,
    acquired_at  REAL NOT NULL
);
"""


def _v9(db: sqlite3.Connection) -> None:
    """Single-writer leases (docs/high-availability.md): one row per lease, its holder, fencing
    token and expiry; the scheduler's writes are refused once a newer token is stored."""
    for stmt in split_statements(SCHEMA_9):
        db.execute(stmt)


# The ordered migrations: (the version a file has after it, what it does, the step). A step is
# idempotent and runs inside the caller's write transaction with the version bump, so a file is
# at one version or the next, never between. Append; never edit or reorder a released step.
SCHEMA_10 = """
CREATE TABLE IF NOT EXISTS cp_runs (
    run_id       TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    request_id   TEXT,
    spec         TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    reason       TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS cp_runs_request ON cp_runs(tenant_id, request_id);
CREATE TABLE IF NOT EXISTS region_runs (
    region       TEXT NOT NULL,
    workload_id  TEXT NOT NULL,
    run_id       TEXT,
    generation   INTEGER,
    tenant_id    TEXT,
    status       TEXT NOT NULL,
    reason       TEXT,
    seq          INTEGER NOT NULL,
    at           REAL NOT NULL,
    PRIMARY KEY (region, workload_id)
);
CREATE INDEX IF NOT EXISTS region_runs_run ON region_runs(run_id);
"""


def _v10(db: sqlite3.Connection) -> None:
    """The control plane's runs (the body each was submitted with, so a redispatch after a
    restart sends the same workload) and its per-region view of every workload a region reported,
    the runs submitted straight to a region included (docs/regions.md)."""
    for stmt in split_statements(SCHEMA_10):
        db.execute(stmt)


SCHEMA_11 = """
CREATE TABLE IF NOT EXISTS usage_records (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    ref             TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    pool            TEXT NOT NULL,
    market          TEXT NOT NULL,
    start_at        REAL NOT NULL,
    end_at          REAL NOT NULL,
    gpus            REAL NOT NULL DEFAULT 0,
    cpus            REAL NOT NULL DEFAULT 0,
    memory_gib      REAL NOT NULL DEFAULT 0,
    gpu_type        TEXT,
    used_gpus       REAL,
    used_cpus       REAL,
    used_memory_gib REAL,
    tokens          INTEGER NOT NULL DEFAULT 0,
    nodes           INTEGER NOT NULL DEFAULT 0,
    instance_type   TEXT
);
CREATE INDEX IF NOT EXISTS usage_records_time ON usage_records(end_at);
CREATE INDEX IF NOT EXISTS usage_records_tenant ON usage_records(tenant_id, end_at);
CREATE TABLE IF NOT EXISTS price_tables (
    version         TEXT NOT NULL,
    effective_at    REAL NOT NULL,
    body            TEXT NOT NULL,
    PRIMARY KEY (version, effective_at)
);
"""


def _v11(db: sqlite3.Connection) -> None:
    """Cost (docs/cost.md): usage records of serving replicas and node-hours of capacity
    (``kind`` replica / capacity; batch workloads are priced from their transitions), and every
    version of the price table with when it took effect."""
    for stmt in split_statements(SCHEMA_11):
        db.execute(stmt)


SCHEMA_12 = """
CREATE TABLE IF NOT EXISTS region_direct_runs (
    region       TEXT NOT NULL,
    workload_id  TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    demand       TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_at   REAL,
    ended_at     REAL,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (region, workload_id)
);
CREATE INDEX IF NOT EXISTS region_direct_runs_open ON region_direct_runs(ended_at);
"""


def _v12(db: sqlite3.Connection) -> None:
    """Runs submitted straight to a region, as the control plane holds them in the global quota
    (docs/regions.md, "Global quotas"): their demand, status and first start; the hold itself is a
    ``quota_reservations`` row keyed ``rg-<region>-<workload>``."""
    for stmt in split_statements(SCHEMA_12):
        db.execute(stmt)


MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "tables", _v1),
    (2, "ranks, tenant counters and queue buckets", _v2),
    (3, "retention indexes", _v3),
    (4, "pipeline runs and node runs", _v4),
    (5, "map items and their counters", _v5),
    (6, "pipeline schedules, event triggers and events", _v6),
    (7, "pipeline failure counts and run retries", _v7),
    (8, "global quota ledger, regions and assignments", _v8),
    (9, "single-writer leases (the scheduler's fencing token)", _v9),
    (10, "control-plane runs and the regions' run view", _v10),
    (11, "usage records and price table versions", _v11),
    (12, "direct runs held in the control plane's global quota", _v12),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def version(db: sqlite3.Connection) -> int:
    """The file's ``PRAGMA user_version`` (0: never versioned, or new)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_version(db: sqlite3.Connection, path: str) -> int:
    """The file's version; ``SchemaTooNew`` when a newer Orion wrote it."""
    v = version(db)
    if v > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the store {path} has schema version {v}, newer than this Orion knows "
            f"({SCHEMA_VERSION}): upgrade Orion, or point store.path at another file"
        )
    return v


def check_file(path: str) -> None:
    """``SchemaTooNew`` when the file at ``path`` (if there is one) was written by a newer Orion:
    ``orion up`` asks before it starts anything (the actors would otherwise fail to start, over
    and over, with the reason only in their logs)."""
    if not os.path.exists(path):
        return
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        check_version(db, path)
    finally:
        db.close()


def migrate(db: sqlite3.Connection, path: str = "") -> None:
    """Bring ``db`` to ``SCHEMA_VERSION``, one step after the other; the caller holds the write
    transaction (another process may have migrated it while we waited for that lock)."""
    current = check_version(db, path)
    for number, _what, step in MIGRATIONS:
        if number > current:
            step(db)
    if current < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def split_statements(script: str) -> list[str]:
    """Statements of a DDL script (triggers keep their inner ``;``)."""
    out, cur = [], []
    for line in script.strip().splitlines():
        cur.append(line)
        text = "\n".join(cur).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            out.append(text)
            cur = []
    return out
