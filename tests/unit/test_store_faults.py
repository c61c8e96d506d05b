"""Store faults are visible and safe (issue 14, item 5), on the real SQLite store and the
scheduler over ``FakeRuntime``: a locked store is a ``StoreUnavailable`` (the contract's 503 with
``Retry-After``), never a 500 after a long freeze; a deleted or replaced file refuses every
commit and fails ``ping``; a failed write leaves memory as it was and the step is retried;
files are 0600; the schema is versioned; retention deletes what ended long ago, in batches."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from contextlib import contextmanager

import pytest

from orion_ray.config import PolicyConfig, RetentionConfig, SchedulerConfig
from orion_ray.errors import StoreUnavailable
from orion_ray.models import WorkloadSpec
from orion_ray.runtime.fake import FakeRuntime, fake_node
from orion_ray.scheduler import Scheduler
from orion_ray.scheduler.ingest import new_workload
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from orion_ray.store.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION, SchemaTooNew, split_statements

from .test_scheduler_run import Clock, just_yield, on_loop, settle, task

DAY = 86_400.0


@contextmanager
def write_lock(path: str):
    """Another process's write transaction on the file, held for the ``with``."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def spec(**fields) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {"workload_type": "task", "function": "math:factorial", "args": [3], **fields}
    )


def put(store: SQLiteStore, tenant: str = "alice", at: float = 1_000_000.0):
    w = new_workload(spec(), tenant, at)
    return store.submit(w, who=tenant, max_queue_size=1000)[0]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- a locked store ---------------------------------------------------------------------------------
def test_a_locked_store_refuses_at_once_with_retry_after_and_commits_nothing(tmp_path):
    path = str(tmp_path / "o.db")
    store = SQLiteStore(path, busy_timeout_ms=0)
    first = put(store)
    with write_lock(path):
        with pytest.raises(StoreUnavailable) as got:
            put(store)
        assert got.value.status_code == 503 and got.value.code == "store_unavailable"
        assert got.value.retry_after and "locked" in got.value.message
        with pytest.raises(StoreUnavailable):
            store.update(first, (Status.QUEUED.value, 1.0, "again"))
        with pytest.raises(StoreUnavailable):
            store.audit("alice", "x", None, {}, 1.0)
    assert store.count_active() == 1  # the refused submission left nothing behind
    put(store)  # the lock is gone: writes go through again
    assert store.count_active() == 2


# -- a deleted or replaced file ---------------------------------------------------------------------
def test_a_deleted_database_file_refuses_every_commit_and_fails_ping(tmp_path):
    path = tmp_path / "o.db"
    store = SQLiteStore(str(path))
    put(store)
    store.ping()
    os.unlink(path)
    with pytest.raises(StoreUnavailable, match="deleted"):
        store.ping()
    with pytest.raises(StoreUnavailable, match="deleted"):
        put(store)  # not acknowledged: it would only live in an unlinked inode
    with pytest.raises(StoreUnavailable):
        store.check_file()
    store.close()


def test_a_replaced_database_file_is_detected(tmp_path):
    path = tmp_path / "o.db"
    store = SQLiteStore(str(path))
    put(store)
    os.rename(path, tmp_path / "aside.db")
    SQLiteStore(str(path)).close()  # another file at the same path
    with pytest.raises(StoreUnavailable, match="replaced"):
        put(store)
    with pytest.raises(StoreUnavailable, match="replaced"):
        store.ping()


def test_the_very_file_moved_away_and_back_is_accepted_again(tmp_path):
    path = tmp_path / "o.db"
    store = SQLiteStore(str(path))
    put(store)
    os.rename(path, tmp_path / "aside.db")
    with pytest.raises(StoreUnavailable, match="deleted"):
        put(store)
    os.rename(tmp_path / "aside.db", path)  # the file the connection opened
    store.ping()
    put(store)
    assert store.count_active() == 1 + 1


# -- files 0600 ------------------------------------------------------------------------------------
def test_the_database_its_wal_and_shm_are_created_owner_only(tmp_path):
    old = os.umask(0o022)  # a usual umask: without care the files would be 0644
    try:
        store = SQLiteStore(str(tmp_path / "o.db"))
        put(store)
        for name in ("o.db", "o.db-wal", "o.db-shm"):
            assert mode(tmp_path / name) == 0o600, name
        store.close()
    finally:
        os.umask(old)


def test_an_existing_world_readable_store_is_tightened_on_open(tmp_path):
    path = tmp_path / "o.db"
    put(SQLiteStore(str(path)))
    for name in ("o.db", "o.db-wal", "o.db-shm"):
        os.chmod(tmp_path / name, 0o644)
    SQLiteStore(str(path))
    for name in ("o.db", "o.db-wal", "o.db-shm"):
        assert mode(tmp_path / name) == 0o600, name


