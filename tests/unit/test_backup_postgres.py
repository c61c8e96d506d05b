"""Snapshots and verified restores of the PostgreSQL store (``orion_ray/backup/pg_backup.py``)
against the session's real server (tests/pg_server.py), and the pure parts without one."""

from __future__ import annotations

import gzip
import json
import threading

import pytest

from orion_ray.backup.base import RestoreRefused, SnapshotRejected
from orion_ray.backup.manifest import Manifest
from orion_ray.backup.pg_backup import aside_name, check_sql, restore_list, split_dsn, table_data
from orion_ray.backup.service import restore, take_backup
from orion_ray.config import OrionConfig
from orion_ray.store import SQLiteStore
from orion_ray.store.postgres import PostgresStore
from orion_ray.store.schema import SCHEMA_VERSION
from tests.pg_server import PgServer, pg_server  # noqa: F401

from .backup_support import config, fill

YES = {"confirm": lambda _q: True}

TOC = """\
;
; Archive created at 2026-12-07 05:00:00 UTC
215; 2615 16385 SCHEMA - t1 orion
4321; 0 0 COMMENT - SCHEMA public pg_database_owner
216; 1259 16390 TABLE t1 workloads orion
3401; 0 16390 TABLE DATA t1 workloads orion
3402; 0 16399 TABLE DATA t1 schema_version orion
"""


def test_the_table_of_contents_is_read_and_the_schema_entries_left_to_the_restore():
    assert table_data(TOC) == {"t1": {"workloads", "schema_version"}}
    kept = restore_list(TOC)
    assert "SCHEMA - t1" not in kept and "COMMENT - SCHEMA" not in kept
    assert "TABLE t1 workloads" in kept and "TABLE DATA t1 workloads" in kept


def test_the_password_never_reaches_a_command_line():
    conninfo, env = split_dsn("postgresql://orion:s3cret@db.internal:5433/orion?options=-csearch_path%3Dt1")
    assert "s3cret" not in conninfo and env == {"PGPASSWORD": "s3cret"}
    assert "db.internal" in conninfo and "5433" in conninfo
    assert split_dsn("host=h dbname=d user=u")[1] == {}


def test_the_aside_name_fits_postgresql_names():
    assert aside_name("t1", 1_800_000_000.0) == "t1_before_restore_20270115t080000"
    assert len(aside_name("x" * 80, 1_800_000_000.0)) <= 63


def test_the_checks_name_each_table_and_the_version():
    m = Manifest("n", "postgres", 0.0, "0", 7, {"workloads": 3, "audit": 1}, "a", "b", 1, 1)
    sql = check_sql("t1", m)
    assert "table workloads: % rows, the manifest says 3" in sql and 'FROM "t1"."audit"' in sql
    assert "the manifest says 7" in sql


# -- against a real server ------------------------------------------------------------------------
@pytest.fixture
def pg(pg_server: PgServer, tmp_path):  # noqa: F811
    """A configuration on a fresh schema of the session's server, and a store open on it."""
    dsn = pg_server.fresh_dsn()
    cfg = OrionConfig.model_validate(
        {"orion": {"store": {"backend": "postgres", "dsn": dsn}, "backup": {"dir": str(tmp_path / "bk")}}}
    )
    store = PostgresStore(dsn)
    yield cfg, store, pg_server
    store.close()


def _files(cfg, name):
    d = cfg.orion.backup.dir
    return f"{d}/{name}.db.gz", f"{d}/{name}.manifest.json"


def _ids(dsn: str) -> list[str]:
    s = PostgresStore(dsn, read_only=True)
    try:
        return sorted(r[0] for r in s._query("SELECT workload_id FROM workloads", ()))
    finally:
        s.close()


def _raw(server, dsn, statement):
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(statement)


def test_a_postgres_backup_is_a_dump_with_its_manifest(pg):
    cfg, store, _ = pg
    fill(store, 12)
    got = take_backup(cfg, now=1_800_000_000.0)
    data, mpath = _files(cfg, got["name"])
    m = Manifest.from_json(open(mpath).read())
    assert m.backend == "postgres" and m.schema_version == SCHEMA_VERSION
    assert m.tables["workloads"] == 12 and m.tables["transitions"] == 24 and m.max_seq == 12
    assert m.extra["schema"].startswith("t") and m.size_bytes > 0
    with gzip.open(data) as f:
        assert f.read(5) == b"PGDMP"  # PostgreSQL's custom format, inside gzip
    import hashlib

    assert hashlib.sha256(open(data, "rb").read()).hexdigest() == m.sha256
    assert got["backend"] == "postgres" and got["workloads"] == 12


def test_a_postgres_backup_taken_while_orion_writes_is_consistent(pg):
    """The counts come from the very snapshot pg_dump dumps: they agree with each other."""
    cfg, store, _ = pg
    fill(store, 20)
    writer = PostgresStore(cfg.orion.store.dsn)
    stop = threading.Event()

    def write():
        i = 1000
        while not stop.is_set():
            fill(writer, 1, start=i)
            i += 1

    t = threading.Thread(target=write)
    t.start()
    try:
        names = [take_backup(cfg, keep=10)["name"] for _ in range(2)]
    finally:
        stop.set()
        t.join()
        writer.close()
    for name in names:
        m = Manifest.from_json(open(_files(cfg, name)[1]).read())
        assert m.tables["transitions"] == 2 * m.tables["workloads"] == 2 * m.tables["audit"]
        assert m.max_seq == m.tables["workloads"]


