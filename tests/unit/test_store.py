"""SQLiteStore: durable desired state on a temporary file."""

import os
import sqlite3
import stat

import pytest

from orion_ray.models import Workload, WorkloadSpec
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from tests.pg_server import pg_server, sqlite_only, store_backend  # noqa: F401 (each test on both backends)

pytestmark = pytest.mark.usefixtures("store_backend")


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "sub" / "orion.db")


@pytest.fixture
def store(path):
    s = SQLiteStore(path)
    yield s
    s.close()


def make(wid, tenant="default", request_id=None, status=Status.QUEUED, **spec):
    spec = WorkloadSpec.model_validate(
        {"workload_type": "task", "function": "pkg.mod:fn", "metadata": {"request_id": request_id}, **spec},
        context={"stored": True},
    )
    return Workload.model_validate(
        dict(workload_id=wid, tenant_id=tenant, spec=spec, status=status, submitted_at=1000.0),
        context={"stored": True},
    )


def insert(store, w):
    store.insert(w, [("submitted", 1000.0, "accepted"), (w.status.value, 1000.0, "")])
    return w


def test_insert_then_get_round_trips(store):
    w = insert(store, make("wl-1", tenant="acme", resources={"gpu": 0.5, "memory": "1Gi"}))
    assert w.seq > 0
    got = store.get("wl-1")
    assert got == w
    assert got.spec.resources.memory == 2**30
    assert store.get("wl-nope") is None


def test_update_persists_state_and_appends_history(store):
    w = insert(store, make("wl-1"))
    w.status, w.started_at, w.worker_id = Status.STARTING, 1001.0, "node-1"
    w.placement = [{"bundle": 0, "node_id": "node-1"}]
    store.update(w, ("starting", 1001.0, "placement group requested"))
    w.result = {"answer": 42}
    store.update(w, None)  # a state change without a transition
    got = store.get("wl-1")
    assert got.status is Status.STARTING and got.worker_id == "node-1"
    assert got.placement == [{"bundle": 0, "node_id": "node-1"}]
    assert got.result == {"answer": 42}
    assert [h["status"] for h in store.history("wl-1")] == ["submitted", "queued", "starting"]


def test_update_many_writes_every_change(store):
    a, b = insert(store, make("wl-a")), insert(store, make("wl-b"))
    a.status, b.status = Status.STARTING, Status.CANCELLED
    store.update_many([(a, ("starting", 1002.0, "")), (b, ("cancelled", 1003.0, "user"))])
    store.update_many([])
    assert store.get("wl-a").status is Status.STARTING
    assert store.get("wl-b").status is Status.CANCELLED
    assert store.history("wl-b")[-1]["reason"] == "user"


def test_history_in_order_with_iso_times_and_attempts(store):
    w = insert(store, make("wl-1"))
    for status, at in (("starting", 1001.0), ("running", 1002.0)):
        w.status = Status(status)
        store.update(w, (status, at, status))
    w.attempt, w.status = 2, Status.QUEUED
    store.update(w, ("queued", 1003.0, "retry"))
    h = store.history("wl-1")
    assert [x["status"] for x in h] == ["submitted", "queued", "starting", "running", "queued"]
    assert h[0] == {"status": "submitted", "at": "1970-01-01T00:16:40Z", "attempt": 1, "reason": "accepted"}
    assert [x["attempt"] for x in h] == [1, 1, 1, 1, 2]
    assert store.history("wl-nope") == []


def test_list_newest_first_with_paging(store):
    for i in range(5):
        insert(store, make(f"wl-{i}"))
    ids = [w.workload_id for w in store.list()]
    assert ids == ["wl-4", "wl-3", "wl-2", "wl-1", "wl-0"]
    page1 = store.list(limit=2)
    assert [w.workload_id for w in page1] == ["wl-4", "wl-3"]
    page2 = store.list(limit=2, before_seq=page1[-1].seq)
    assert [w.workload_id for w in page2] == ["wl-2", "wl-1"]
    page3 = store.list(limit=2, before_seq=page2[-1].seq)
    assert [w.workload_id for w in page3] == ["wl-0"]


def test_list_filters_by_status_and_tenant(store):
    insert(store, make("a-q", tenant="a"))
    insert(store, make("b-q", tenant="b"))
    insert(store, make("a-c", tenant="a", status=Status.CANCELLED))
    assert [w.workload_id for w in store.list(tenant_id="a")] == ["a-c", "a-q"]
    assert [w.workload_id for w in store.list(status="queued")] == ["b-q", "a-q"]
    assert [w.workload_id for w in store.list(status="queued", tenant_id="a")] == ["a-q"]
    assert store.list(status="running") == []


def test_find_by_request_id_is_per_tenant(store):
    insert(store, make("wl-a", tenant="a", request_id="req-1"))
    insert(store, make("wl-b", tenant="b", request_id="req-1"))  # same id, other tenant: fine
    assert store.find_by_request_id("a", "req-1").workload_id == "wl-a"
    assert store.find_by_request_id("b", "req-1").workload_id == "wl-b"
    assert store.find_by_request_id("c", "req-1") is None


def test_request_id_unique_per_tenant_and_insert_is_atomic(store):
    insert(store, make("wl-1", tenant="a", request_id="req-1"))
    with pytest.raises(sqlite3.IntegrityError):
        insert(store, make("wl-2", tenant="a", request_id="req-1"))
    assert store.get("wl-2") is None
    assert store.history("wl-2") == []  # the transitions were rolled back too
    insert(store, make("wl-3", tenant="a"))  # no request_id: never conflicts
    insert(store, make("wl-4", tenant="a"))


def test_logs(store):
    assert store.get_logs("wl-1") is None
    store.set_logs("wl-1", "first\n")
    store.set_logs("wl-1", "second\n")
    assert store.get_logs("wl-1") == "second\n"


def test_active_excludes_terminal_in_submission_order(store):
    for wid, status in (
        ("q", Status.QUEUED),
        ("done", Status.COMPLETED),
        ("r", Status.RUNNING),
        ("f", Status.FAILED),
        ("c", Status.CANCELLED),
        ("p", Status.PREEMPTED),
        ("s", Status.STARTING),
    ):
        insert(store, make(wid, status=status))
    assert [w.workload_id for w in store.active()] == ["q", "r", "p", "s"]


def test_count_runs(store):
    w = insert(store, make("wl-1"))
    for status in ("starting", "running", "queued", "starting", "running"):
        w.status = Status(status)
        store.update(w, (status, 1.0, ""))
    assert store.count_runs("wl-1") == 2


@pytest.mark.usefixtures("sqlite_only")
def test_wal_mode_and_private_file(store, path):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store.ping()


def test_data_survives_close_and_reopen(path):
    s = SQLiteStore(path)
    w = insert(s, make("wl-1", request_id="req-1"))
    s.set_logs("wl-1", "hello")
    s.close()
    s2 = SQLiteStore(path)
    try:
        assert s2.get("wl-1") == w
        assert s2.find_by_request_id("default", "req-1").workload_id == "wl-1"
        assert [h["status"] for h in s2.history("wl-1")] == ["submitted", "queued"]
        assert s2.get_logs("wl-1") == "hello"
        insert(s2, make("wl-2"))
        assert s2.get("wl-2").seq > w.seq
    finally:
        s2.close()


def test_stored_spec_with_past_deadline_still_loads(store):
    insert(store, make("wl-1", deadline="2001-01-01T00:00:00Z"))
    assert store.get("wl-1").spec.deadline.year == 2001
    assert [w.workload_id for w in store.active()] == ["wl-1"]
