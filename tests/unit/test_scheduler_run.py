"""The scheduler's run path tick by tick, over the in-memory ``FakeRuntime`` and a test clock:
a run to completion, failure and retry with backoff, preemption, a lost node, and recovery after a
restart over the same store. No Ray, no sleeps: each step is one cycle (``run_cycle``), one node
check, or the runtime ending a run, and the test then lets the drivers run to their next wait."""

from __future__ import annotations

import asyncio
import functools

import pytest

from orion_ray.config import PolicyConfig, SchedulerConfig
from orion_ray.runtime.fake import FakeRuntime, fake_node
from orion_ray.scheduler import Scheduler, estimates, node_ops
from orion_ray.scheduler.recovery import recover
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

BASE_S = 10.0  # retry backoff base: 10 s, 20 s, 40 s…


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock():
    return Clock()


_STORES: list[SQLiteStore] = []


@pytest.fixture
def db(tmp_path):
    yield str(tmp_path / "orion.db")
    while _STORES:
        _STORES.pop().close()


def make(db: str, rt: FakeRuntime, clock: Clock) -> Scheduler:
    """A scheduler over the store at ``db`` (a second one over the same path is a restart)."""
    _STORES.append(SQLiteStore(db))
    return Scheduler(
        _STORES[-1],
        rt,
        SchedulerConfig(retry_backoff_base_s=BASE_S),
        PolicyConfig(),
        clock=clock,
        sleep=just_yield,
    )


async def just_yield(seconds: float) -> None:
    """The drivers' pause between job polls: no time passes, other tasks run."""
    await asyncio.sleep(0)


def on_loop(test):
    """Run an ``async`` test on a fresh event loop (the scheduler's drivers are its tasks)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


def task(gpus: float = 4.0, **fields) -> dict:
    return {
        "workload_type": "task",
        "function": "math:factorial",
        "args": [5],
        "resources": {"gpu": gpus, "cpu": 1},
        **fields,
    }


async def settle(predicate, what: str = "the drivers to reach their next step") -> None:
    """Let the scheduler's tasks run (no time passes) until ``predicate()`` holds."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never reached: {what}")


async def admits_one(s: Scheduler, what: str) -> None:
    """Run cycles until one admits a workload: the victim's release finishes in the driver's own
    steps (its store writes, the group's removal), which a loaded machine can spread over a few
    loop turns after its status reads ``queued``."""
    for _ in range(100):
        if s.run_cycle()["admitted"] == 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never admitted: {what}")


async def submit(s: Scheduler, spec: dict) -> str:
    return (await s.submit(spec))["workload_id"]


def status(s: Scheduler, wid: str) -> Status:
    w = s.active.get(wid) or s.store.get(wid)
    return w.status


async def running(s: Scheduler, rt: FakeRuntime, wid: str) -> None:
    await settle(
        lambda: status(s, wid) == Status.RUNNING and any(k.startswith(wid + ":") for k in rt.live_runs()),
        f"{wid} running",
    )


def history(s: Scheduler, wid: str) -> list[str]:
    return [h["status"] for h in s.store.history(wid)]


# -- a run to completion --------------------------------------------------------------------------
@on_loop
async def test_a_task_runs_to_completion_and_gives_its_reservation_back(db, clock):
    rt = FakeRuntime([fake_node("n1")])
    s = make(db, rt, clock)
    wid = await submit(s, task(gpus=2))
    assert status(s, wid) == Status.QUEUED
    assert s.run_cycle()["admitted"] == 1
    assert status(s, wid) == Status.STARTING and wid in rt.pgs
    await running(s, rt, wid)
    run = rt.run_of(wid)
    assert run.attempt == 1 and run.launch["function"] == "math:factorial"
    assert run.launch["args"] == [5] and run.launch["bundle"]["GPU"] == 2.0
    assert s.reservations[wid][0].node_id == "n1"

    clock.advance(30)
    rt.complete(wid, result=120, logs="done\n")
    await settle(lambda: status(s, wid) == Status.COMPLETED, "completion")
    got = await s.get(wid)
    assert got["result"] == 120 and await s.logs(wid) == "done\n"
    assert history(s, wid) == ["submitted", "queued", "starting", "running", "completed"]
    assert wid not in rt.pgs and wid not in s.reservations and wid not in s.active
    assert ("forget_task", wid, 1) in rt.calls
    await settle(lambda: not s.driver.tasks, "the driver to end")


