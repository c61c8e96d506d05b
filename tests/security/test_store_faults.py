"""Tried: the store failing under a live Orion — its SQLite file write-locked by another process,
its file deleted (moved away) while Orion runs — and reading Orion's files in ORION_HOME as
another user would. Answered: a locked store is a 503 with ``Retry-After`` (the contract's error
body, code ``store_unavailable``) on the API replica's submissions and on the scheduler's
routes, while the scheduler keeps answering; a deleted file fails ``/health`` with the reason and
every submission is refused (503, nothing acknowledged) until the very file is back; the
database, its WAL and shared memory, the Ray head's log, the cluster state and the credentials
are all 0600. The many edge cases (a replaced file, a failed write retried, migrations,
retention) are unit tests: ``tests/unit/test_store_faults.py``."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from contextlib import contextmanager

import pytest

pytestmark = pytest.mark.e2e

# runs until cancelled (the test cancels it): a workload the scheduler's cancel route acts on
SLEEPER = {"workload_type": "task", "function": "time:sleep", "args": [120], "resources": {"cpu": 1}}
TASK = {"workload_type": "task", "function": "math:factorial", "args": [5], "resources": {"cpu": 1}}


@contextmanager
def write_locked(path):
    """Another process's write transaction on the live store, held for the ``with``."""
    other = sqlite3.connect(str(path), isolation_level=None, timeout=30)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def assert_store_503(r):
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "store_unavailable"
    assert int(r.headers["Retry-After"]) >= 1


def eventually(check, what: str, tries: int = 120):
    """Poll ``check()`` (each try is an HTTP round trip, with a pause) until it is true."""
    for _ in range(tries):
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"never: {what}")


def test_a_locked_store_is_a_503_with_retry_after_and_the_scheduler_keeps_answering(live):
    db = live.home / "orion.db"
    r = live.submit("alice", SLEEPER)
    assert r.status_code == 202, r.text
    wid = r.json()["workload_id"]
    with live.client("alice") as alice:
        with write_locked(db):
            assert_store_503(alice.post("/api/v1/workloads", json=TASK))  # the replica's write
            assert_store_503(alice.delete(f"/api/v1/workloads/{wid}"))  # the scheduler's write
            assert alice.get("/api/v1/queue").status_code == 200  # its loop is not frozen
        # the scheduler's own connection waits at most a tick's worth for a lock (it waited 5 s,
        # freezing every call and cycle behind it), and says so
        with live.client("admin") as admin:
            assert admin.get("/health").json()["store_busy_timeout_ms"] <= 100
            assert alice.get(f"/api/v1/workloads/{wid}").status_code == 200  # reads go on
        r = alice.post("/api/v1/workloads", json=TASK)
        assert r.status_code == 202, r.text
        assert alice.delete(f"/api/v1/workloads/{wid}").json()["status"] == "cancelled"
        mine = {w["workload_id"] for w in alice.get("/api/v1/workloads").json()["items"]}
        assert {wid, r.json()["workload_id"]} <= mine


def test_a_deleted_store_file_fails_health_and_acknowledges_nothing(live):
    db, aside = live.home / "orion.db", live.home / "orion.db.aside"
    with live.client("alice") as alice:
        before = alice.post("/api/v1/workloads", json=TASK)
        assert before.status_code == 202, before.text
        os.rename(db, aside)  # the file is gone from its path; Orion's connections stay open
        try:
            assert_store_503(alice.post("/api/v1/workloads", json=TASK))
            h = alice.get("/health")
            assert h.status_code == 503 and h.json()["store"] == "down", h.text
            assert "deleted" in h.json()["store_error"]
        finally:
            os.rename(aside, db)  # the very file: Orion takes it up again
        eventually(lambda: alice.get("/health").status_code == 200, "health back once the file is")
        after = alice.post("/api/v1/workloads", json=TASK)
        assert after.status_code == 202, after.text
        for wid in (before.json()["workload_id"], after.json()["workload_id"]):
            assert alice.get(f"/api/v1/workloads/{wid}").status_code == 200  # none lost


def test_orions_files_are_owner_only(live):
    live.submit("alice", TASK)  # the WAL has content
    names = ["orion.db", "orion.db-wal", "orion.db-shm", "ray-head.log", "cluster.json", "credentials"]
    modes = {n: stat.S_IMODE(os.stat(live.home / n).st_mode) for n in names if (live.home / n).exists()}
    assert set(modes) >= {"orion.db", "orion.db-wal", "credentials", "ray-head.log"}, modes
    assert all(m == 0o600 for m in modes.values()), {n: oct(m) for n, m in modes.items()}
