"""User and system failures through the real scheduler over ``FakeRuntime`` (its driver decides
what a crashed worker means; the pipeline counts it): a worker crash the scheduler absorbs costs
the node nothing; one it gives up on is retried by the pipeline without using an attempt; a
fail_fast run cancels its running branch for real. No Ray, no sleeps."""

from __future__ import annotations

import asyncio

from orion_ray.runtime.fake import FakeRuntime
from orion_ray.status import Status

from .test_pipeline_operations_api import REFS, execute, spec
from .test_pipeline_scheduler import BIG, Clock, make, on_loop

CRASH = "WorkerCrashedError: the worker died"


async def drive(s, rt, clock, sid, crash=lambda key, wid: False, hold=lambda key: False, limit=40):
    """Loop turns by hand; a live run is crashed when ``crash`` says so, left running when
    ``hold`` does, else executed."""
    for _ in range(limit):
        got = await s.pipeline_status(sid, None)
        if got["state"] not in ("running", "cancelling"):
            return got
        clock.t += 1
        s.pipelines.tick(True)
        s.ingest.pull()
        s.run_cycle()
        for _ in range(50):
            await asyncio.sleep(0)
        for key in rt.live_runs():
            wid = rt.runs[key].workload_id
            if crash(key, wid):
                rt.fail(wid, CRASH)
            elif not hold(key):
                execute(rt, key)
        for _ in range(50):
            await asyncio.sleep(0)
    raise AssertionError(f"run {sid} never finished: {got}")


def function_of(rt, key):
    return rt.runs[key].launch["function"].rsplit(":", 1)[1]


def node(got, node_id):
    return {n["node_id"]: n for n in got["nodes"]}[node_id]


@on_loop
async def test_a_crash_the_scheduler_absorbs_costs_the_node_nothing(tmp_path):
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(str(tmp_path / "o.db"), rt, clock)
    gate = tmp_path / "gate"
    gate.write_text("ok")
    await s.pipeline_submit(
        {"dag_spec": spec(str(gate)), "refs": REFS, "runtime_params": {"submission_id": "c1"}}, "acme", "acme"
    )
    crashed: set[str] = set()

    def once(key, wid):  # extract's first run crashes; the scheduler runs the workload again
        if function_of(rt, key) == "extract" and not crashed:
            crashed.add(key)
            return True
        return False

    done = await drive(s, rt, clock, "c1", crash=once)
    extract = node(done, "extract")
    assert done["state"] == "succeeded", done
    assert (extract["attempt"], extract["user_failures"], extract["system_failures"]) == (1, 0, 1)
    assert s.store.get(extract["workload_id"]).attempt == 2  # the same workload, run again


@on_loop
async def test_a_system_failure_is_retried_without_using_an_attempt(tmp_path):
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(str(tmp_path / "o.db"), rt, clock)
    gate = tmp_path / "gate"
    gate.write_text("ok")
    body = {"dag_spec": spec(str(gate)), "refs": REFS, "runtime_params": {"submission_id": "c2"}}
    await s.pipeline_submit(body, "acme", "acme")  # slo.retry: max_attempts 1 (the default)
    first: list[str] = []

    def first_workload(key, wid):  # every run of extract's first workload crashes: it fails
        if function_of(rt, key) == "extract" and (not first or first[0] == wid):
            first[:1] = [wid]
            return True
        return False

    done = await drive(s, rt, clock, "c2", crash=first_workload)
    extract = node(done, "extract")
    assert done["state"] == "succeeded", done
    assert s.store.get(first[0]).status == Status.FAILED  # the scheduler gave that workload up
    assert extract["attempt"] == 2 and extract["user_failures"] == 0
    assert extract["system_failures"] == s.store.get(first[0]).attempt  # its restarts, and its end
    assert s.store.get(extract["workload_id"]).spec.metadata.request_id == "c2/extract/2"
    assert s.pipelines.controller.observed.retries == {"system": 1}


@on_loop
async def test_fail_fast_cancels_the_running_branch(tmp_path):
    rt, clock = FakeRuntime(BIG), Clock()
    s = make(str(tmp_path / "o.db"), rt, clock)
    dag = spec(str(tmp_path / "never"))  # validate fails: its gate never exists
    dag["nodes"].append(
        {"id": "slow", "kind": "python_task", "params": {"function": "tests.pipelines.nodes:fetch_data"}}
    )
    body = {"dag_spec": dag, "refs": REFS, "runtime_params": {"submission_id": "c3", "fail_fast": True}}
    await s.pipeline_submit(body, "acme", "acme")
    done = await drive(s, rt, clock, "c3", hold=lambda key: function_of(rt, key) == "fetch_data")
    assert done["state"] == "failed" and done["error"] == "fail_fast: node validate failed"
    states = {n["node_id"]: n["state"] for n in done["nodes"]}
    assert states == {"extract": "succeeded", "validate": "failed", "publish": "skipped", "slow": "cancelled"}
    assert s.store.get(node(done, "slow")["workload_id"]).status == Status.CANCELLED
