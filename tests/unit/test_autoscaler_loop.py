"""The autoscaler's control loop with fakes: observe → decide → actuate → record, on a fake clock."""

import asyncio

import pytest

from orion_ray.autoscaler.control import AutoscalerLoop
from orion_ray.autoscaler.pool_spec import parse_autoscale_pools
from orion_ray.errors import ConfigError
from orion_ray.store import SQLiteStore

POOLS = [
    {
        "name": "a100",
        "resources": {"CPU": 2, "GPU": 4},
        "gpu_type": "A100",
        "max_size": 4,
        "autoscaling": {"scale_down_cooldown": "30s", "idle_time": "10s"},
    }
]


class Clock:
    def __init__(self):
        self.t = 1_700_000_000.0

    def __call__(self):
        return self.t


class FakeScheduler:
    """The scheduler's side: a view the test edits, and the drains/uncordons asked of it."""

    def __init__(self):
        self.nodes, self.pending, self.calls, self.reports = [], [], [], []
        self.own_groups: list[str] = []

    async def autoscaler_view(self):
        return {
            "nodes": [dict(n) for n in self.nodes],
            "pending": list(self.pending),
            "queued": len(self.pending),
            "own_groups": list(self.own_groups),
        }

    async def drain(self, node, who, deadline, reason):
        self.calls.append(("drain", node))
        for n in self.nodes:
            if n["node_id"] == node:
                n["state"] = "drained"

    async def uncordon(self, node, who):
        self.calls.append(("uncordon", node))
        for n in self.nodes:
            if n["node_id"] == node:
                n["state"] = "ready"

    async def autoscaler_report(self, status):
        self.reports.append(status)


class FakeCapacity:
    def __init__(self):
        self.requests, self.failed, self.fail_status = [], [], False
        self.ray_pending: list[dict] = []
        self.on_status = None  # what happens in the scheduler while Ray's state is read

    def request(self, bundles, selectors):
        self.requests.append((bundles, selectors))

    def status(self):
        if self.fail_status:
            raise RuntimeError("no autoscaler")
        if self.on_status is not None:
            self.on_status()
        return {
            "pending_launches": {},
            "failed_launches": list(self.failed),
            "ray_pending": list(self.ray_pending),
            "node_types": {},
        }

    def release(self, node_id):
        self.released = getattr(self, "released", []) + [node_id]
        return True, ""

    def gpu_telemetry(self, nodes):
        return {n: {"status": "no_device", "reason": "no NVIDIA device"} for n in nodes}


def gpu_node(nid, running=0, idle_since=None, free_gpu=4.0):
    return {
        "node_id": nid,
        "pool": "a100",
        "total": {"CPU": 2.0, "GPU": 4.0},
        "free": {"CPU": 2.0, "GPU": free_gpu},
        "running": running,
        "state": "ready",
        "idle_since": idle_since,
        "fragmentation": 0.0,
    }


def gang(n=2, gpus=4.0):
    return {
        "workload_id": f"w{n}",
        "bundles": [{"CPU": 1.0, "GPU": gpus}] * n,
        "gpu_types": ["A100"] * n,
        "strategy": "STRICT_SPREAD",
        "pool": None,
    }