@on_loop
async def test_a_job_runs_to_completion_and_keeps_its_own_output(db, clock):
    rt = FakeRuntime([fake_node("n1")])
    s = make(db, rt, clock)
    wid = await submit(
        s, {"workload_type": "job", "entrypoint": "python train.py", "resources": {"gpu": 1, "cpu": 1}}
    )
    s.run_cycle()
    await settle(lambda: status(s, wid) == Status.RUNNING, "the job running")
    assert rt.run_of(wid).launch["metadata"]["orion_workload_id"] == wid
    rt.finish_job(wid, "SUCCEEDED", logs="Running entrypoint for job orion-x\nloss 0.1\n")
    await settle(lambda: status(s, wid) == Status.COMPLETED, "the job completed")
    assert await s.logs(wid) == "loss 0.1\n"  # Ray's own lines dropped


@on_loop
async def test_cancel_stops_the_run_and_gives_the_group_back(db, clock):
    rt = FakeRuntime([fake_node("n1")])
    s = make(db, rt, clock)
    wid = await submit(s, task())
    s.run_cycle()
    await running(s, rt, wid)
    assert (await s.cancel(wid, who="alice"))["status"] == "cancelled"
    assert ("cancel_task", wid, 1) in rt.calls and wid not in rt.pgs and rt.live_runs() == []
    await settle(lambda: not s.driver.tasks, "the driver to stop")
    assert (await s.cancel(wid))["status"] == "cancelled"  # idempotent
    assert history(s, wid)[-1] == "cancelled"


@on_loop
async def test_cancel_while_starting_removes_the_group_and_nothing_runs(db, clock):
    # Ray has not reserved the group yet (auto_ready off): the workload stays in `starting`
    rt = FakeRuntime([fake_node("n1")], auto_ready=False)
    s = make(db, rt, clock)
    wid = await submit(s, task())
    s.run_cycle()
    await settle(lambda: status(s, wid) == Status.STARTING and wid in rt.pgs, "the group requested")
    assert (await s.cancel(wid, who="alice"))["status"] == "cancelled"
    await settle(lambda: not s.driver.tasks, "the driver to stop")
    assert wid not in rt.pgs and rt.live_runs() == []  # the group is given back, no run started
    assert ("remove_pg", wid, None) in rt.calls
    assert history(s, wid)[-2:] == ["starting", "cancelled"]


# -- failure and retry with backoff ---------------------------------------------------------------
@on_loop
async def test_a_failed_run_is_retried_after_its_backoff_then_fails_for_good(db, clock):
    rt = FakeRuntime([fake_node("n1")])
    s = make(db, rt, clock)
    wid = await submit(s, task(max_retries=1))
    s.run_cycle()
    await running(s, rt, wid)
    rt.fail(wid, "ValueError: bad input")
    await settle(lambda: status(s, wid) == Status.QUEUED, "the retry queued")
    w = s.active[wid]
    assert w.attempt == 2 and w.error == "ValueError: bad input"
    assert w.not_before == clock() + BASE_S and wid not in rt.pgs

    assert s.run_cycle()["admitted"] == 0  # backing off
    reasons = (await s.explain(wid))["reasons"]
    assert reasons[0]["code"] == "backoff"
    clock.advance(BASE_S)
    assert s.run_cycle()["admitted"] == 1
    await running(s, rt, wid)
    assert rt.run_of(wid).attempt == 2
    rt.fail(wid, "ValueError: bad input again")
    await settle(lambda: status(s, wid) == Status.FAILED, "the final failure")
    got = await s.get(wid)
    assert got["error"] == "ValueError: bad input again" and got["attempt"] == 2
    assert history(s, wid).count("running") == 2


@on_loop
async def test_an_infrastructure_failure_is_run_again_at_once_not_counted(db, clock):
    rt = FakeRuntime([fake_node("n1")])
    s = make(db, rt, clock)
    wid = await submit(s, task())  # no retries: a workload failure would be final
    s.run_cycle()
    await running(s, rt, wid)
    rt.fail(wid, "WorkerCrashedError: the worker died")
    await settle(lambda: status(s, wid) == Status.QUEUED, "requeued")
    assert s.active[wid].attempt == 2 and s.active[wid].not_before == clock()
    assert s.run_cycle()["admitted"] == 1  # no backoff
    await running(s, rt, wid)


