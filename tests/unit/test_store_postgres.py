"""The PostgreSQL store against a real server (tests/pg_server.py): every migration applies, writers
in separate sessions are serialised (one workload per request_id, queue limits hold), a held lock
is a quick 503, a crash inside a transaction stores nothing, a lost connection comes back."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from orion_ray.errors import QueueFull, StoreUnavailable
from orion_ray.models import WorkloadSpec
from orion_ray.scheduler.ingest import new_workload
from orion_ray.store import dialect
from orion_ray.store.postgres import PostgresStore
from orion_ray.store.schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew
from orion_ray.store.sqlite import SQLiteStore
from tests.pg_server import pg_server  # noqa: F401

TASK = {"workload_type": "task", "function": "math:factorial", "resources": {"cpu": 1}}


def workload(request_id=None, tenant="default"):
    spec = WorkloadSpec.model_validate({**TASK, "metadata": {"request_id": request_id}})
    return new_workload(spec, tenant, time.time())


def tables_of(store) -> set[str]:
    if isinstance(store, PostgresStore):
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    return {r[0] for r in store._query(sql, ())}


def test_every_migration_applies_and_the_tables_match_sqlites(pg_server, tmp_path):  # noqa: F811
    pg = PostgresStore(pg_server.fresh_dsn())
    lite = SQLiteStore(str(tmp_path / "o.db"))
    assert pg._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert tables_of(pg) - {dialect.VERSION_TABLE} == tables_of(lite)
    for table in tables_of(lite):
        info = f"PRAGMA table_info({table})"
        assert [r[1] for r in pg._db.execute(info)] == [r[1] for r in lite._db.execute(info)], table


@pytest.mark.parametrize("start", range(1, SCHEMA_VERSION))
def test_a_database_at_any_older_version_is_migrated_to_the_latest(pg_server, start):  # noqa: F811
    from orion_ray.store.pg_connection import PgConnection

    dsn = pg_server.fresh_dsn()
    db = PgConnection(dsn)
    db.execute("BEGIN IMMEDIATE")
    for stmt in dialect.PRELUDE:
        db.execute(stmt)
    for number, _what, step in MIGRATIONS:
        if number <= start:
            step(db)  # type: ignore[arg-type]
    db.execute(f"PRAGMA user_version={start}")
    db.execute("COMMIT")
    db.close()
    store = PostgresStore(dsn)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    w, created = store.submit(workload("r1"), who="t", max_queue_size=10)
    assert created and store.get(w.workload_id).workload_id == w.workload_id


def test_a_database_from_a_newer_orion_is_refused(pg_server):  # noqa: F811
    dsn = pg_server.fresh_dsn()
    PostgresStore(dsn)._db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="newer than this Orion"):
        PostgresStore(dsn)


def race(n, fn):
    """``fn(i)`` in ``n`` threads started together; their results or exceptions, in order."""
    barrier, out = threading.Barrier(n), [None] * n

    def run(i):
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # the race's loser: kept to be asserted on
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_writers_racing_on_one_request_id_make_exactly_one_workload(pg_server):  # noqa: F811
    dsn = pg_server.fresh_dsn()
    stores = [PostgresStore(dsn) for _ in range(6)]  # six sessions: replicas and a scheduler
    results = race(6, lambda i: stores[i].submit(workload("same"), who="t", max_queue_size=100))
    assert all(isinstance(r, tuple) for r in results), results
    assert sum(created for _, created in results) == 1
    assert len({w.workload_id for w, _ in results}) == 1
    assert stores[0].count_active() == 1 and len(stores[0].list()) == 1
    assert len(stores[0].history(results[0][0].workload_id)) == 2


def test_the_queue_limit_holds_across_racing_writers(pg_server):  # noqa: F811
    dsn = pg_server.fresh_dsn()
    stores = [PostgresStore(dsn) for _ in range(5)]
    results = race(5, lambda i: stores[i].submit(workload(f"r{i}"), who="t", max_queue_size=2))
    assert sum(isinstance(r, tuple) for r in results) == 2
    assert all(isinstance(r, QueueFull) for r in results if not isinstance(r, tuple))
    assert stores[0].count_active() == 2


def test_a_held_write_lock_is_a_quick_503_and_commits_nothing(pg_server):  # noqa: F811
    dsn = pg_server.fresh_dsn()
    holder, waiter = PostgresStore(dsn), PostgresStore(dsn, busy_timeout_ms=50)
    holder._db.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable) as err:
            waiter.submit(workload("r"), who="t", max_queue_size=10)
        assert err.value.retry_after == 1 and "locked" in str(err.value)
        assert waiter.count_active() == 0  # reads never wait for the writer
    finally:
        holder._db.execute("ROLLBACK")
    assert waiter.submit(workload("r"), who="t", max_queue_size=10)[1]


CRASH_CHILD = textwrap.dedent("""
    import os, sys, time
    from orion_ray.models import WorkloadSpec
    from orion_ray.scheduler.ingest import new_workload
    from orion_ray.store.postgres import PostgresStore
    store = PostgresStore(sys.argv[1])
    spec = WorkloadSpec.model_validate({"workload_type": "task", "function": "math:factorial",
                                        "metadata": {"request_id": "req-crash"}})
    w = new_workload(spec, "default", time.time())
    store._db.execute("BEGIN IMMEDIATE")
    store._submit(w, who="t", max_queue_size=100)  # row, transitions and audit written...
    os._exit(3)  # ...and the process dies before the commit
