"""A submission is one transaction written where it arrives; the scheduler takes rows by seq.

A crash at every step of a submission loses nothing: before the commit (nothing is stored, nothing
was acknowledged, a retry with the same request_id makes exactly one), after the commit before the
notification (the scheduler's next tick takes and runs it), during the intake (no duplicate).
Crashes before the commit are real: a child process dies inside the transaction.
"""

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest

from orion_ray.errors import Conflict, QueueFull
from orion_ray.models import WorkloadSpec
from orion_ray.runtime.fake import FakeRuntime, fake_node
from orion_ray.scheduler import Scheduler
from orion_ray.scheduler.ingest import new_workload
from orion_ray.scheduler.recovery import recover
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from tests.pg_server import pg_server, sqlite_only, store_backend  # noqa: F401 (each test on both backends)

pytestmark = pytest.mark.usefixtures("store_backend")

TASK = {"workload_type": "task", "function": "math:factorial", "resources": {"cpu": 1}}


def spec(**fields):
    return WorkloadSpec.model_validate({**TASK, **fields})


def write(store, tenant="default", who="t", max_queue_size=100, tenant_limit=None, **fields):
    """What an API replica does: one transaction, no scheduler involved."""
    return store.submit(
        new_workload(spec(**fields), tenant, time.time()),
        who=who,
        max_queue_size=max_queue_size,
        tenant_limit=tenant_limit,
    )


def counts(path):
    store = SQLiteStore(path, read_only=True)
    try:
        q = store._query  # a plain read of every table a submission writes
        return {
            "workloads": q("SELECT COUNT(*) FROM workloads", ())[0][0],
            "transitions": q("SELECT COUNT(*) FROM transitions", ())[0][0],
            "audit": q("SELECT COUNT(*) FROM audit", ())[0][0],
            "active": store.count_active(),
        }
    finally:
        store.close()


class TickRuntime(FakeRuntime):
    """The in-memory runtime over fixed CPU nodes, where every task succeeds as it starts."""

    def __init__(self, n_nodes=1):
        super().__init__([fake_node(f"n{i}", gpus=0, cpus=4) for i in range(n_nodes)])
        self.started: list[str] = []

    async def start_task(self, workload_id, attempt, **launch):
        key = await super().start_task(workload_id, attempt, **launch)
        self.started.append(workload_id)
        self.complete(workload_id, result=120)
        return key


async def until(cond, what, limit_s=20.0):
    """Wait for ``cond()`` (a failure guard only: nothing here asserts how long it takes)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.01)


# -- the transaction ------------------------------------------------------------------------------
def test_one_transaction_writes_row_transitions_and_audit(tmp_path):
    path = str(tmp_path / "o.db")
    store = SQLiteStore(path)
    w, created = write(store, who="alice", priority="high")
    assert created and w.seq >= 1
    assert counts(path) == {"workloads": 1, "transitions": 2, "audit": 1, "active": 1}
    assert [h["status"] for h in store.history(w.workload_id)] == ["submitted", "queued"]
    entry = store.audit_log(1)[0]
    assert (entry["who"], entry["action"], entry["target"]) == ("alice", "submit", w.workload_id)
    assert store.get(w.workload_id).status == Status.QUEUED


def test_request_id_is_idempotent_and_a_changed_spec_conflicts(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    first, _ = write(store, metadata={"request_id": "r1"})
    again, created = write(store, metadata={"request_id": "r1"})
    assert not created and again.workload_id == first.workload_id
    with pytest.raises(Conflict):
        write(store, priority="high", metadata={"request_id": "r1"})
    other, created = write(store, tenant="acme", metadata={"request_id": "r1"})
    assert created and other.workload_id != first.workload_id
    assert store.count_active() == 2


def test_queue_limits_count_unfinished_workloads_through_every_writer(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    a, _ = write(store, max_queue_size=2)
    write(store, tenant="acme", max_queue_size=2)
    with pytest.raises(QueueFull):
        write(store, max_queue_size=2)
    with pytest.raises(QueueFull):
        write(store, tenant="acme", tenant_limit=1)
    # the scheduler finishing a workload (its own write) frees the slot: a trigger counts it
    a.status = Status.CANCELLED
    store.update(a, ("cancelled", time.time(), "test"))
    assert store.count_active() == 1 and store.count_active("default") == 0
    assert write(store, max_queue_size=2)[1]


@pytest.mark.usefixtures("sqlite_only")
def test_an_old_store_file_is_migrated_with_ranks_and_counts(tmp_path):
    import sqlite3

    path = str(tmp_path / "old.db")
    store = SQLiteStore(path)
    for prio in ("low", "critical"):
        write(store, priority=prio)
    store.close()
    db = sqlite3.connect(path)  # as an older Orion left it: no ranks, no counts, version 0
    db.execute("UPDATE workloads SET rank=NULL")
    db.execute("DELETE FROM active_counts")
    db.execute("PRAGMA user_version=0")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert store.count_active() == 2
    assert sorted(r[0] for r in store._query("SELECT rank FROM workloads", ())) == [0, 3]


# -- a crash before the commit --------------------------------------------------------------------
CRASH_CHILD = textwrap.dedent("""
    import os, sys, time
    from orion_ray.models import WorkloadSpec
    from orion_ray.scheduler.ingest import new_workload
    from orion_ray.store import SQLiteStore
    path, step = sys.argv[1], sys.argv[2]
    store = SQLiteStore(path)
    # die inside the open transaction: after the row, or after the audit row (the last write)
    store._db.create_function("crash", 0, lambda: os._exit(3))
    table = {"row": "workloads", "audit": "audit"}[step]
    store._db.execute(f"CREATE TEMP TRIGGER die AFTER INSERT ON {table} BEGIN SELECT crash(); END")
    spec = WorkloadSpec.model_validate({"workload_type": "task", "function": "math:factorial",
                                        "metadata": {"request_id": "req-crash"}})
    store.submit(new_workload(spec, "default", time.time()), who="t", max_queue_size=100)
    print("acknowledged")
