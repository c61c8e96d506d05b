"""The lease in SQLite (``store/lease.py``) and the fence: a write carrying an older token is
refused inside its own transaction, leaving nothing behind; then two schedulers on one store,
where the one that lost the lease is refused and stops acting."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from orion_ray.errors import LeaseLost, StoreUnavailable
from orion_ray.metrics import OrionMetrics
from orion_ray.models import Workload, WorkloadSpec
from orion_ray.runtime.fake import FakeRuntime, fake_node
from orion_ray.scheduler import Scheduler
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from orion_ray.store import lease as stored
from orion_ray.store.schema import SCHEMA_VERSION
from tests.unit.test_scheduler_run import Clock, just_yield, on_loop, settle, task

TTL = 15.0


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "orion.db")


def workload(wid: str = "wl-1") -> Workload:
    spec = WorkloadSpec.model_validate({"workload_type": "task", "function": "math:factorial", "args": [3]})
    return Workload(workload_id=wid, tenant_id="t", spec=spec, status=Status.QUEUED, submitted_at=1.0)


# -- the table ------------------------------------------------------------------------------------
def test_migration_9_creates_the_leases_table_and_a_version_8_file_gets_it(path):
    s = SQLiteStore(path)
    assert SCHEMA_VERSION >= 9
    s._db.execute("DROP TABLE leases")
    s._db.execute("PRAGMA user_version=8")
    s.close()
    s = SQLiteStore(path)
    assert stored.read(s) is None
    assert stored.try_acquire(s, holder="a", now=0.0, ttl_s=TTL).lease.token == 1
    assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_acquire_renew_and_release_round_trip(path):
    s = SQLiteStore(path)
    g = stored.try_acquire(s, holder="a", now=100.0, ttl_s=TTL)
    assert g.granted and stored.read(s) == g.lease
    assert not stored.try_acquire(s, holder="b", now=101.0, ttl_s=TTL).granted
    assert stored.try_renew(s, holder="a", token=1, now=110.0, ttl_s=TTL).expires_at == 125.0
    assert stored.read(s).expires_at == 125.0
    assert stored.release(s, holder="b") is False  # not b's to end
    assert stored.release(s) is True
    g2 = stored.try_acquire(s, holder="b", now=111.0, ttl_s=TTL)
    assert g2.granted and g2.lease.token == 2  # the token survives a release
    assert stored.try_renew(s, holder="a", token=1, now=112.0, ttl_s=TTL) is None


def test_release_file_on_a_missing_file_is_a_no_op(tmp_path):
    assert stored.release_file(str(tmp_path / "none.db")) is False


def test_two_processes_asking_at_once_get_one_lease(path):
    # two connections (as two schedulers would have), racing from threads: exactly one wins
    stores = [SQLiteStore(path, busy_timeout_ms=5000) for _ in range(2)]
    wins: list[bool] = []

    def ask(i: int) -> None:
        wins.append(stored.try_acquire(stores[i], holder=f"h{i}", now=100.0, ttl_s=TTL).granted)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False, True] and stored.read(stores[0]).token == 1


# -- the fence ------------------------------------------------------------------------------------
def test_a_fenced_write_is_refused_and_leaves_nothing(path):
    old, new = SQLiteStore(path), SQLiteStore(path)
    stored.try_acquire(old, holder="a", now=100.0, ttl_s=TTL)
    old.fence = stored.Fence(1)
    w = workload()
    old.insert(w, [("submitted", 100.0, "")])  # token 1 is current: accepted
    # b takes over after a's lease ran out; a does not know yet
    assert stored.try_acquire(new, holder="b", now=200.0, ttl_s=TTL).lease.token == 2
    w.status = Status.STARTING
    with pytest.raises(LeaseLost) as err:
        old.update(w, ("starting", 201.0, "admitted"))
    assert isinstance(err.value, StoreUnavailable) and err.value.status_code == 503
    assert "token 2" in err.value.message and old.fence.refused == 1
    assert new.get(w.workload_id).status == Status.QUEUED  # the row as it was
    assert [h["status"] for h in new.history(w.workload_id)] == ["submitted"]
    for write in (lambda: old.put_setting("x", 1), lambda: old.set_logs(w.workload_id, "x")):
        with pytest.raises(LeaseLost):
            write()
    assert new.get_setting("x") is None and new.get_logs(w.workload_id) is None
    # reads are not fenced, and the old store's connection is usable (no transaction left open)
    assert old.get(w.workload_id).status == Status.QUEUED
    old.fence = None
    old.put_setting("y", 1)
    assert new.get_setting("y") == 1


def test_the_current_token_and_an_unfenced_store_write_freely(path):
    sched, api = SQLiteStore(path), SQLiteStore(path)
    stored.try_acquire(sched, holder="a", now=100.0, ttl_s=TTL)
    stored.try_acquire(sched, holder="a", now=101.0, ttl_s=TTL)  # a restart: token 2
    sched.fence = stored.Fence(2)
    sched.put_setting("k", 1)
    api.insert(workload("wl-api"), [("submitted", 1.0, "")])  # the API's writes carry no token
    assert api.get("wl-api") is not None and sched.fence.refused == 0


def test_the_token_is_read_under_the_write_lock(path):
    # a takeover cannot slip between the check and the commit: while a write transaction is
    # open, another connection cannot write the lease (BEGIN IMMEDIATE holds the lock)
    s, other = SQLiteStore(path), SQLiteStore(path, busy_timeout_ms=0)
    stored.try_acquire(s, holder="a", now=100.0, ttl_s=TTL)
    s.fence = stored.Fence(1)
    with s._lock, s._tx():
        with pytest.raises((StoreUnavailable, sqlite3.OperationalError)):
            stored.try_acquire(other, holder="b", now=500.0, ttl_s=TTL)
    assert stored.read(other).holder == "a"


# -- two schedulers on one store ------------------------------------------------------------------
def scheduler(path: str, rt: FakeRuntime, clock: Clock, holder: str, **kw) -> Scheduler:
    return Scheduler(
        SQLiteStore(path),
        rt,
        clock=clock,
        sleep=just_yield,
        metrics=OrionMetrics(ray_mirror=False),
        lease_holder=holder,
        lease_ttl_s=TTL,
        **kw,
    )


def metric(s: Scheduler, name: str) -> float:
    return s.metrics.registry.get_sample_value(name) or 0.0


@on_loop
async def test_the_older_scheduler_is_refused_once_a_newer_one_took_over(path):
    clock, rt = Clock(), FakeRuntime([fake_node("n1")])
    a = scheduler(path, rt, clock, "a")
    assert await a.lease.acquire() == 1  # a acts, then stalls (its loop is not running)
    first = (await a.submit(task(gpus=1)))["workload_id"]

    b = scheduler(path, rt, clock, "b")
    starting = asyncio.create_task(b.start())
    await settle(lambda: b.lease.waiting_for is not None, "b waiting for a's lease")
    assert "held by a" in b.lease.report()["waiting_for"] and b.started_at is None
    clock.advance(TTL + 1)  # a did not renew: its lease runs out
    await starting
    assert b.lease.token == 2 and b.started_at is not None and first in b.active
    assert metric(b, "orion_scheduler_lease_held") == 1 and metric(b, "orion_scheduler_lease_token") == 2

    # a wakes up and tries to act: its cycle's writes are refused, nothing of it is stored
    with pytest.raises(LeaseLost):
        a.run_cycle()
    with pytest.raises(LeaseLost):
        await a.submit(task(gpus=1))
    assert b.store.get(first).status == Status.QUEUED and rt.pgs == {}
    assert a.lease.tick() is False  # it knows at its next tick, renewal due or not
    assert metric(a, "orion_scheduler_lease_held") == 0 and metric(a, "orion_scheduler_lease_lost_total") == 1
    assert a.lease.report()["held"] is False and a.lease.report()["lost_at"] == clock()

    # b goes on: it admits the workload a could not
    assert b.run_cycle()["admitted"] == 1
    assert b.store.get(first).status == Status.STARTING
    await b.stop()


@on_loop
async def test_a_scheduler_whose_lease_was_taken_stops_its_loop_and_says_so(path):
    clock, rt = Clock(), FakeRuntime([fake_node("n1")])
    lost: list[str] = []
    a = scheduler(path, rt, clock, "a", on_lease_lost=lambda: lost.append("a"))
    await a.start()
    assert a.lease.token == 1 and not a._loop_task.done()
    other = SQLiteStore(path)
    stored.try_acquire(other, holder="b", now=clock() + TTL + 1, ttl_s=TTL)  # a takeover
    clock.advance(TTL / 3)  # a's renewal is due: it finds token 2
    for _ in range(200):
        a.wake()
        if a._loop_task.done():
            break
        await asyncio.sleep(0.01)
    assert a._loop_task.done() and lost == ["a"]
    assert (await a.health())["scheduler"] == "down"
    assert (await a.health())["lease"]["held"] is False
    await a.stop()


@on_loop
async def test_a_restarted_scheduler_with_the_same_holder_takes_over_at_once(path):
    clock, rt = Clock(), FakeRuntime([fake_node("n1")])
    a = scheduler(path, rt, clock, "actor:x")
    await a.start()
    wid = (await a.submit(task(gpus=64)))["workload_id"]  # queued: no driver shared by the two
    again = scheduler(path, rt, clock, "actor:x")  # Ray restarted the actor: same id, no wait
    await again.start()
    assert again.lease.token == 2 and wid in again.active
    with pytest.raises(LeaseLost):  # the old incarnation, were it still running, is fenced
        a.store.put_setting("x", 1)
    await a.stop()
    await again.stop()