# -- the schema's version ---------------------------------------------------------------------------
def test_migrations_are_numbered_in_order_and_a_new_file_gets_the_last(tmp_path):
    numbers = [n for n, _, _ in MIGRATIONS]
    assert numbers == list(range(1, len(numbers) + 1))
    store = SQLiteStore(str(tmp_path / "o.db"))
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_unversioned_first_schema_file_is_migrated_and_keeps_its_rows(tmp_path):
    path = str(tmp_path / "o.db")
    db = sqlite3.connect(path, isolation_level=None)
    for stmt in split_statements(SCHEMA):  # what the first Orion wrote: no version, no counters
        db.execute(stmt)
    w = new_workload(spec(), "alice", 1.0)
    db.execute(
        "INSERT INTO workloads(workload_id, tenant_id, status, spec, state) VALUES (?,?,?,?,?)",
        (w.workload_id, "alice", "queued", w.spec.model_dump_json(), json.dumps({"submitted_at": 1.0})),
    )
    db.execute("INSERT INTO audit(at, who, action) VALUES (1, 'alice', 'submit')")
    db.close()
    store = SQLiteStore(path)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.count_active("alice") == 1 and store.count_queued(10) == 1
    assert store.get(w.workload_id).tenant_id == "alice"
    indexes = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"workloads_ended", "audit_at", "workloads_queue"} <= indexes


def test_a_file_from_a_newer_orion_is_refused_with_a_clear_error(tmp_path):
    path = str(tmp_path / "o.db")
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    for opening in (lambda: SQLiteStore(path), lambda: SQLiteStore(path, read_only=True)):
        with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade Orion"):
            opening()


# -- retention -------------------------------------------------------------------------------------
def ended(store: SQLiteStore, at: float, status: Status = Status.COMPLETED, logs: str = "out"):
    w = put(store, at=at)
    done = w.model_copy(update={"status": status, "finished_at": at, "updated_at": at})
    store.update(done, (status.value, at, "done"))
    store.set_logs(w.workload_id, logs)
    return w.workload_id


