"""Snapshots and verified restores of the SQLite store (``orion_ray/backup``), without Ray."""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading

import pytest

from orion_ray.backup.base import RestoreRefused, SnapshotRejected
from orion_ray.backup.manifest import Manifest
from orion_ray.backup.service import list_backups, restore, take_backup
from orion_ray.backup.sqlite_backup import SqliteBackup
from orion_ray.store import SQLiteStore
from orion_ray.store.schema import SCHEMA_VERSION

from .backup_support import config, fill

YES = {"confirm": lambda _q: True}


@pytest.fixture
def cfg(tmp_path):
    return config(tmp_path)


@pytest.fixture
def store(cfg):
    s = SQLiteStore(cfg.orion.store.resolved_path())
    yield s
    s.close()


def _files(cfg, name):
    d = cfg.orion.backup.dir
    return f"{d}/{name}.db.gz", f"{d}/{name}.manifest.json"


def test_a_backup_writes_a_compressed_copy_and_its_manifest(cfg, store):
    fill(store, 30)
    got = take_backup(cfg, now=1_800_000_000.0)
    data, mpath = _files(cfg, got["name"])
    m = Manifest.from_json(open(mpath).read())
    assert m.schema_version == SCHEMA_VERSION and m.backend == "sqlite"
    assert m.tables["workloads"] == 30 and m.tables["transitions"] == 60 and m.tables["audit"] == 30
    assert m.max_seq == 30 and m.orion_version and m.created_at == 1_800_000_000.0
    with gzip.open(data) as f:
        assert f.read(16) == b"SQLite format 3\x00"
    import hashlib

    assert hashlib.sha256(open(data, "rb").read()).hexdigest() == m.sha256
    assert got["workloads"] == 30 and got["targets"] == [cfg.orion.backup.dir]


def test_the_snapshot_is_private_to_its_owner(cfg, store):
    import os

    fill(store, 1)
    got = take_backup(cfg)
    for p in _files(cfg, got["name"]):
        assert os.stat(p).st_mode & 0o077 == 0


def test_a_backup_taken_while_orion_writes_is_consistent(cfg, store):
    """Writers go on during the copy: the snapshot is one commit's store (counts agree)."""
    fill(store, 50)
    stop = threading.Event()

    def write():
        i = 1000
        while not stop.is_set():
            fill(store, 1, start=i)
            i += 1

    t = threading.Thread(target=write)
    t.start()
    try:
        names = [take_backup(cfg, keep=10)["name"] for _ in range(3)]
    finally:
        stop.set()
        t.join()
    for name in names:
        m = Manifest.from_json(open(_files(cfg, name)[1]).read())
        # each submission writes one row, two transitions and one audit record in one transaction
        assert m.tables["transitions"] == 2 * m.tables["workloads"] == 2 * m.tables["audit"]
        assert m.max_seq == m.tables["workloads"]


def test_retention_keeps_the_newest(cfg, store):
    fill(store, 1)
    names = [take_backup(cfg, now=1_800_000_000.0 + i, keep=3)["name"] for i in range(5)]
    listed = [i["name"] for i in list_backups(cfg)["items"]]
    assert listed == names[-3:][::-1]


def test_restore_brings_the_store_back_and_keeps_the_old_one_aside(cfg, store, tmp_path):
    ids = fill(store, 10)
    snap = take_backup(cfg)["name"]
    fill(store, 5, start=100)
    store.close()
    got = restore(snap, cfg, **YES)
    assert got["verified"] and ".before-restore-" in got["previous"]
    back = SQLiteStore(cfg.orion.store.resolved_path())
    try:
        assert sorted(w.workload_id for w in back.active()) == ids
    finally:
        back.close()
    old = sqlite3.connect(got["previous"])
    assert old.execute("SELECT COUNT(*) FROM workloads").fetchone()[0] == 15  # WAL folded in first


def test_restore_into_a_deleted_store(cfg, store):
    fill(store, 4)
    snap = take_backup(cfg)["name"]
    store.close()
    path = cfg.orion.store.resolved_path()
    for side in ("", "-wal", "-shm"):
        import os

        if os.path.exists(path + side):
            os.unlink(path + side)
    got = restore(snap, cfg, **YES)
    assert got["previous"] is None
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM workloads").fetchone()[0] == 4


def test_restore_by_file_path(cfg, store):
    fill(store, 2)
    data, _ = _files(cfg, take_backup(cfg)["name"])
    store.close()
    assert restore(data, cfg, **YES)["workloads"] == 2


def _snapshot(cfg, store):
    fill(store, 6)
    name = take_backup(cfg)["name"]
    store.close()
    return name


def _unchanged(cfg, before: int):
    db = sqlite3.connect(cfg.orion.store.resolved_path())
    assert db.execute("SELECT COUNT(*) FROM workloads").fetchone()[0] == before


