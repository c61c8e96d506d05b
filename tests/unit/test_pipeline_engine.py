"""The pipeline engine (pure): what a reconcile decides for a snapshot of a run, its nodes and
their workloads."""

from orion_ray.models import Workload, WorkloadSpec
from orion_ray.pipelines import engine
from orion_ray.pipelines.intake import accept
from orion_ray.pipelines.records import CANCELLING, NodeRun
from orion_ray.status import Status

T0 = 1_000_000.0


def node(node_id, **fields):
    return {"id": node_id, "kind": "python_task", "params": {"function": "math:factorial"}, **fields}


def make_run(nodes, edges=(), **slo):
    body = {
        "dag_spec": {
            "version": 1,
            "pipeline_id": "p",
            "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in edges],
            "slo": slo,
        }
    }
    run, ids = accept(body, tenant_id="acme", now=T0)
    return run, [NodeRun(i) for i in ids]


def wl(wid, status, result=None, error=None):
    spec = WorkloadSpec(workload_type="task", function="math:factorial")
    return Workload(
        workload_id=wid,
        tenant_id="acme",
        spec=spec,
        status=status,
        submitted_at=T0,
        result=result,
        error=error,
    )


def by_id(plan):
    return {n.node_id: n for n in plan.changed} | {n.node_id: n for n, _ in plan.launches}


def chain():
    return make_run(
        [node("a", outs=["x"]), node("b", ins=["x"], outs=["y"]), node("c", ins=["y"])],
        [("a", "b"), ("b", "c")],
    )


def submitted(n, wid, attempt=1):
    n.status, n.workload_id, n.attempt = "submitted", wid, attempt
    return n


def test_the_roots_are_launched_first():
    run, nodes = chain()
    plan = engine.plan(run, nodes, {}, T0)
    assert [(n.node_id, n.attempt, inputs) for n, inputs in plan.launches] == [("a", 1, {})]
    assert plan.status is None and nodes[0].status == "pending"  # the snapshot is not mutated


def test_outputs_flow_to_the_next_node_as_named_inputs():
    run, nodes = chain()
    submitted(nodes[0], "w-a")
    plan = engine.plan(run, nodes, {"w-a": wl("w-a", Status.COMPLETED, {"x": 42, "extra": 1})}, T0 + 1)
    got = by_id(plan)
    assert got["a"].status == "succeeded" and got["a"].outputs == {"x": 42}  # only the declared outs
    assert [(n.node_id, inputs) for n, inputs in plan.launches] == [("b", {"x": 42})]


def test_a_running_workload_changes_nothing():
    run, nodes = chain()
    submitted(nodes[0], "w-a")
    assert engine.plan(run, nodes, {"w-a": wl("w-a", Status.RUNNING)}, T0 + 1).idle


def test_the_run_succeeds_when_every_node_did():
    run, nodes = chain()
    for n, out in zip(nodes, [{"x": 1}, {"y": 2}, {}]):
        n.status, n.outputs = "succeeded", out
    assert engine.plan(run, nodes, {}, T0).status == "succeeded"


def test_a_failure_is_retried_after_the_backoff_then_fails_the_node_and_skips_downstream():
    run, nodes = make_run(
        [node("a", outs=["x"]), node("b", ins=["x"])],
        [("a", "b")],
        retry={"max_attempts": 2, "backoff_sec": 30},
    )
    submitted(nodes[0], "w1")
    plan = engine.plan(run, nodes, {"w1": wl("w1", Status.FAILED, error="boom")}, T0)
    a = by_id(plan)["a"]
    assert (a.status, a.not_before, a.workload_id) == ("pending", T0 + 30, None)
    assert "boom" in a.error and "attempt 2 of 2" in a.reason and not plan.launches
    nodes[0] = a
    assert engine.plan(run, nodes, {}, T0 + 10).next_due == T0 + 30
    relaunch = engine.plan(run, nodes, {}, T0 + 30)
    assert [(n.node_id, n.attempt) for n, _ in relaunch.launches] == [("a", 2)]
    nodes[0] = submitted(relaunch.launches[0][0], "w2", attempt=2)
    final = engine.plan(run, nodes, {"w2": wl("w2", Status.FAILED, error="boom again")}, T0 + 40)
    got = by_id(final)
    assert got["a"].status == "failed" and "attempt 2: boom again" in got["a"].error
    assert got["b"].status == "skipped" and "a" in got["b"].error
    assert final.status == "failed" and "a, b" in final.error