def test_retention_deletes_what_ended_long_ago_with_its_history_in_batches(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    now = 100 * DAY
    old = [
        ended(store, now - 40 * DAY, status) for status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
    ]
    logs_only = ended(store, now - 10 * DAY)
    recent = ended(store, now - DAY)
    queued_long = put(store, at=now - 400 * DAY).workload_id  # unfinished: never deleted
    store.audit("alice", "old", None, {}, now - 100 * DAY)
    store.audit("alice", "new", None, {}, now)
    keep = {"workloads": 30 * DAY, "logs": 7 * DAY, "audit": 90 * DAY, "scaling_events": 30 * DAY}

    first = store.prune(now=now, keep_s=keep, limit=2)
    assert first["workloads"] == 2  # a batch at most
    second = store.prune(now=now, keep_s=keep, limit=2)
    assert second["workloads"] == 1 and second["audit"] == 0
    for wid in old:
        assert store.get(wid) is None and store.history(wid) == [] and store.get_logs(wid) is None
    assert store.get(logs_only) is not None and store.get_logs(logs_only) is None
    assert store.history(logs_only)[-1]["status"] == "completed"
    assert store.get_logs(recent) == "out"
    assert store.get(queued_long).status == Status.QUEUED
    actions = [a["action"] for a in store.audit_log()]
    # "old" (100 days) and the long-queued one's submission (400 days) are past the 90 days
    assert "old" not in actions and actions.count("new") == 1 and actions.count("submit") == 5
    assert store.prune(now=now, keep_s={"workloads": 0}, limit=2) == {}  # 0: kept for ever


def test_retention_config_has_sensible_defaults_and_refuses_negative_windows():
    r = RetentionConfig()
    assert r.workloads_days == 30 and r.logs_days == 7 and r.audit_days == 90
    with pytest.raises(ValueError):
        RetentionConfig(workloads_days=-1)


# -- the scheduler over a store whose writes fail ------------------------------------------------
class FailingStore:
    """The real store, with its writes refused (as a locked or vanished store refuses them)
    while ``failing`` is set."""

    WRITES = {"update", "update_many", "set_logs", "audit", "put_setting", "set_waits", "submit", "prune"}

    def __init__(self, inner: SQLiteStore):
        self.inner = inner
        self.failing = False
        self.refused = 0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in self.WRITES:
            return attr

        def write(*args, **kwargs):
            if self.failing:
                self.refused += 1
                raise StoreUnavailable("the store is busy or unavailable (database is locked); retry")
            return attr(*args, **kwargs)

        return write


def make(tmp_path, clock, gpus: float = 4.0) -> tuple[Scheduler, FakeRuntime, FailingStore]:
    store = FailingStore(SQLiteStore(str(tmp_path / "o.db")))
    rt = FakeRuntime([fake_node("n1", gpus=gpus)])
    s = Scheduler(store, rt, SchedulerConfig(), PolicyConfig(), clock=clock, sleep=just_yield)
    return s, rt, store


@on_loop
async def test_a_failed_admission_write_leaves_the_workload_queued_and_the_next_pass_admits_it(tmp_path):
    clock = Clock()
    s, rt, store = make(tmp_path, clock)
    wid = (await s.submit(task(gpus=2)))["workload_id"]
    store.failing = True
    with pytest.raises(StoreUnavailable):
        s.run_cycle()
    w = s.active[wid]
    assert w.status == Status.QUEUED and wid not in s.reservations and wid not in rt.pgs  # not stuck
    assert store.inner.get(wid).status == Status.QUEUED
    store.failing = False
    assert s.run_cycle()["admitted"] == 1  # the step, retried
    await settle(lambda: s.active[wid].status == Status.RUNNING, "running")
    assert [h["status"] for h in store.inner.history(wid)] == ["submitted", "queued", "starting", "running"]


@on_loop
async def test_a_result_the_store_refused_is_written_once_it_accepts_again(tmp_path):
    clock = Clock()
    s, rt, store = make(tmp_path, clock)
    wid = (await s.submit(task(gpus=2)))["workload_id"]
    s.run_cycle()
    await settle(lambda: s.active[wid].status == Status.RUNNING, "running")
    store.failing = True
    rt.complete(wid, result=6, logs="six\n")
    await settle(lambda: store.refused >= 3, "the driver retrying")
    assert s.active[wid].status == Status.RUNNING  # memory as the store has it
    assert store.inner.get(wid).status == Status.RUNNING
    # the executor keeps the run (and its result) until the outcome is stored: a scheduler that
    # died here would adopt that result on restart, not run the task again
    assert ("forget_task", wid, 1) not in rt.calls
    store.failing = False
    await settle(lambda: wid not in s.active, "the completion written")
    await settle(lambda: ("forget_task", wid, 1) in rt.calls, "the run forgotten once stored")
    got = store.inner.get(wid)
    assert got.status == Status.COMPLETED and got.result == 6 and store.inner.get_logs(wid) == "six\n"


@on_loop
async def test_a_cancel_the_store_refuses_is_a_503_and_the_run_goes_on(tmp_path):
    clock = Clock()
    s, rt, store = make(tmp_path, clock)
    wid = (await s.submit(task(gpus=2)))["workload_id"]
    s.run_cycle()
    await settle(lambda: s.active[wid].status == Status.RUNNING, "running")
    store.failing = True
    with pytest.raises(StoreUnavailable) as got:
        await s.cancel(wid, who="alice")
    assert got.value.status_code == 503
    assert s.active[wid].status == Status.RUNNING and wid in s.driver.tasks and rt.live_runs()
    store.failing = False
    assert (await s.cancel(wid, who="alice"))["status"] == "cancelled"


@on_loop
async def test_health_reports_a_deleted_store_file_and_the_tick_notices_it(tmp_path):
    clock = Clock()
    store = SQLiteStore(str(tmp_path / "o.db"))
    s = Scheduler(store, FakeRuntime([fake_node("n1")]), clock=clock, sleep=just_yield)
    await s.start()
    await asyncio.sleep(0)
    assert (await s.health())["store"] == "ok"
    os.unlink(tmp_path / "o.db")
    s.housekeeping.tick()
    assert "deleted" in (s.housekeeping.fault or "")
    h = await s.health()
    assert h["store"] == "down" and "deleted" in h["store_error"]
    with pytest.raises(StoreUnavailable):
        await s.submit(task())
    assert not s.active  # nothing acknowledged, nothing taken in
    await s.stop()


@on_loop
async def test_the_loop_applies_retention_periodically_and_drains_a_backlog(tmp_path):
    clock = Clock(t=100 * DAY)
    store = SQLiteStore(str(tmp_path / "o.db"))
    for _ in range(5):
        ended(store, 10 * DAY)
    s = Scheduler(
        store,
        FakeRuntime([fake_node("n1")]),
        clock=clock,
        sleep=just_yield,
        retention=RetentionConfig(batch=2, interval_s=3600),
    )
    s.housekeeping.tick()
    assert s.housekeeping.pruned["workloads"] == 2 and s.housekeeping.more
    s.housekeeping.tick()  # a full batch: again at the next tick, not an interval later
    s.housekeeping.tick()
    assert s.housekeeping.pruned["workloads"] == 5 and not s.housekeeping.more
    assert store.list(limit=10) == []


# -- through the REST API ---------------------------------------------------------------------------
ADMIN = {"Authorization": "Bearer admin-key"}


@pytest.fixture(params=["scheduler", "store"])
def api(tmp_path, request):
    """The app with the scheduler answering every route, and as a Serve replica runs it (its
    own store access writes submissions), over one store file with short busy timeouts."""
    from fastapi.testclient import TestClient

    from orion_ray.api.app import build_app
    from orion_ray.api.auth import KeyRing, hash_key
    from orion_ray.api.store_access import StoreAccess

    path = str(tmp_path / "o.db")
    store = SQLiteStore(path, busy_timeout_ms=0)
    sched = Scheduler(store, runtime=FakeRuntime([fake_node("n1")]), sleep=just_yield)
    access = None
    if request.param == "store":
        access = StoreAccess(path, max_queue_size=100, busy_timeout_ms=0, read_busy_timeout_ms=0)
    with TestClient(build_app(KeyRing([hash_key("admin-key")]), backend=sched, access=access)) as c:
        yield c, path
    if access is not None:
        access.close()
    store.close()


def assert_503(r):
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "store_unavailable" and int(r.headers["Retry-After"]) >= 1


def test_a_locked_store_is_a_503_with_retry_after_on_submit_and_cancel(api):
    c, path = api
    wid = c.post("/api/v1/workloads", json=task(gpus=0), headers=ADMIN).json()["workload_id"]
    with write_lock(path):
        assert_503(c.post("/api/v1/workloads", json=task(gpus=0), headers=ADMIN))
        assert_503(c.delete(f"/api/v1/workloads/{wid}", headers=ADMIN))
    assert c.delete(f"/api/v1/workloads/{wid}", headers=ADMIN).json()["status"] == "cancelled"
    assert c.get("/api/v1/workloads", headers=ADMIN).json()["items"][0]["workload_id"] == wid  # nothing else


def test_a_deleted_store_file_fails_health_and_refuses_submissions(api):
    c, path = api
    assert c.post("/api/v1/workloads", json=task(gpus=0), headers=ADMIN).status_code == 202
    os.unlink(path)
    assert_503(c.post("/api/v1/workloads", json=task(gpus=0), headers=ADMIN))
    r = c.get("/health")
    assert r.status_code == 503 and r.json()["store"] == "down" and "deleted" in r.json()["store_error"]


def test_what_orion_writes_in_its_home_is_owner_only(tmp_path, monkeypatch):
    from orion_ray import cluster
    from orion_ray.store.files import open_private

    home = tmp_path / "home"
    monkeypatch.setenv("ORION_HOME", str(home))
    old = os.umask(0o022)
    try:
        cluster._write_state({"pid": 1})  # cluster.json
        with open_private(home / "ray-head.log") as f:  # how `orion up` opens the head's log
            f.write(b"x")
        (home / "loose.log").write_text("x")
        os.chmod(home / "loose.log", 0o644)
        with open_private(home / "loose.log") as f:  # an existing loose file is tightened
            f.write(b"y")
    finally:
        os.umask(old)
    assert mode(home) == 0o700
    for name in ("cluster.json", "ray-head.log", "loose.log"):
        assert mode(home / name) == 0o600, name
    assert json.loads((home / "cluster.json").read_text()) == {"pid": 1}


def test_store_unavailable_crosses_the_actor_boundary_with_its_retry_after():
    import pickle

    from orion_ray.errors import ERRORS_BY_CODE

    got = pickle.loads(pickle.dumps(StoreUnavailable("the file was deleted", retry_after=30)))
    assert (
        isinstance(got, StoreUnavailable) and got.retry_after == 30 and got.message == "the file was deleted"
    )
    assert ERRORS_BY_CODE["store_unavailable"] is StoreUnavailable  # the SDK raises the same class


@on_loop
async def test_a_preemption_the_store_refuses_leaves_the_victim_running_and_is_decided_again(tmp_path):
    clock = Clock()
    s, rt, store = make(tmp_path, clock, gpus=4)
    low = (await s.submit(task(priority="low")))["workload_id"]
    s.run_cycle()
    await settle(lambda: s.active[low].status == Status.RUNNING, "the victim running")
    clock.advance(60)
    high = (await s.submit(task(priority="high")))["workload_id"]
    store.failing = True
    s.run_cycle()  # the loop goes on
    assert s.active[low].status == Status.RUNNING and low in s.driver.tasks and low not in s.book.stopping
    assert s.active[high].status == Status.QUEUED
    store.failing = False
    clock.advance(5)
    assert s.run_cycle()["preempted"] == 1  # decided again, now stored
    assert s.active[low].status == Status.PREEMPTED
    await settle(lambda: s.active[low].status == Status.QUEUED, "the victim back in the queue")


def test_the_check_orion_up_makes_first_refuses_a_newer_store_and_passes_others(tmp_path):
    from orion_ray.store.schema import check_file

    path = str(tmp_path / "o.db")
    check_file(path)  # no file yet: nothing to refuse
    SQLiteStore(path).close()
    check_file(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="upgrade Orion"):
        check_file(path)