# -- preemption -----------------------------------------------------------------------------------
@on_loop
async def test_a_victim_is_stopped_before_its_preemptor_starts(db, clock):
    rt = FakeRuntime([fake_node("n1", gpus=4)])
    s = make(db, rt, clock)
    low = await submit(s, task(priority="low"))
    s.run_cycle()
    await running(s, rt, low)
    clock.advance(60)
    high = await submit(s, task(priority="high"))

    cycle = s.run_cycle()
    assert cycle["preempted"] == 1 and cycle["admitted"] == 0
    assert status(s, low) == Status.PREEMPTED and status(s, high) == Status.QUEUED
    await settle(lambda: status(s, low) == Status.QUEUED, "the victim back in the queue")
    assert s.active[low].attempt == 2 and low not in rt.pgs

    await admits_one(s, "the preemptor")
    await running(s, rt, high)
    calls = [(c[0], c[1]) for c in rt.calls]
    assert (
        calls.index(("stop_task", low))
        < calls.index(("remove_pg", low))
        < calls.index(("create_pg", high))
        < calls.index(("start_task", high))
    )
    assert status(s, low) == Status.QUEUED  # waits for the capacity the preemptor holds
    assert (await s.explain(low))["status"] == "queued"


# -- a lost node ----------------------------------------------------------------------------------
@on_loop
async def test_the_work_of_a_lost_node_is_requeued_once_and_never_runs_twice(db, clock):
    rt = FakeRuntime([fake_node("n1"), fake_node("n2")])
    s = make(db, rt, clock)
    node_ops.check_nodes(s)  # the loop's node check has seen both nodes
    wid = await submit(s, task(gpus=4))
    s.run_cycle()
    await running(s, rt, wid)
    where = s.reservations[wid][0].node_id
    other = "n2" if where == "n1" else "n1"

    assert rt.lose_node(where) == [wid]
    changes = node_ops.check_nodes(s)
    assert [(t.node_id, t.after) for t in changes] == [(where, "lost")]
    w = s.active[wid]
    assert w.status == Status.QUEUED and w.attempt == 2 and w.requeues == 1
    assert w.reason == f"node {where} lost" and not s.driver.tasks and wid not in rt.pgs
    assert rt.live_runs() == []  # removing the group ended the lost run

    assert s.run_cycle()["admitted"] == 1
    await running(s, rt, wid)  # FakeRuntime refuses a second live run of one workload
    assert s.reservations[wid][0].node_id == other
    assert rt.live_runs() == [f"{wid}:2"] and s.active[wid].requeues == 1
    rt.complete(wid, result=1)
    await settle(lambda: status(s, wid) == Status.COMPLETED, "completion on the other node")


# -- recovery after a restart ---------------------------------------------------------------------
@on_loop
async def test_a_restarted_scheduler_adopts_live_runs_requeues_lost_ones_removes_orphans(db, clock):
    rt = FakeRuntime([fake_node("n1", gpus=4)])
    first = make(db, rt, clock)
    alive = await submit(first, task(gpus=2))
    lost = await submit(first, task(gpus=2))
    first.run_cycle()
    await running(first, rt, alive)
    await running(first, rt, lost)
    waiting = await submit(first, task(gpus=4))  # no room: stays queued
    first.run_cycle()
    assert status(first, waiting) == Status.QUEUED

    await first.stop()  # the scheduler dies; Ray keeps its objects…
    rt.lose(lost)  # …except one run that died meanwhile
    rt.create_pg("wl-orphan", [{"GPU": 1.0}], "PACK")  # a group no workload owns

    clock.advance(5)
    second = make(db, rt, clock)
    counts = await recover(
        store=second.store,
        runtime=rt,
        book=second.book,
        driver=second.driver,
        observe=second.observe,
        clock=clock,
    )
    assert counts == {"queued": 1, "adopted": 1, "relaunched": 0, "requeued": 1, "orphans_removed": 1}
    assert status(second, alive) == Status.RUNNING and alive in second.driver.tasks
    assert second.reservations[alive][0].node_id == "n1"
    w = second.active[lost]
    assert w.status == Status.QUEUED and w.attempt == 2
    assert "wl-orphan" not in rt.pgs and lost not in rt.pgs

    rt.complete(alive, result="adopted")  # the adopted run ends under the new scheduler
    await settle(lambda: status(second, alive) == Status.COMPLETED, "the adopted run completed")
    assert (await second.get(alive))["result"] == "adopted"
    clock.advance(BASE_S)
    second.run_cycle()
    await running(second, rt, lost)
    assert rt.run_of(lost).attempt == 2 and rt.live_runs() == [f"{lost}:2"]