def test_a_node_retry_overrides_the_slo():
    run, nodes = make_run([node("a", retry={"max_attempts": 3})], retry={"max_attempts": 1})
    submitted(nodes[0], "w1")
    plan = engine.plan(run, nodes, {"w1": wl("w1", Status.FAILED)}, T0)
    assert [(n.node_id, n.attempt) for n, _ in plan.launches] == [("a", 2)]


def test_missing_or_oversized_outputs_fail_the_attempt():
    run, nodes = make_run([node("a", outs=["x", "y"])])
    submitted(nodes[0], "w1")
    plan = engine.plan(run, nodes, {"w1": wl("w1", Status.COMPLETED, {"x": 1})}, T0)
    assert by_id(plan)["a"].status == "failed" and "lacks the output(s) y" in by_id(plan)["a"].error
    plan = engine.plan(run, nodes, {"w1": wl("w1", Status.COMPLETED, "not a dict")}, T0)
    assert "must return a dict" in by_id(plan)["a"].error
    big = {"x": "z" * 70_000, "y": 1}
    assert (
        "inline limit"
        in by_id(engine.plan(run, nodes, {"w1": wl("w1", Status.COMPLETED, big)}, T0))["a"].error
    )


def test_a_vanished_workload_is_a_failed_attempt():
    run, nodes = make_run([node("a")])
    submitted(nodes[0], "gone")
    plan = engine.plan(run, nodes, {"gone": None}, T0)
    assert "gone from the store" in by_id(plan)["a"].error and plan.status == "failed"


def test_independent_branches_go_on_after_a_failure():
    run, nodes = make_run([node("a"), node("b"), node("c")], [("a", "c")])
    submitted(nodes[0], "wa")
    plan = engine.plan(run, nodes, {"wa": wl("wa", Status.FAILED)}, T0)
    got = by_id(plan)
    assert got["c"].status == "skipped"
    assert [n.node_id for n, _ in plan.launches] == ["b"] and plan.status is None


def test_a_cancel_stops_running_nodes_then_ends_the_run():
    run, nodes = chain()
    submitted(nodes[0], "w-a")
    run.status = CANCELLING
    plan = engine.plan(run, nodes, {"w-a": wl("w-a", Status.RUNNING)}, T0)
    assert plan.cancels == ["w-a"] and plan.status is None
    assert {n.node_id: n.status for n in plan.changed} == {"b": "cancelled", "c": "cancelled"}
    nodes = [nodes[0]] + plan.changed
    done = engine.plan(run, nodes, {"w-a": wl("w-a", Status.CANCELLED)}, T0 + 1)
    assert by_id(done)["a"].status == "cancelled" and done.status == "cancelled"


def test_max_runtime_stops_the_run_and_fails_it():
    run, nodes = make_run([node("a"), node("b")], [("a", "b")], max_runtime="1m")
    submitted(nodes[0], "w-a")
    assert engine.plan(run, nodes, {"w-a": wl("w-a", Status.RUNNING)}, T0 + 59).idle
    plan = engine.plan(run, nodes, {"w-a": wl("w-a", Status.RUNNING)}, T0 + 60)
    assert plan.cancels == ["w-a"]
    done = engine.plan(run, [nodes[0]] + plan.changed, {"w-a": wl("w-a", Status.CANCELLED)}, T0 + 61)
    assert done.status == "failed" and "max_runtime" in done.error


def test_planning_twice_asks_for_the_same_thing():
    run, nodes = chain()
    first, second = engine.plan(run, nodes, {}, T0), engine.plan(run, nodes, {}, T0)
    assert [(n.node_id, n.attempt) for n, _ in first.launches] == [
        (n.node_id, n.attempt) for n, _ in second.launches
    ]


def test_a_diamond_waits_for_both_parents():
    run, nodes = make_run(
        [node("a", outs=["x"]), node("b", outs=["y"]), node("c", ins=["x", "y"])], [("a", "c"), ("b", "c")]
    )
    nodes[0].status, nodes[0].outputs = "succeeded", {"x": 1}
    submitted(nodes[1], "wb")
    assert not engine.plan(run, nodes, {"wb": wl("wb", Status.RUNNING)}, T0).launches
    plan = engine.plan(run, nodes, {"wb": wl("wb", Status.COMPLETED, {"y": 2})}, T0)
    assert [(n.node_id, inputs) for n, inputs in plan.launches] == [("c", {"x": 1, "y": 2})]