def test_a_restore_brings_every_workload_back_and_keeps_the_old_schema(pg):
    cfg, store, server = pg
    ids = fill(store, 15)
    snap = take_backup(cfg)["name"]
    fill(store, 3, start=100)  # acknowledged after the snapshot: not in it
    _raw(server, cfg.orion.store.dsn, "DELETE FROM audit")  # damage
    _raw(server, cfg.orion.store.dsn, "DROP TABLE transitions CASCADE")
    store.close()
    got = restore(snap, cfg, **YES)
    assert got["verified"] and "schema" in got["store"] and "before_restore" in got["previous"]
    assert _ids(cfg.orion.store.dsn) == sorted(ids)
    again = PostgresStore(cfg.orion.store.dsn)  # opens, migrated, writes (triggers and functions back)
    try:
        assert [h["status"] for h in again.history(ids[0])] == ["submitted", "queued"]
        fill(again, 1, start=500)
        assert again._query("SELECT COUNT(*) FROM audit", ())[0][0] == 16
    finally:
        again.close()


def test_a_restore_into_a_dropped_schema(pg):
    cfg, store, server = pg
    ids = fill(store, 4)
    snap = take_backup(cfg)["name"]
    store.close()
    schema = Manifest.from_json(open(_files(cfg, snap)[1]).read()).extra["schema"]
    server.sql("orion", f"DROP SCHEMA {schema} CASCADE")
    got = restore(snap, cfg, **YES)
    assert got["previous"] is None and _ids(cfg.orion.store.dsn) == sorted(ids)


def _count(cfg) -> int:
    return len(_ids(cfg.orion.store.dsn))


def test_a_corrupted_postgres_snapshot_is_refused_before_anything_changes(pg):
    cfg, store, _ = pg
    fill(store, 5)
    snap = take_backup(cfg)["name"]
    fill(store, 2, start=50)
    data = _files(cfg, snap)[0]
    raw = bytearray(open(data, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(data, "wb").write(bytes(raw))
    store.close()
    with pytest.raises(SnapshotRejected, match="sha256 mismatch"):
        restore(snap, cfg, **YES)
    assert _count(cfg) == 7


def test_counts_that_differ_from_the_manifest_roll_the_restore_back(pg):
    """The counts are compared inside the restore's transaction: a mismatch leaves the live
    schema as it was (no aside schema, nothing restored)."""
    cfg, store, _ = pg
    fill(store, 5)
    snap = take_backup(cfg)["name"]
    fill(store, 2, start=50)
    mpath = _files(cfg, snap)[1]
    m = json.loads(open(mpath).read())
    m["tables"]["workloads"] = 6
    open(mpath, "w").write(json.dumps(m))
    store.close()
    with pytest.raises(SnapshotRejected) as err:
        restore(snap, cfg, **YES)
    assert "table workloads: 5 rows, the manifest says 6" in str(err.value.details)
    assert _count(cfg) == 7
    s = PostgresStore(cfg.orion.store.dsn, read_only=True)
    try:
        schemas = s._query("SELECT nspname FROM pg_namespace WHERE nspname LIKE '%before_restore%'", ())
        assert not [r for r in schemas if r[0].startswith(m["extra"]["schema"] + "_")]
    finally:
        s.close()


def test_a_table_missing_from_the_dump_is_refused_by_its_table_of_contents(pg):
    cfg, store, _ = pg
    fill(store, 2)
    snap = take_backup(cfg)["name"]
    mpath = _files(cfg, snap)[1]
    m = json.loads(open(mpath).read())
    m["tables"]["invented"] = 0
    open(mpath, "w").write(json.dumps(m))
    store.close()
    with pytest.raises(SnapshotRejected, match="no data for table"):
        restore(snap, cfg, **YES)


def test_a_restore_is_refused_while_an_orion_session_is_on_the_store(pg):
    cfg, store, _ = pg
    fill(store, 2)
    snap = take_backup(cfg)["name"]
    with pytest.raises(RestoreRefused, match="session"):
        restore(snap, cfg, **YES)  # `store` (an Orion session, any machine) is still open
    store.close()
    with pytest.raises(RestoreRefused, match="--yes"):
        restore(snap, cfg)


def test_a_snapshot_of_the_other_backend_is_refused_with_the_reason(pg, tmp_path):
    cfg, store, _ = pg
    fill(store, 2)
    pg_snap = take_backup(cfg)["name"]
    sqlite_cfg = config(tmp_path / "lite")
    lite = SQLiteStore(sqlite_cfg.orion.store.resolved_path())
    fill(lite, 1)
    lite.close()
    lite_snap = take_backup(sqlite_cfg)["name"]
    store.close()
    with pytest.raises(SnapshotRejected, match="taken from a sqlite store and this store is postgres"):
        restore(_files(sqlite_cfg, lite_snap)[1], cfg, **YES)
    with pytest.raises(SnapshotRejected, match="taken from a postgres store and this store is sqlite"):
        restore(_files(cfg, pg_snap)[1], sqlite_cfg, **YES)
    assert _count(cfg) == 2


def test_the_litestream_replica_is_refused_for_a_postgres_store(tmp_path):
    from orion_ray.backup.replica import restore_from_replica

    cfg = OrionConfig.model_validate(
        {
            "orion": {
                "store": {"backend": "postgres", "dsn": "host=h dbname=d"},
                "backup": {"dir": str(tmp_path)},
            }
        }
    )
    with pytest.raises(RestoreRefused, match="replica is SQLite's"):
        restore_from_replica(cfg, confirm=lambda _q: True)
