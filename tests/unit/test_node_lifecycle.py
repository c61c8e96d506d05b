"""Node lifecycle (pure), and cordon / drain / lost nodes applied by the scheduler, with a fake
runtime whose node list the test edits."""

import asyncio

import pytest

from orion_ray.errors import Conflict, NotFound, ValidationError
from orion_ray.models import Workload, WorkloadSpec
from orion_ray.policy.fit import NodeView
from orion_ray.policy.live_placement import Held
from orion_ray.policy.node_lifecycle import NodeBook
from orion_ray.scheduler import Scheduler, node_ops
from orion_ray.status import Status
from orion_ray.store import SQLiteStore


def node(nid, gpus=4, pool="gpu", ready=True):
    total = {"CPU": 2.0, "GPU": float(gpus)}
    return NodeView(
        nid,
        dict(total),
        total,
        {"orion.io/pool": pool, "ray.io/accelerator-type": "A100"},
        available=dict(total) if ready else None,
    )


# -- the pure book ---------------------------------------------------------------------------------
def test_nodes_register_become_ready_and_end_as_terminated_or_lost():
    book = NodeBook()
    t = book.observe([node("a", ready=False), node("b")], {}, 0.0)
    assert [(x.node_id, x.after) for x in t] == [("a", "registered"), ("b", "registered"), ("b", "ready")]
    t = book.observe([node("a"), node("b")], {"b": 1}, 1.0)
    assert [(x.node_id, x.after) for x in t] == [("a", "ready")]
    assert book.get("a").idle_since == 0.0 and book.get("b").idle_since is None
    t = book.observe([], {"b": 1}, 2.0)  # a left idle, b vanished under work
    assert {(x.node_id, x.after) for x in t} == {("a", "terminated"), ("b", "lost")}
    assert book.counts() == {"terminated": 1, "lost": 1}
    assert book.get("b").history[-1][2].startswith("stopped heartbeating")


def test_a_node_that_died_unexpectedly_is_lost_even_when_its_work_had_left():
    book = NodeBook()
    book.observe([node("a"), node("b")], {}, 0.0)
    t = book.observe(
        [], {}, 1.0, {"a": (2, "health check failed due to missing too many heartbeats"), "b": (4, "idle")}
    )
    assert {(x.node_id, x.after) for x in t} == {("a", "lost"), ("b", "terminated")}
    assert "heartbeats" in book.get("a").history[-1][2]


def test_cordon_uncordon_and_drain_states():
    book = NodeBook()
    book.observe([node("a"), node("b")], {}, 0.0)
    assert book.cordon("a", 1.0).after == "cordoned"
    assert book.unschedulable() == {"a"}
    assert book.uncordon("a", 2.0).after == "ready"
    assert book.unschedulable() == set()
    t = book.drain("b", 3.0, deadline_s=10, busy=2)
    assert t.after == "draining" and book.get("b").drain_deadline == 13.0
    assert book.overdue(12.0) == [] and book.overdue(13.0) == ["b"]
    book.drain("b", 4.0, deadline_s=100, busy=2)  # a later drain never extends the deadline
    assert book.get("b").drain_deadline == 13.0
    t = book.observe([node("a"), node("b")], {}, 5.0)  # the work left
    assert [(x.node_id, x.after) for x in t] == [("b", "drained")]
    t = book.observe([node("a")], {}, 6.0)
    assert t[0].after == "terminated" and t[0].reason == "released after drain"
    with pytest.raises(LookupError):
        book.cordon("b", 7.0)
    with pytest.raises(KeyError):
        book.cordon("zzz", 7.0)


def test_operator_intent_survives_a_restart_through_ops():
    book = NodeBook()
    book.observe([node("a"), node("b")], {}, 0.0)
    book.cordon("a", 1.0, "maintenance")
    book.drain("b", 1.0, 60, busy=1)
    again = NodeBook(book.ops())
    again.observe([node("a"), node("b")], {"b": 1}, 2.0)
    assert again.get("a").status == "cordoned" and again.get("a").cordon_reason == "maintenance"
    assert again.get("b").status == "draining" and again.get("b").drain_deadline == 61.0
    assert again.unschedulable() == {"a", "b"}
    third = NodeBook(again.ops())  # a restart after node b went away meanwhile
    third.observe([node("a")], {}, 3.0)
    assert third.unschedulable() == {"a"} and "b" not in third.ops()["draining"]


# -- the scheduler applying it ---------------------------------------------------------------------
class NodesRuntime:
    """The runtime surface node operations use: alive nodes, and removing a group."""

    def __init__(self, nodes):
        self.alive = list(nodes)
        self.removed = []

    def nodes(self):
        return [
            NodeView(
                n.node_id,
                dict(n.free),
                dict(n.total),
                dict(n.labels),
                available=dict(n.available) if n.available is not None else None,
            )
            for n in self.alive
        ]

    def node_deaths(self):
        return {}

    def group_ids(self):
        return []

    def remove_pg(self, wid):
        self.removed.append(wid)

    async def stop_task(self, wid, attempt, grace):
        return True


