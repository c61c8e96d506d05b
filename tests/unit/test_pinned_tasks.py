"""``scheduler.pin_single_bundle_tasks``: a single-bundle task runs pinned to the node the cycle
chose, without a placement group of its own, over the in-memory ``FakeRuntime`` tick by tick (the
style of ``test_scheduler_run``: no Ray, no sleeps). Gangs, shared GPUs and jobs keep their group;
a restarted scheduler adopts a launched pinned run from its stored placement and requeues one never
launched, and no attempt runs twice."""

from __future__ import annotations

import asyncio

import pytest

from orion_ray.config import PolicyConfig, SchedulerConfig
from orion_ray.runtime.executor import tenant_env
from orion_ray.runtime.fake import FakePinned, FakeRuntime, fake_node
from orion_ray.runtime.ray_runtime import Pinned, RayRuntime
from orion_ray.scheduler import Scheduler, driver
from orion_ray.scheduler.recovery import recover
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

from .test_scheduler_run import (
    _STORES,
    BASE_S,
    Clock,
    admits_one,
    history,
    just_yield,
    on_loop,
    running,
    settle,
    status,
    submit,
    task,
)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def db(tmp_path):
    yield str(tmp_path / "orion.db")
    while _STORES:
        _STORES.pop().close()


def make(db: str, rt: FakeRuntime, clock: Clock, *, pin: bool = True) -> Scheduler:
    """A scheduler with the setting on (a second one over the same ``db`` is a restart)."""
    _STORES.append(SQLiteStore(db))
    return Scheduler(
        _STORES[-1],
        rt,
        SchedulerConfig(retry_backoff_base_s=BASE_S, pin_single_bundle_tasks=pin),
        PolicyConfig(),
        clock=clock,
        sleep=just_yield,
    )


async def restart(db: str, rt: FakeRuntime, clock: Clock) -> tuple[Scheduler, dict]:
    s = make(db, rt, clock)
    counts = await recover(
        store=s.store, runtime=rt, book=s.book, driver=s.driver, observe=s.observe, clock=clock
    )
    return s, counts


def calls_for(rt: FakeRuntime, wid: str) -> list[str]:
    return [c[0] for c in rt.calls if c[1] == wid]


# -- a pinned run ---------------------------------------------------------------------------------
@on_loop
async def test_a_pinned_task_runs_on_the_chosen_node_without_a_group(db, clock):
    rt = FakeRuntime([fake_node("n1", gpus=0), fake_node("n2", gpus=0)])
    s = make(db, rt, clock)
    wid = (await s.submit(task(gpus=0), tenant_id="team-a"))["workload_id"]
    assert s.run_cycle()["admitted"] == 1
    node = s.reservations[wid][0].node_id
    w = s.active[wid]
    assert w.status == Status.STARTING and w.placement[0]["node_id"] == node  # recorded at once
    assert wid not in rt.pgs and rt.pinned[wid] == FakePinned(wid, node, {"CPU": 1.0})
    await running(s, rt, wid)
    launch = rt.run_of(wid).launch
    assert launch["node_id"] == node and launch["tenant_id"] == "team-a"
    assert launch["bundle"] == {"CPU": 1.0}
    assert s.active[wid].worker_id == node

    rt.complete(wid, result=120)
    await settle(lambda: status(s, wid) == Status.COMPLETED, "completion")
    assert (await s.get(wid))["result"] == 120
    assert wid not in s.reservations and wid not in rt.pinned and not rt.pgs
    assert "create_pg" not in calls_for(rt, wid) and calls_for(rt, wid)[:2] == ["pin", "start_task"]
    assert history(s, wid) == ["submitted", "queued", "starting", "running", "completed"]


@on_loop
async def test_a_full_cluster_turns_pinned_tasks_over_each_on_its_held_capacity(db, clock):
    """Orion's account is unchanged: a pinned task holds its bundle until it ends, so a second one
    waits for the only CPU and runs once the first gives it back."""
    rt = FakeRuntime([fake_node("n1", gpus=0, cpus=1)])
    s = make(db, rt, clock)
    first = await submit(s, task(gpus=0))
    second = await submit(s, task(gpus=0))
    assert s.run_cycle()["admitted"] == 1
    await running(s, rt, first)
    s.run_cycle()  # nothing new: no pass (the last cycle's answer comes back)
    assert status(s, second) == Status.QUEUED
    rt.complete(first, result=1)
    await settle(lambda: status(s, first) == Status.COMPLETED, "the first completed")
    assert s.run_cycle()["admitted"] == 1
    await running(s, rt, second)
    assert rt.live_runs() == [f"{second}:1"]