class StepClock:
    """A work clock that moves one unit per reading: a slice budget of N units ends a slice after
    about N readings, whatever the machine's speed."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@on_loop
async def test_a_pass_runs_in_slices_each_applied_before_the_next(db, clock):
    rt = FakeRuntime([fake_node(f"n{i}", gpus=1, cpus=4) for i in range(10)])
    s = make(db, rt, clock)
    s.planner.clock, s.planner.slice_s = StepClock(), 3.0
    ids = [(await s.submit(task(gpus=1)))["workload_id"] for _ in range(10)]
    first = s.run_slice()
    assert not first["complete"] and s.planner.busy, first
    starting = [w for w in ids if s.active[w].status == Status.STARTING]
    # the first slice's admissions are applied now: reserved, persisted, groups asked for
    assert 0 < len(starting) < len(ids)
    assert all(w in rt.pgs and s.store.get(w).status == Status.STARTING for w in starting)
    # between slices a queued one is cancelled: the pass must not start it
    later = next(w for w in ids if s.active[w].status == Status.QUEUED)
    await s.cancel(later)
    while s.planner.busy:
        s.run_slice()
    assert s.store.get(later).status == Status.CANCELLED and later not in rt.pgs
    others = [w for w in ids if w != later]
    assert all(s.active[w].status in (Status.STARTING, Status.RUNNING) for w in others)
    # the cancelled one's capacity went back: the next pass admits a new arrival onto it
    extra = (await s.submit(task(gpus=1)))["workload_id"]
    s.run_cycle()
    assert s.active[extra].status in (Status.STARTING, Status.RUNNING)


@on_loop
async def test_arrivals_alone_get_a_delta_pass_and_freed_capacity_a_full_one(db, clock):
    rt = FakeRuntime([fake_node(f"n{i}", gpus=1, cpus=4) for i in range(2)])
    s = make(db, rt, clock)
    first = [(await s.submit(task(gpus=1)))["workload_id"] for _ in range(3)]
    s.run_cycle()  # the first pass is a full one: two fit, one waits
    assert s.last_cycle["considered"] == 3 and s.last_cycle["admitted"] == 2
    running = [w for w in first if s.active[w].status != Status.QUEUED]
    await settle(lambda: all(s.active[w].status == Status.RUNNING for w in running))
    waiting = next(w for w in first if w not in running)
    # an arrival alone: a pass over the arrival only (the waiting one met the same capacity)
    late = (await s.submit(task(gpus=1)))["workload_id"]
    cycles = s.cycles
    s.run_cycle()
    assert s.cycles == cycles + 1 and s.last_cycle["considered"] == 1, s.last_cycle
    assert s.active[late].status == Status.QUEUED and s.book.wait_reasons.get(late)
    # nothing new: no pass at all
    s.run_cycle()
    assert s.cycles == cycles + 1
    # a run ends and gives its GPU back: a full pass, and the one that waited longest goes first
    rt.complete(running[0], result=120)
    await settle(lambda: running[0] not in s.active)
    s.run_cycle()
    assert s.last_cycle["considered"] == 2 and s.last_cycle["admitted"] == 1, s.last_cycle
    assert s.active[waiting].status != Status.QUEUED and s.active[late].status == Status.QUEUED


# -- the acknowledgement's estimates --------------------------------------------------------------
def test_the_last_forecast_is_reused_while_a_new_one_would_cost_more_than_its_share():
    clock = Clock(0.0)
    cache = estimates.ForecastCache(clock=clock)
    assert cache.affordable(0.1) is None  # no forecast yet
    cache.put(1, {"a": (1.0, 2.0)}, cost_s=0.2)
    clock.advance(1.9)
    assert cache.affordable(0.1) == {"a": (1.0, 2.0)}  # 0.2 s is more than 10 % of 1.9 s
    clock.advance(0.2)
    assert cache.affordable(0.1) is None  # and less than 10 % of 2.1 s


@on_loop
async def test_acknowledgements_forecast_until_forecasts_cost_more_than_their_share(db, clock):
    rt = FakeRuntime([fake_node("n1")])
    s = make(db, rt, clock)
    s.forecasts = estimates.ForecastCache(clock=clock)  # no time passes: forecasts cost nothing
    await submit(s, task(gpus=4))
    s.run_cycle()  # the node is full: what follows queues behind it
    quiet = [await s.submit(task(gpus=4, timeout_s=60)) for _ in range(3)]
    assert all(a["estimated_start"] is not None for a in quiet)
    # the last forecast took 1 s: for the next 10 s acknowledgements reuse it instead of paying again
    s.forecasts.put(s.book.version, estimates.estimates(s), cost_s=1.0)
    burst = [await s.submit(task(gpus=4)) for _ in range(3)]
    assert [a["queue_position"] for a in burst] == [4, 5, 6]
    assert all(a["estimated_start"] is None for a in burst)  # a forecast that has not seen them
    explained = await s.explain(burst[-1]["workload_id"])
    assert explained["estimated_start"] is not None  # explain always forecasts
    clock.advance(10.1)
    assert (await s.submit(task(gpus=4)))["estimated_start"] is not None