""")


@pytest.mark.parametrize("step", ["row", "audit"])
@pytest.mark.usefixtures("sqlite_only")
def test_crash_before_commit_stores_nothing_and_a_retry_makes_exactly_one(tmp_path, step):
    path = str(tmp_path / "o.db")
    SQLiteStore(path).close()
    out = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, path, step], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 3 and "acknowledged" not in out.stdout, out.stderr[-2000:]
    assert counts(path) == {"workloads": 0, "transitions": 0, "audit": 0, "active": 0}
    store = SQLiteStore(path)  # the client retries with the same request_id
    for _ in range(2):
        write(store, metadata={"request_id": "req-crash"})
    assert counts(path) == {"workloads": 1, "transitions": 2, "audit": 1, "active": 1}


def test_a_check_failing_inside_the_transaction_rolls_everything_back(tmp_path):
    path = str(tmp_path / "o.db")
    store = SQLiteStore(path)

    def refuse(w):
        raise QueueFull("no")

    with pytest.raises(QueueFull):
        store.submit(new_workload(spec(), "default", time.time()), who="t", max_queue_size=10, check=refuse)
    assert counts(path) == {"workloads": 0, "transitions": 0, "audit": 0, "active": 0}


# -- a crash after the commit, before the notification ------------------------------------------
def test_committed_but_never_notified_runs_on_the_next_tick(tmp_path):
    async def main():
        store = SQLiteStore(str(tmp_path / "o.db"))
        rt = TickRuntime()
        s = Scheduler(store, rt)
        await s.start()
        try:
            w, _ = write(store)  # the replica died before telling the scheduler
            await until(
                lambda: store.get(w.workload_id).status == Status.COMPLETED,
                "the written workload ran to completion",
            )
            assert rt.started == [w.workload_id]
            assert store.count_runs(w.workload_id) == 1
        finally:
            await s.stop()
            store.close()

    asyncio.run(main())


# -- a crash during the intake --------------------------------------------------------------------
def test_pull_is_idempotent_and_takes_rows_in_seq_order(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    s = Scheduler(store, runtime=FakeRuntime())
    ids = [write(store)[0].workload_id for _ in range(3)]
    assert s.ingest.pull() == 3 and s.ingest.pull() == 0
    assert list(s.active) == ids
    assert s.ingest.last_seq == store.max_seq()


class FailingTail:
    """The scheduler's store, whose intake read fails ``fail`` times (then works)."""

    def __init__(self, store, fail):
        self._store, self.fail = store, fail

    def __getattr__(self, name):
        return getattr(self._store, name)

    def after_seq(self, seq, limit=1000):
        rows = self._store.after_seq(seq, limit)
        if self.fail:
            self.fail -= 1
            raise OSError("disk I/O error")
        return rows


def test_a_failed_pull_loses_nothing_and_the_next_one_takes_everything(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    s = Scheduler(FailingTail(store, fail=1), runtime=FakeRuntime())
    ids = [write(store)[0].workload_id for _ in range(2)]
    with pytest.raises(OSError):
        s.ingest.pull()
    assert s.ingest.pull() == 2 and list(s.active) == ids


def test_scheduler_crash_mid_intake_then_recovery_takes_each_row_once(tmp_path):
    async def main():
        store = SQLiteStore(str(tmp_path / "o.db"))
        before = [write(store)[0].workload_id for _ in range(2)]
        first = Scheduler(store, TickRuntime(0))
        first.ingest.pull()  # in memory only, then the process dies (nothing more written)
        del first
        again = Scheduler(store, TickRuntime(0))  # the restarted actor
        late = write(store)[0].workload_id  # written after it was built, before its recovery
        await recover(
            store=again.store,
            runtime=again.runtime,
            book=again.book,
            driver=again.driver,
            observe=again.observe,
            clock=again.clock,
        )
        assert again.ingest.pull() == 0  # recovery loaded it; the tail does not copy it
        assert list(again.active) == before + [late]
        assert store.count_active() == 3
        store.close()

    asyncio.run(main())


def test_scheduler_submit_goes_through_the_same_transaction(tmp_path):
    async def main():
        store = SQLiteStore(str(tmp_path / "o.db"))
        s = Scheduler(store, runtime=FakeRuntime())
        ack = await s.submit({**TASK, "metadata": {"request_id": "x"}}, "default", "bob")
        again = await s.submit({**TASK, "metadata": {"request_id": "x"}}, "default", "bob")
        assert again["workload_id"] == ack["workload_id"] and ack["queue_position"] == 1
        assert counts(str(tmp_path / "o.db"))["audit"] == 1
        assert s.ingest.pull() == 0 and list(s.active) == [ack["workload_id"]]
        store.close()

    asyncio.run(main())