@on_loop
async def test_a_stale_snapshot_does_not_hold_back_what_a_pinned_task_gave_back(db, clock):
    """Ray frees a pinned task's CPU when it ends, but the node snapshot (refreshed about once a
    second) may still show it used: within the grace period that is not work outside Orion."""
    rt = FakeRuntime([fake_node("n1", gpus=0, cpus=1)])
    s = make(db, rt, clock)
    first = await submit(s, task(gpus=0))
    s.run_cycle()
    await running(s, rt, first)
    rt.alive["n1"].available = {"CPU": 0.0, "memory": 64e9}  # the snapshot: the task's CPU in use
    second = await submit(s, task(gpus=0))
    assert s.run_cycle()["admitted"] == 0  # Orion holds the CPU itself
    rt.complete(first, result=1)
    await settle(lambda: status(s, first) == Status.COMPLETED, "the first completed")
    assert s.run_cycle()["admitted"] == 1  # the snapshot is older than the release
    await running(s, rt, second)
    rt.complete(second, result=2)
    await settle(lambda: status(s, second) == Status.COMPLETED, "the second completed")

    clock.advance(driver.RELEASED_GRACE_S + 1)  # a snapshot this old would have been read again:
    third = await submit(s, task(gpus=0))  # the CPU it still shows used is someone else's
    assert s.run_cycle()["admitted"] == 0 and status(s, third) == Status.QUEUED
    rt.alive["n1"].available = {"CPU": 1.0, "memory": 64e9}
    assert s.run_cycle()["admitted"] == 1


@on_loop
async def test_gangs_shared_gpus_jobs_and_the_setting_off_keep_their_group(db, clock):
    rt = FakeRuntime([fake_node("n1", gpus=4, cpus=16)])
    s = make(db, rt, clock)
    whole_gpu = await submit(s, task(gpus=1))
    shared_gpu = await submit(s, task(gpus=0.5))
    gang = await submit(
        s, {**task(gpus=0), "resources": None, "bundles": [{"cpu": 1}, {"cpu": 1}], "placement": "pack"}
    )
    job = await submit(s, {"workload_type": "job", "entrypoint": "true", "resources": {"cpu": 1}})
    assert s.run_cycle()["admitted"] == 4
    assert set(rt.pinned) == {whole_gpu}
    assert {shared_gpu, gang, job} <= set(rt.pgs)

    rt2 = FakeRuntime([fake_node("n1", gpus=0)])
    off = make(str(db) + ".off", rt2, clock, pin=False)
    wid = await submit(off, task(gpus=0))
    off.run_cycle()
    assert wid in rt2.pgs and not rt2.pinned


@on_loop
async def test_cancel_and_preemption_stop_a_pinned_run_no_group_ends_it(db, clock):
    rt = FakeRuntime([fake_node("n1", gpus=1, cpus=1)])
    s = make(db, rt, clock)
    wid = await submit(s, task(gpus=1))
    s.run_cycle()
    await running(s, rt, wid)
    assert (await s.cancel(wid))["status"] == "cancelled"
    assert ("cancel_task", wid, 1) in rt.calls and rt.live_runs() == [] and wid not in rt.pinned

    low = await submit(s, task(gpus=1, priority="low"))
    s.run_cycle()
    await running(s, rt, low)
    clock.advance(60)
    high = await submit(s, task(gpus=1, priority="high"))
    assert s.run_cycle()["preempted"] == 1
    await settle(lambda: status(s, low) == Status.QUEUED, "the victim requeued")
    assert ("stop_task", low, 1) in rt.calls and rt.live_runs() == []
    await admits_one(s, "the preemptor")
    await running(s, rt, high)


@on_loop
async def test_a_pinned_run_on_a_lost_node_runs_again_once_elsewhere(db, clock):
    rt = FakeRuntime([fake_node("n1", gpus=0), fake_node("n2", gpus=0)])
    s = make(db, rt, clock)
    wid = await submit(s, task(gpus=0))
    s.run_cycle()
    await running(s, rt, wid)
    where = s.reservations[wid][0].node_id
    assert rt.lose_node(where) == [wid]  # Ray ends a run whose node died
    await settle(lambda: status(s, wid) == Status.QUEUED, "requeued")
    assert s.active[wid].attempt == 2 and s.active[wid].not_before == clock()
    assert s.run_cycle()["admitted"] == 1
    await running(s, rt, wid)
    assert s.reservations[wid][0].node_id != where and rt.live_runs() == [f"{wid}:2"]