def test_a_corrupted_snapshot_is_refused_before_anything_is_swapped(cfg, store):
    name = _snapshot(cfg, store)
    data, _ = _files(cfg, name)
    raw = bytearray(open(data, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(data, "wb").write(bytes(raw))
    with pytest.raises(SnapshotRejected, match="sha256 mismatch"):
        restore(name, cfg, **YES)
    _unchanged(cfg, 6)


def test_a_snapshot_whose_database_is_damaged_is_refused(cfg, store):
    """The manifest is rewritten to match a damaged file: integrity_check catches it."""
    name = _snapshot(cfg, store)
    data, mpath = _files(cfg, name)
    with gzip.open(data) as f:
        db = bytearray(f.read())
    tmp = cfg.orion.store.resolved_path() + ".probe"
    open(tmp, "wb").write(bytes(db))
    probe = sqlite3.connect(tmp)
    root = probe.execute("SELECT rootpage FROM sqlite_master WHERE name='transitions'").fetchone()[0]
    size = probe.execute("PRAGMA page_size").fetchone()[0]
    probe.close()
    for i in range((root - 1) * size + 8, root * size):  # the table's cells, not its header
        db[i] = 0xAB
    with open(data, "wb") as out:
        out.write(gzip.compress(bytes(db)))
    import hashlib

    m = json.loads(open(mpath).read())
    m["sha256"] = hashlib.sha256(open(data, "rb").read()).hexdigest()
    m["db_sha256"] = hashlib.sha256(bytes(db)).hexdigest()
    open(mpath, "w").write(json.dumps(m))
    with pytest.raises(SnapshotRejected) as exc:
        restore(name, cfg, **YES)
    assert any("integrity" in d["problem"] or "readable" in d["problem"] for d in exc.value.details)
    _unchanged(cfg, 6)


def _rewrite_manifest(cfg, name, **change):
    _, mpath = _files(cfg, name)
    m = json.loads(open(mpath).read())
    m.update(change)
    open(mpath, "w").write(json.dumps(m))
    return m


def test_row_counts_that_differ_from_the_manifest_are_refused(cfg, store):
    name = _snapshot(cfg, store)
    m = json.loads(open(_files(cfg, name)[1]).read())
    _rewrite_manifest(cfg, name, tables={**m["tables"], "workloads": 7})
    with pytest.raises(SnapshotRejected, match="table workloads: 6 rows, the manifest says 7"):
        restore(name, cfg, **YES)


def test_a_newer_schema_is_refused(cfg, store):
    fill(store, 1)
    store.close()
    db = sqlite3.connect(cfg.orion.store.resolved_path())
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    name = take_backup(cfg)["name"]
    with pytest.raises(SnapshotRejected, match="newer than this Orion"):
        restore(name, cfg, **YES)


def test_a_truncated_file_or_a_missing_manifest_is_refused(cfg, store):
    name = _snapshot(cfg, store)
    data, mpath = _files(cfg, name)
    raw = open(data, "rb").read()
    open(data, "wb").write(raw[: len(raw) // 2])
    import hashlib

    _rewrite_manifest(cfg, name, sha256=hashlib.sha256(raw[: len(raw) // 2]).hexdigest())
    with pytest.raises(SnapshotRejected, match="cannot decompress"):
        restore(name, cfg, **YES)
    import os

    os.unlink(mpath)
    with pytest.raises(SnapshotRejected, match="no manifest"):
        restore(data, cfg, **YES)
    with pytest.raises(FileNotFoundError):
        restore("orion-20990101T000000000Z-abcd", cfg, **YES)


def test_a_restore_is_refused_while_the_store_is_open_elsewhere(cfg, store):
    """A process holding the store open is Orion running on it (this test's own pid is skipped,
    so another process holds it)."""
    import subprocess
    import sys

    name = take_backup(cfg)["name"]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys,time; db=sqlite3.connect(sys.argv[1]); db.execute('SELECT 1').fetchall(); "
            "print('ok', flush=True); time.sleep(60)",
            cfg.orion.store.resolved_path(),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"ok"
        with pytest.raises(RestoreRefused, match=f"pid {holder.pid}"):
            restore(name, cfg, **YES)
    finally:
        holder.kill()
        holder.wait()


def test_a_restore_is_refused_while_orion_runs_or_unconfirmed(cfg, store):
    name = _snapshot(cfg, store)
    with pytest.raises(RestoreRefused, match="Ray head pid 42"):
        restore(name, cfg, running=lambda: "Ray head pid 42 is alive", **YES)
    with pytest.raises(RestoreRefused, match="--yes"):
        restore(name, cfg)
    import os

    # nothing was left behind by the refused attempt
    leftovers = [p for p in os.listdir(os.path.dirname(cfg.orion.store.resolved_path())) if "restoring" in p]
    assert leftovers == []


def test_in_use_finds_nobody_for_a_closed_store(cfg, store):
    store.close()
    assert SqliteBackup(cfg.orion.store.resolved_path()).in_use() == []


def test_two_restores_at_once_keep_both_previous_stores(cfg, store):
    fill(store, 3)
    snap = take_backup(cfg)["name"]
    store.close()
    first = restore(snap, cfg, now=1_800_000_000.0, **YES)
    second = restore(snap, cfg, now=1_800_000_000.0, **YES)
    assert first["previous"] != second["previous"]
    import os

    assert os.path.exists(first["previous"]) and os.path.exists(second["previous"])