@pytest.fixture
def sched(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    rt = NodesRuntime([node("n1"), node("n2")])
    s = Scheduler(store, rt)
    yield s
    store.close()


def running(s, wid, node_id, gpus=4.0):
    spec = WorkloadSpec.model_validate(
        {"workload_type": "task", "function": "math:factorial", "resources": {"gpu": gpus, "cpu": 1}}
    )
    w = Workload(
        workload_id=wid, tenant_id="t", spec=spec, status=Status.RUNNING, submitted_at=0.0, started_at=1.0
    )
    s.store.insert(w, [("queued", 0.0, "submitted"), ("running", 1.0, "launched")])
    s.active[wid] = w
    s.reservations[wid] = [Held(node_id, {"CPU": 1.0, "GPU": gpus})]
    return w


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_cordon_takes_a_node_out_of_placement_and_is_persisted(sched):
    run(sched.cordon("n1", "admin", "bad fan"))
    assert [n.node_id for n in sched.schedulable_nodes()] == ["n2"]
    again = Scheduler(sched.store, sched.runtime)  # a restarted scheduler keeps the cordon
    node_ops.check_nodes(again)
    assert [n.node_id for n in again.schedulable_nodes()] == ["n2"]
    run(sched.uncordon("n1", "admin"))
    assert sorted(n.node_id for n in sched.schedulable_nodes()) == ["n1", "n2"]
    kinds = [(e["node_id"], e["outcome"]) for e in sched.store.scaling_events(kind="node")]
    assert ("n1", "cordoned") in kinds and ("n1", "ready") in kinds


def test_unknown_and_ended_nodes_and_bad_deadlines_are_refused(sched):
    with pytest.raises(NotFound):
        run(sched.cordon("nope", "admin"))
    with pytest.raises(ValidationError):
        run(sched.drain("n1", "admin", -1))
    sched.runtime.alive = [node("n2")]
    node_ops.check_nodes(sched)
    with pytest.raises(Conflict):
        run(sched.drain("n1", "admin", 10))


def test_drain_waits_for_the_deadline_then_preempts_back_to_the_queue(sched):
    async def go():
        w = running(sched, "w1", "n1")
        node_ops.check_nodes(sched)
        view = await sched.drain("n1", "admin", 30.0)
        assert view["status"] == "draining" and view["workloads"] == ["w1"]
        assert w.status == Status.RUNNING  # within the deadline the work may finish
        assert "n1" not in [n.node_id for n in sched.schedulable_nodes()]
        sched.clock = lambda: 10**10  # past the deadline
        node_ops.check_nodes(sched)
        assert w.status == Status.PREEMPTED and "drain of node n1" in w.reason
        await asyncio.sleep(0.05)  # the stop runs; the workload is requeued as a new attempt
        assert w.status == Status.QUEUED and w.attempt == 2
        node_ops.check_nodes(sched)
        assert sched.nodebook.get("n1").status == "drained"

    run(go())


def test_a_lost_node_requeues_its_work_as_a_new_attempt(sched):
    w = running(sched, "w1", "n2")
    other = running(sched, "w2", "n1")
    node_ops.check_nodes(sched)
    sched.runtime.alive = [node("n1")]  # n2 stops heartbeating
    changes = node_ops.check_nodes(sched)
    assert [(t.node_id, t.after) for t in changes] == [("n2", "lost")]
    assert w.status == Status.QUEUED and w.attempt == 2 and "node n2 lost" in w.reason
    assert other.status == Status.RUNNING
    assert sched.runtime.removed == ["w1"]
    assert w.spec.max_retries == 0  # not counted as a failure: it is queued, not failed
    health = run(sched.infrastructure_health())
    assert health["status"] == "degraded" and health["lost_last_hour"][0]["node_id"] == "n2"


def test_views_for_the_autoscaler_and_the_api(sched):
    running(sched, "w1", "n1", gpus=3.0)
    run(sched.cordon("n2", "admin"))
    avail = run(sched.resources_available())
    assert avail["gpus_free_by_type"] == {"A100": 1.0}  # n2 is cordoned: not available
    view = run(sched.autoscaler_view())
    by = {n["node_id"]: n for n in view["nodes"]}
    assert by["n1"]["running"] == 1 and by["n1"]["free"]["GPU"] == 1.0
    assert by["n2"]["state"] == "cordoned" and by["n2"]["pool"] == "gpu"
    util = run(sched.gpu_utilization())
    assert util["allocated"] == 3.0 and util["gpus"] == 8.0
    assert util["nodes"][0]["device"]["status"] == "unknown"
    run(
        sched.autoscaler_report(
            {"loop": "ok", "gpu_telemetry": {"n1": {"status": "no_device", "reason": "no NVIDIA device"}}}
        )
    )
    util = run(sched.gpu_utilization())
    assert {n["node_id"]: n["device"]["status"] for n in util["nodes"]}["n1"] == "no_device"