""")


def test_a_crash_before_the_commit_stores_nothing_and_a_retry_makes_one(pg_server):  # noqa: F811
    dsn = pg_server.fresh_dsn()
    store = PostgresStore(dsn)
    env = dict(os.environ)
    child = [sys.executable, "-c", CRASH_CHILD, dsn]
    out = subprocess.run(child, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 3, out.stderr[-2000:]
    assert store.count_active() == 0 and store.list() == [] and store.audit_log() == []
    for _ in range(2):
        store.submit(workload("req-crash"), who="t", max_queue_size=100)
    assert store.count_active() == 1 and len(store.audit_log()) == 1


def test_a_read_only_session_refuses_writes(pg_server):  # noqa: F811
    dsn = pg_server.fresh_dsn()
    PostgresStore(dsn)
    reader = PostgresStore(dsn, read_only=True)
    with pytest.raises(StoreUnavailable):
        reader.submit(workload("r"), who="t", max_queue_size=10)
    assert reader.count_active() == 0


def test_a_lost_connection_is_a_503_then_comes_back(pg_server):  # noqa: F811
    dsn = pg_server.fresh_dsn()
    store, admin = PostgresStore(dsn), PostgresStore(dsn)
    pid = store._query("SELECT pg_backend_pid()", ())[0][0]
    admin._query("SELECT pg_terminate_backend(?)", (pid,))
    with pytest.raises(StoreUnavailable):
        store.ping()
    store.ping()  # made again on the next use
    assert store.submit(workload("after"), who="t", max_queue_size=10)[1]


def test_connection_errors_never_show_the_password(pg_server):  # noqa: F811
    dsn = f"postgresql://orion:hunter2secret@127.0.0.1:{pg_server.port + 1}/nowhere?connect_timeout=2"
    with pytest.raises(Exception) as err:
        PostgresStore(dsn)
    assert "cannot connect" in str(err.value) and "hunter2secret" not in str(err.value)


def test_event_triggers_write_events_in_the_same_transaction(pg_server):  # noqa: F811
    store = PostgresStore(pg_server.fresh_dsn())
    store._db.execute(
        "INSERT INTO pipeline_schedules(tenant_id, name, kind, event_type, body, created_by, created_at, "
        "updated_at) VALUES (?,?,?,?,?,?,?,?)",
        ("default", "on-done", "event", "workload.completed", "{}", "t", 0.0, 0.0),
    )
    w, _ = store.submit(workload("r", tenant="default"), who="t", max_queue_size=10)
    w.status = type(w.status)("completed")
    store.update(w, ("completed", 5.0, "done"))
    rows = store._query("SELECT tenant_id, type, labels, at FROM pipeline_events", ())
    assert len(rows) == 1 and rows[0][:2] == ("default", "workload.completed") and rows[0][3] == 5.0
    assert '"workload_id": "%s"' % w.workload_id in rows[0][2]