# -- recovery -------------------------------------------------------------------------------------
@on_loop
async def test_recovery_adopts_launched_pinned_runs_and_requeues_one_never_launched(db, clock):
    rt = FakeRuntime([fake_node("n1", gpus=0, cpus=4)])
    first = make(db, rt, clock)
    alive = await submit(first, task(gpus=0))
    first.run_cycle()
    await running(first, rt, alive)
    record = first.active[alive].placement
    # two more reserved in one cycle, stopped before their drivers ran: STARTING in the store
    in_flight = await submit(first, task(gpus=0))  # its launch reached the executor anyway
    never = await submit(first, task(gpus=0))  # never launched
    assert first.run_cycle()["admitted"] == 2
    await first.stop()
    assert first.store.get(in_flight).status == Status.STARTING
    await rt.start_task(
        in_flight,
        1,
        function="math:factorial",
        args=[5],
        kwargs={},
        bundle={"CPU": 1.0},
        runtime_env=None,
        max_result_bytes=1024,
        max_log_bytes=1024,
    )
    rt.pinned.clear()  # a new runtime (the scheduler restarted) knows no reservation

    clock.advance(5)
    second, counts = await restart(db, rt, clock)
    assert counts == {"queued": 0, "adopted": 2, "relaunched": 0, "requeued": 1, "orphans_removed": 0}
    for wid in (alive, in_flight):
        w = second.active[wid]
        assert w.status == Status.RUNNING and wid in second.driver.tasks and wid in rt.pinned
        assert second.reservations[wid][0].node_id == "n1" == w.placement[0]["node_id"]
    assert second.active[alive].placement == record
    w = second.active[never]
    assert w.status == Status.QUEUED and w.attempt == 1 and never not in rt.pinned
    assert not rt.pgs and sorted(rt.live_runs()) == sorted([f"{alive}:1", f"{in_flight}:1"])

    rt.complete(alive, result="adopted")
    await settle(lambda: status(second, alive) == Status.COMPLETED, "the adopted run completed")
    assert (await second.get(alive))["result"] == "adopted" and alive not in rt.pinned
    clock.advance(BASE_S)
    assert second.run_cycle()["admitted"] == 1
    await running(second, rt, never)  # FakeRuntime refuses a second live run of one workload
    assert [k for k in rt.runs if k.startswith(never)] == [f"{never}:1"]


@on_loop
async def test_recovery_requeues_a_lost_pinned_run_and_cancels_a_queued_ones_stray_run(db, clock):
    rt = FakeRuntime([fake_node("n1", gpus=0, cpus=4)])
    first = make(db, rt, clock)
    lost = await submit(first, task(gpus=0))
    first.run_cycle()
    await running(first, rt, lost)
    stray = await submit(
        first,
        task(gpus=0),
    )
    await first.stop()
    rt.lose(lost)  # the executor died with its runs
    rt.pinned.clear()  # a new runtime (the scheduler restarted) knows no reservation
    # a queued workload whose attempt runs anyway (a launch that outlived a requeue)
    await rt.start_task(
        stray,
        1,
        function="math:factorial",
        args=[5],
        kwargs={},
        bundle={"CPU": 1.0},
        runtime_env=None,
        max_result_bytes=1024,
        max_log_bytes=1024,
    )
    second, counts = await restart(db, rt, clock)
    assert counts["requeued"] == 1 and counts["queued"] == 1
    assert second.active[lost].status == Status.QUEUED and second.active[lost].attempt == 2
    assert ("cancel_task", stray, 1) in rt.calls and rt.live_runs() == []
    assert not rt.pinned and lost not in second.reservations


# -- the adapter's pieces -------------------------------------------------------------------------
def test_the_ray_adapter_pins_without_any_gcs_call():
    rt = RayRuntime()  # no Ray needed: a pinned reservation never reaches the GCS
    rt._gcs.shutdown()
    rt._reads.shutdown()
    rt._gcs = rt._reads = None  # any GCS call would fail on these
    handle = rt.create_pg("wl-1", [{"CPU": 1.0}], "PACK", nodes=["node-a"], pinned=True)
    assert handle == Pinned("wl-1", "node-a", {"CPU": 1.0})
    assert asyncio.run(rt.wait_pg_ready(handle, 0.001)) is True
    assert rt.pg_nodes(handle) == ["node-a"]
    assert rt.remove_pg("wl-1") and "wl-1" not in rt._pinned
    for nodes in (None, ["a", "b"]):
        with pytest.raises(ValueError):
            rt.create_pg("wl-2", [{"CPU": 1.0}] * len(nodes or [1]), "PACK", nodes=nodes, pinned=True)


def test_pinned_workers_are_shared_within_a_tenant_never_across_nor_per_task():
    a1, a2, b = tenant_env(None, "a"), tenant_env(None, "a"), tenant_env(None, "b")
    assert a1 == a2 == {"env_vars": {"ORION_TENANT": "a"}} and a1 != b
    user = {"pip": ["x"], "env_vars": {"K": "v"}}
    assert tenant_env(user, "a") == {"pip": ["x"], "env_vars": {"K": "v", "ORION_TENANT": "a"}}
    assert user == {"pip": ["x"], "env_vars": {"K": "v"}}  # the spec's own env is not changed
    assert tenant_env(None, None) == {"env_vars": {"ORION_TENANT": "default"}}
