""" "Used" telemetry (``orion_ray/cost/telemetry.py``): Ray's per-worker figures mapped to
workloads, a GPU probe passed in (no device here), samples stored as usage records on the
scheduler's cost tick, and cost = max(requested, used) charging a workload that used more."""

from __future__ import annotations

import pytest

from orion_ray.cost import store_rows as cost_store
from orion_ray.cost.telemetry import (
    RayTelemetry,
    Sampler,
    Used,
    apply_used,
    used_records,
    workload_of,
)
from orion_ray.cost.usage import GIB, UsageRecord
from orion_ray.runtime.fake import FakeRuntime, fake_node

from .test_pinned_tasks import clock, db, make  # noqa: F401  (fixtures)
from .test_scheduler_run import on_loop, running, task

TASKS = [
    {"name": "orion-wl-a-1", "state": "RUNNING", "worker_pid": 101, "node_id": "n1"},
    {"name": "orion-wl-b-2", "state": "RUNNING", "worker_pid": 202, "node_id": "n2"},
    {"name": "orion-wl-c-1", "state": "FINISHED", "worker_pid": 303, "node_id": "n1"},
    {"name": "someone-else", "state": "RUNNING", "worker_pid": 404, "node_id": "n1"},
]
WORKERS = {  # as Ray 2.60's dashboard serves them (reporter_models.ProcessInfo: camelCase)
    "n1": [
        {"pid": 101, "cpuPercent": 250.0, "memoryInfo": {"rss": 2 * GIB, "vms": 0}, "gpuUtilization": 0},
        {"pid": 404, "cpuPercent": 100.0, "memoryInfo": {"rss": GIB}},
    ],
    "n2": [{"pid": 202, "cpu_percent": 50.0, "memory_info": [GIB // 2, 5], "gpu_utilization": 80}],  # older
}


def probe(gpu=None, broken_node=None) -> RayTelemetry:
    def node_workers(node):
        if node == broken_node:
            raise OSError("reporter down")
        return WORKERS[node]

    return RayTelemetry(list_tasks=lambda: TASKS, node_workers=node_workers, gpu_probe=gpu)


def test_an_orion_task_name_names_its_workload():
    assert workload_of("orion-wl-3f2a-1") == "wl-3f2a"
    assert workload_of("orion-wl-x-12") == "wl-x"
    assert workload_of("other-task") is None and workload_of(None) is None
    assert workload_of("orion-noattempt") is None


def test_each_running_workload_gets_its_worker_processes_figures():
    got = probe().sample(["wl-a", "wl-b", "wl-c"])
    assert got["wl-a"] == Used(cpus=2.5, memory_gib=2.0, gpus=None)  # a GPU at 0: not measured
    assert got["wl-b"] == Used(cpus=0.5, memory_gib=0.5, gpus=0.8)  # the reporter's NVML figure
    assert "wl-c" not in got  # finished: nothing running to measure
    assert set(probe().sample(["wl-b"])) == {"wl-b"}  # only the workloads asked about


def test_the_gpu_probe_passed_in_measures_gpus_by_pid():
    asked = []

    def fake_nvml(pids):
        asked.append(pids)
        return {101: 1.75}  # nearly two GPUs busy

    got = probe(gpu=fake_nvml).sample(["wl-a", "wl-b"])
    assert asked == [{101, 202}] and got["wl-a"].gpus == 1.75
    assert got["wl-b"].gpus == 0.8  # no NVML figure for it: the reporter's


def test_a_failing_source_leaves_figures_unmeasured_not_wrong():
    got = probe(broken_node="n2", gpu=lambda _p: 1 / 0).sample(["wl-a", "wl-b"])
    assert got == {"wl-a": Used(cpus=2.5, memory_gib=2.0)}


def rec(start, end, **used) -> UsageRecord:
    return UsageRecord("workload", "wl-a", "alice", "p", "on_demand", start, end, cpus=1.0, **used)


def test_samples_fold_into_each_stretch_as_a_time_weighted_mean():
    samples = used_records({"wl-a": Used(cpus=3.0, memory_gib=1.0)}, {"wl-a": "alice"}, start=0, end=60)
    samples += used_records({"wl-a": Used(cpus=1.0)}, {"wl-a": "alice"}, start=60, end=180)
    assert samples[0].kind == "used" and samples[0].tenant == "alice"
    [r] = apply_used([rec(0, 180)], samples)
    assert r.used_cpus == pytest.approx((3.0 * 60 + 1.0 * 120) / 180)
    assert r.used_memory_gib == 1.0 and r.used_gpus is None  # only where measured
    [late] = apply_used([rec(60, 180)], samples)  # a second stretch: only its own samples
    assert late.used_cpus == 1.0
    untouched = rec(500, 600)
    assert apply_used([untouched], samples) == [untouched]


class FakeProbe:
    def __init__(self, used: Used):
        self.used = used
        self.asked: list[list[str]] = []

    def sample(self, workload_ids):
        self.asked.append(sorted(workload_ids))
        return {w: self.used for w in workload_ids}


def _drain(sampler: Sampler) -> None:
    if sampler.pending is not None:
        sampler.pending[0].result(timeout=10)


@on_loop
async def test_the_scheduler_stores_samples_and_cost_charges_what_was_used(db, clock):  # noqa: F811
    """A workload asked for 1 CPU and used 3: cost = max(requested, used) charges 3 CPU-hours
    per hour it ran; its 4 GPUs, unused per the probe, are still charged as requested."""
    rt = FakeRuntime([fake_node("n1", gpus=4, pool="gpu")])
    s = make(db, rt, clock)
    fake = FakeProbe(Used(cpus=3.0, memory_gib=0.5, gpus=0.0))
    s.cost.telemetry = Sampler(fake)
    wid = (await s.submit(task(gpus=4), tenant_id="alice"))["workload_id"]
    s.run_cycle()
    await running(s, rt, wid)
    s.cost.tick()  # the first tick: capacity (and samples) start from here
    for _ in range(60):  # an hour of ticks
        clock.advance(60)
        s.cost.tick()
        _drain(s.cost.telemetry)
    assert fake.asked and all(a == [wid] for a in fake.asked)
    assert (
        cost_store.stored_records(s.store, since=0.0, until=clock())[0] == []
    )  # samples are not replica usage
    now = clock()
    [r] = cost_store.workload_usage(s.store, since=now - 7200, until=now, now=now)
    assert r.used_cpus == 3.0 and r.used_gpus == 0.0 and r.charged() == (4.0, 3.0, 0.5)
    rows, _ = cost_store.cost_rows(s.store, start=now - 7200, end=now, now=now, step=None, share_idle="none")
    mine = [x for x in rows if x["tenant"] == "alice"]
    hours = r.hours
    assert sum(x["cpu_hours"] for x in mine) == pytest.approx(3.0 * hours, rel=1e-3)
    assert sum(x["gpu_hours"] for x in mine) == pytest.approx(4.0 * hours, rel=1e-3)


def test_a_probe_still_measuring_never_blocks_a_tick(tmp_path):
    import threading

    from orion_ray.store import SQLiteStore

    from .backup_support import fill

    store = SQLiteStore(str(tmp_path / "orion.db"))
    [wid] = fill(store, 1)
    with store._lock, store._tx():
        store._db.execute("UPDATE workloads SET status='running'")
    gate = threading.Event()

    class Slow:
        def sample(self, ids):
            gate.wait(10)
            return {i: Used(cpus=2.0) for i in ids}

    sampler = Sampler(Slow())
    assert sampler.tick(store, start=0.0, end=60.0) == 0  # started
    assert sampler.tick(store, start=60.0, end=120.0) == 0  # still measuring: skipped, not waited
    gate.set()
    _drain(sampler)
    assert sampler.tick(store, start=120.0, end=180.0) == 1  # the first sample, over [0, 60)
    [u] = [r for r in store._query("SELECT ref, start_at, end_at, used_cpus FROM usage_records", ())]
    assert tuple(u) == (wid, 0.0, 60.0, 2.0)
    store.close()