@pytest.fixture
def loop(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    clock = Clock()
    lp = AutoscalerLoop(
        parse_autoscale_pools(POOLS), FakeScheduler(), FakeCapacity(), store, clock=clock, history_every_s=60
    )
    lp.clock_ = clock
    yield lp
    store.close()


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_queued_gangs_become_a_request_then_nodes_then_release(loop):
    sched, cap, store, clock = loop.source, loop.capacity, loop.store, loop.clock_
    sched.pending = [gang(2)]
    status = run(loop.step())
    bundles, selectors = cap.requests[-1]
    assert bundles == [{"CPU": 2.0, "GPU": 4.0}] * 2
    assert all(s == {"orion.io/pool": "a100", "ray.io/accelerator-type": "A100"} for s in selectors)
    assert status["pools"][0]["target"] == 2 and status["pools"][0]["trigger"] == "queue"
    (ev,) = store.scaling_events(kind="scale_up")
    assert (ev["before"], ev["after"], ev["outcome"]) == (0, 2, "requested")
    # the nodes come up and take the gang
    clock.t += 6
    sched.pending = []
    sched.nodes = [gpu_node("n1", 1, free_gpu=0.0), gpu_node("n2", 1, free_gpu=0.0)]
    run(loop.step())
    (ev,) = store.scaling_events(kind="scale_up")
    assert ev["outcome"] == "fulfilled" and ev["duration_s"] == 6.0
    assert len(cap.requests) == 1  # the same request is not sent again
    # the gang ends; after idle_s and the cooldown both nodes go
    clock.t += 5
    sched.nodes = [gpu_node("n1", 0, clock.t), gpu_node("n2", 0, clock.t)]
    run(loop.step())
    assert not store.scaling_events(kind="scale_down")  # idle for 0 s: kept
    clock.t += 40
    status = run(loop.step())
    assert cap.requests[-1] == ([], [])
    assert sorted(c for c in sched.calls) == [("drain", "n1"), ("drain", "n2")]
    assert sorted(cap.released) == ["n1", "n2"]  # and Ray is asked to let exactly these go
    (down,) = store.scaling_events(kind="scale_down")
    assert (down["before"], down["after"], down["details"]["release"]) == (2, 0, ["n1", "n2"])
    # the released nodes leave: the event is fulfilled; the state is checkpointed
    clock.t += 3
    sched.nodes = []
    run(loop.step())
    assert store.scaling_events(kind="scale_down")[0]["outcome"] == "fulfilled"
    saved = store.get_setting("autoscaler_state")
    assert saved["pools"]["a100"]["target"] == 0
    assert sched.reports[-1]["pools"][0]["current"] == 0


def test_released_nodes_are_taken_back_when_demand_returns(loop):
    sched, clock = loop.source, loop.clock_
    sched.nodes = [gpu_node("n1", 0, clock.t - 100), gpu_node("n2", 0, clock.t - 100)]
    run(loop.step())
    assert {c for c in sched.calls} == {("drain", "n1"), ("drain", "n2")}
    clock.t += 1
    sched.pending = [gang(2)]  # work arrives before Ray removed them
    run(loop.step())
    assert {c for c in sched.calls if c[0] == "uncordon"} == {("uncordon", "n1"), ("uncordon", "n2")}
    assert loop.released == {}


def test_history_state_failed_launches_and_telemetry(loop, tmp_path):
    sched, cap, store, clock = loop.source, loop.capacity, loop.store, loop.clock_
    sched.nodes = [gpu_node("n1", 1, free_gpu=0.0)]
    cap.failed = [
        {"node_type": "a100", "count": 2, "at": 5, "details": "InsufficientInstanceCapacity in us-east-1a"}
    ]
    status = run(loop.step())
    run(loop.step())  # the same failure is recorded once
    (f,) = store.scaling_events(kind="launch_failed")
    assert f["pool"] == "a100" and "InsufficientInstanceCapacity" in f["reason"]
    assert store.history_since(0) == [(clock.t, "a100", 1.0)]
    assert status["gpu_telemetry"]["n1"]["status"] == "no_device"
    # a restarted autoscaler resumes its cooldowns and targets
    again = AutoscalerLoop(loop.pools, sched, cap, store, clock=clock)
    assert again.state.pools["a100"].target == loop.state.pools["a100"].target


def test_the_loop_survives_a_failing_step(loop):
    calls = []

    async def broken():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("scheduler restarting")
        loop.stop()
        return {"nodes": [], "pending": []}

    loop.source.autoscaler_view = broken
    loop.interval_s = 0.01
    loop.capacity.fail_status = True  # and no Ray autoscaler answers
    run(asyncio.wait_for(loop.run(), 5))
    assert len(calls) == 2
    assert loop.last_status["ray_autoscaler"] == "unavailable"


@pytest.mark.parametrize(
    "pools,field",
    [
        ([{"name": "p", "resources": {"GPU": -1}}], "orion.worker_pools.0.resources"),
        ([{"name": "p", "instance_type": "x9.huge"}], "orion.worker_pools.0.resources"),
        (
            [{"name": "p", "resources": {"CPU": 1}, "scaling_policy": "magic"}],
            "orion.worker_pools.0.scaling_policy",
        ),
        (
            [{"name": "p", "resources": {"CPU": 1}, "min_size": 3, "max_size": 1}],
            "orion.worker_pools.0.max_size",
        ),
        (
            [{"name": "p", "resources": {"CPU": 1}, "autoscaling": {"scale_up_cooldown": "5x"}}],
            "orion.worker_pools.0.autoscaling",
        ),
        (
            [{"name": "p", "resources": {"CPU": 1}, "scaling_policy": "schedule"}],
            "orion.worker_pools.0.schedule",
        ),
        (
            [
                {
                    "name": "p",
                    "resources": {"CPU": 1},
                    "schedule": [{"cron": "61 * * * *", "duration": "1h", "size": 1}],
                }
            ],
            "orion.worker_pools.0.schedule.0",
        ),
        (
            [{"name": "p", "resources": {"CPU": 1}}, {"name": "p", "resources": {"CPU": 1}}],
            "orion.worker_pools.1.name",
        ),
    ],
)
def test_bad_pools_name_the_field(pools, field):
    with pytest.raises(ConfigError) as e:
        parse_autoscale_pools(pools, {})
    assert field in [d["field"] for d in e.value.details], e.value.details


def test_known_instance_types_need_no_shape():
    (p,) = parse_autoscale_pools(
        [{"name": "gpu-pool", "instance_type": "p4d.24xlarge", "scaling_policy": "hybrid"}],
        {"predictive_scaling": {"enabled": True, "lookback_period": "14d"}},
    )
    assert p.node_resources == {"CPU": 96.0, "GPU": 8.0}
    assert p.labels == {"orion.io/pool": "gpu-pool", "ray.io/accelerator-type": "A100"}
    assert p.params.predictive_enabled and p.params.lookback_s == 14 * 86400


def test_measured_gpu_utilisation_is_used_where_nvml_reports():
    from orion_ray.autoscaler.control import _measured_gpu
    from orion_ray.policy.autoscaling import NodeSample

    nodes = [
        NodeSample(
            node_id="n1",
            pool="a100",
            total={"GPU": 4.0},
            free={"GPU": 0.0},
            running=1,
            state="ready",
            idle_since=None,
        ),
        NodeSample(
            node_id="n2",
            pool="a100",
            total={"GPU": 4.0},
            free={"GPU": 4.0},
            running=0,
            state="ready",
            idle_since=0.0,
        ),
    ]
    tel = {
        "n1": {"status": "ok", "gpus": [{"utilization_pct": 90.0}, {"utilization_pct": 50.0}]},
        "n2": {"status": "no_device", "reason": "no NVIDIA device"},
    }
    assert _measured_gpu(nodes, tel) == 70.0
    assert _measured_gpu(nodes, {"n2": tel["n2"]}) is None  # allocation is used instead


def test_a_gang_placed_while_ray_is_read_is_not_counted_twice(tmp_path):
    """Orion places the second gang (its group now pending in Ray) between the two reads: the
    pool stays at the four nodes the two gangs need, not six (queued gang + Ray's group)."""
    store = SQLiteStore(str(tmp_path / "orion.db"))
    pools = parse_autoscale_pools([dict(POOLS[0], max_size=8)])
    loop = AutoscalerLoop(pools, FakeScheduler(), FakeCapacity(), store, clock=Clock(), history_every_s=60)
    sched, cap = loop.source, loop.capacity
    sched.nodes = [gpu_node("n1", 1, free_gpu=0.0), gpu_node("n2", 1, free_gpu=0.0)]
    sched.nodes += [gpu_node("n3"), gpu_node("n4")]
    sched.pending = [gang(2)]
    group = {"bundles": [{"CPU": 1.0, "GPU": 4.0}] * 2, "strategy": "STRICT_SPREAD", "pg_id": "g2"}

    def placed():
        cap.ray_pending = [group]
        sched.pending = []
        sched.own_groups = ["g2"]
        for n in sched.nodes[2:]:
            n.update(running=1, free={"CPU": 1.0, "GPU": 0.0})

    cap.on_status = placed
    status = run(loop.step())
    assert status["pools"][0]["target"] == 4
    # a group Orion does not own (a Serve replica's, a plain Ray user's) is still demand
    cap.on_status = None
    cap.ray_pending = [dict(group, pg_id="other")]
    status = run(loop.step())
    assert status["pools"][0]["target"] == 6
    store.close()
