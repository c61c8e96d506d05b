"""Pipeline operations, the pure parts: user vs system failures (classification, retry budgets,
counts), fail_fast, slo.max_runtime after a retry, OpenLineage events against the spec's JSON
schema, and what the metrics take from a reconcile."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest

from orion_ray.models import Workload, WorkloadSpec
from orion_ray.pipelines import engine, failures, lineage
from orion_ray.pipelines.ops_metrics import Observed
from orion_ray.pipelines.records import NodeRun
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

from .test_pipeline_engine import T0, by_id, chain, make_run, node, submitted

SCHEMA = json.loads((Path(__file__).parent / "openlineage_runevent.schema.json").read_text())


def wl(wid, status, error=None, attempt=1, result=None):
    spec = WorkloadSpec(workload_type="task", function="math:factorial")
    return Workload(
        workload_id=wid,
        tenant_id="acme",
        spec=spec,
        status=status,
        submitted_at=T0,
        error=error,
        attempt=attempt,
        result=result,
    )


# -- classification -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error,kind",
    [
        ("ValueError: boom", "user"),
        ("RuntimeError: the gate file is missing", "user"),
        ("job failed (exit code 3): Job entrypoint command failed", "user"),
        ("timed out after 5s", "user"),
        ("its workload failed", "user"),
        (None, "user"),
        ("WorkerCrashedError: the worker died", "system"),
        ("NodeDiedError: node n1 died", "system"),
        ("OwnerDiedError: owner gone", "system"),
        ("orion error: RuntimeError: placement group removed", "system"),
        ("job stopped: Job was intentionally stopped", "system"),
        ("quarantined: its stored record cannot be read back", "system"),
        ("TaskCancelledError: cancelled", "system"),
        ("executor died: ActorDiedError", "system"),
    ],
)
def test_failures_are_the_nodes_or_the_platforms(error, kind):
    assert failures.classify_error(error) == kind
    assert failures.classify(wl("w", Status.FAILED, error)) == kind


def test_bad_outputs_are_the_nodes_and_a_vanished_workload_the_platforms():
    assert failures.classify(wl("w", Status.COMPLETED, result="not a dict")) == "user"
    assert failures.classify(None) == "system"
    assert failures.restarts(wl("w", Status.FAILED, attempt=3)) == 2 and failures.restarts(None) == 0


# -- retry budgets --------------------------------------------------------------------------------
def test_a_system_failure_is_retried_without_using_an_attempt():
    run, nodes = make_run([node("a")], retry={"max_attempts": 1, "backoff_sec": 5})
    submitted(nodes[0], "w1")
    plan = engine.plan(run, nodes, {"w1": wl("w1", Status.FAILED, "NodeDiedError: gone")}, T0)
    a = by_id(plan)["a"]
    assert a.status == "pending" and a.system_failures == 1 and a.user_failures == 0
    assert "system failure" in a.reason and a.not_before == T0 + 5 and plan.status is None
    assert plan.retries == [("a", "system")]


def test_a_user_failure_uses_an_attempt():
    run, nodes = make_run([node("a")], retry={"max_attempts": 1})
    submitted(nodes[0], "w1")
    plan = engine.plan(run, nodes, {"w1": wl("w1", Status.FAILED, "ValueError: boom")}, T0)
    a = by_id(plan)["a"]
    assert a.status == "failed" and a.user_failures == 1 and plan.status == "failed"
    assert a.public()["user_failures"] == 1 and a.public()["system_failures"] == 0


def test_system_failures_have_their_own_cap():
    run, nodes = make_run([node("a")], retry={"max_attempts": 1, "max_system_failures": 2, "backoff_sec": 5})
    n = nodes[0]
    for attempt, expect in ((1, "pending"), (2, "pending"), (3, "failed")):
        submitted(n, f"w{attempt}", attempt)
        plan = engine.plan(run, [n], {f"w{attempt}": wl("x", Status.FAILED, "WorkerCrashedError: x")}, T0)
        n = by_id(plan)["a"]
        assert n.status == expect and n.system_failures == attempt
    assert n.user_failures == 0 and plan.status == "failed"


def test_user_and_system_failures_count_apart():
    run, nodes = make_run([node("a")], retry={"max_attempts": 2, "backoff_sec": 5})
    n = nodes[0]
    steps = [("NodeDiedError: x", "pending"), ("ValueError: a", "pending"), ("ValueError: b", "failed")]
    for attempt, (error, expect) in enumerate(steps, start=1):
        submitted(n, f"w{attempt}", attempt)
        n = by_id(engine.plan(run, [n], {f"w{attempt}": wl("x", Status.FAILED, error)}, T0))["a"]
        assert n.status == expect
    assert (n.user_failures, n.system_failures, n.attempt) == (2, 1, 3)


def test_restarts_inside_the_workload_are_counted_as_system_failures():
    run, nodes = make_run([node("a")])
    submitted(nodes[0], "w1")
    plan = engine.plan(run, nodes, {"w1": wl("w1", Status.COMPLETED, attempt=3, result=1)}, T0)
    a = by_id(plan)["a"]
    assert a.status == "succeeded" and a.system_failures == 2 and a.user_failures == 0


def test_a_vanished_workload_is_not_run_again():
    run, nodes = make_run([node("a")], retry={"max_attempts": 3})
    submitted(nodes[0], "gone")
    a = by_id(engine.plan(run, nodes, {"gone": None}, T0))["a"]
    assert a.status == "failed" and a.system_failures == 1


def test_the_budget_counts_from_the_last_retry_of_the_run():
    run, nodes = make_run([node("a")], retry={"max_attempts": 1})
    n = submitted(nodes[0], "w2", attempt=2)
    n.user_failures, n.user_base, n.attempt_base = 1, 1, 1  # attempt 1 failed before the retry
    plan = engine.plan(run, [n], {"w2": wl("w2", Status.FAILED, "ValueError: again")}, T0)
    assert by_id(plan)["a"].status == "failed" and by_id(plan)["a"].user_failures == 2
    n.user_base = 0  # without the base, the same node would have been out of attempts before
    assert n.user_failures - n.user_base >= 1


# -- fail_fast ------------------------------------------------------------------------------------
def _branches(**slo):
    return make_run([node("a"), node("b"), node("c"), node("d")], [("a", "d")], **slo)


def test_fail_fast_cancels_running_nodes_and_skips_pending_ones():
    run, nodes = _branches(fail_fast=True)
    submitted(nodes[0], "wa")
    submitted(nodes[1], "wb")
    plan = engine.plan(
        run, nodes, {"wa": wl("wa", Status.FAILED, "ValueError: x"), "wb": wl("wb", Status.RUNNING)}, T0
    )
    got = by_id(plan)
    assert got["a"].status == "failed" and plan.cancels == ["wb"] and not plan.launches
    assert got["c"].status == "skipped" and got["d"].status == "skipped"
    assert "fail_fast: node a failed" in got["c"].error and plan.status is None
    nodes = [got["a"], submitted(NodeRun("b"), "wb"), got["c"], got["d"]]
    end = engine.plan(run, nodes, {"wb": wl("wb", Status.CANCELLED)}, T0 + 1)
    assert by_id(end)["b"].status == "cancelled" and end.status == "failed"
    assert end.error == "fail_fast: node a failed"


def test_without_fail_fast_independent_branches_go_on():
    run, nodes = _branches()
    submitted(nodes[0], "wa")
    plan = engine.plan(run, nodes, {"wa": wl("wa", Status.FAILED, "ValueError: x")}, T0)
    assert [n.node_id for n, _ in plan.launches] == ["b", "c"] and by_id(plan)["d"].status == "skipped"


def test_runtime_params_fail_fast_overrides_the_spec():
    run, nodes = _branches(fail_fast=True)
    run.body["runtime_params"] = {"fail_fast": False}
    run._parsed = None
    assert not failures.fail_fast_of(run.submission)
    run.body["runtime_params"] = {"fail_fast": True}
    run.body["dag_spec"]["slo"]["fail_fast"] = False
    run._parsed = None
    assert failures.fail_fast_of(run.submission)


def test_a_retry_being_waited_for_is_skipped_by_fail_fast():
    run, nodes = make_run([node("a"), node("b", retry={"max_attempts": 3})], fail_fast=True)
    submitted(nodes[0], "wa")
    submitted(nodes[1], "wb")
    errs = {"wa": wl("wa", Status.FAILED, "ValueError: x"), "wb": wl("wb", Status.FAILED, "ValueError: y")}
    plan = engine.plan(run, nodes, errs, T0)
    assert by_id(plan)["b"].status == "skipped" and plan.retries == [] and plan.status == "failed"


# -- slo.max_runtime ------------------------------------------------------------------------------
def test_max_runtime_stops_the_run_and_counts_from_a_retry():
    run, nodes = chain()
    run.body["dag_spec"]["slo"]["max_runtime"] = 60
    run._parsed = None
    submitted(nodes[0], "wa")
    late = engine.plan(run, nodes, {"wa": wl("wa", Status.RUNNING)}, T0 + 61)
    assert late.cancels == ["wa"] and by_id(late)["b"].status == "cancelled"
    run.retried_at = T0 + 50
    assert engine.plan(run, nodes, {"wa": wl("wa", Status.RUNNING)}, T0 + 61).idle


# -- lineage --------------------------------------------------------------------------------------
def _done_chain(last="succeeded"):
    run, nodes = chain()
    a, b, c = nodes
    a.status, a.started_at, a.finished_at, a.attempt = "succeeded", T0 + 1, T0 + 2, 1
    b.status, b.started_at, b.finished_at, b.attempt = last, T0 + 2, T0 + 3, 1
    c.status, c.finished_at = ("skipped", T0 + 3) if last != "succeeded" else ("succeeded", T0 + 5)
    if last == "succeeded":
        c.started_at, c.attempt = T0 + 4, 1
    run.status, run.finished_at = ("succeeded" if last == "succeeded" else "failed"), T0 + 6
    return run, nodes


def _valid(events):
    for e in events:
        jsonschema.validate(e, SCHEMA)
        datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00"))
        uuid.UUID(e["run"]["runId"])


def test_lineage_has_a_start_and_an_end_per_node_and_for_the_run():
    run, nodes = _done_chain()
    events = lineage.events(run, nodes)
    _valid(events)
    pairs = [(e["job"]["name"], e["eventType"]) for e in events]
    assert pairs == [
        ("p", "START"),
        ("p.a", "START"),
        ("p.a", "COMPLETE"),
        ("p.b", "START"),
        ("p.b", "COMPLETE"),
        ("p.c", "START"),
        ("p.c", "COMPLETE"),
        ("p", "COMPLETE"),
    ]
    b = [e for e in events if e["job"]["name"] == "p.b"][1]
    assert b["inputs"] == [{"namespace": f"orion://acme/{run.submission_id}", "name": "x"}]
    assert b["outputs"] == [{"namespace": f"orion://acme/{run.submission_id}", "name": "y"}]
    parent = b["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == events[0]["run"]["runId"] and parent["job"] == {
        "namespace": "orion://acme",
        "name": "p",
    }
    assert len({e["run"]["runId"] for e in events}) == 4  # the run and three nodes
    assert lineage.events(run, nodes) == events  # the same run gives the same ids


def test_lineage_of_a_failed_run_has_fail_and_no_events_for_skipped_nodes():
    run, nodes = _done_chain(last="failed")
    body = lineage.lineage_body(run, nodes)
    _valid(body["events"])
    kinds = [(e["job"]["name"], e["eventType"]) for e in body["events"]]
    assert ("p.b", "FAIL") in kinds and ("p", "FAIL") in kinds and not any(n == "p.c" for n, _ in kinds)
    assert (
        body["skipped"] == ["c"]
        and [e for e in body["events"] if e["eventType"] == "FAIL"][0]["outputs"] == []
    )


def test_lineage_of_a_cancelled_run_aborts_and_a_running_one_only_starts():
    run, nodes = chain()
    nodes[0].status, nodes[0].started_at = "submitted", T0 + 1
    running = lineage.events(run, nodes)
    assert [e["eventType"] for e in running] == ["START", "START"]
    nodes[0].status, nodes[0].finished_at = "cancelled", T0 + 2
    run.status, run.finished_at = "cancelled", T0 + 2
    events = lineage.events(run, nodes)
    _valid(events)
    assert [e["eventType"] for e in events][-2:] == ["ABORT", "ABORT"]


def test_the_schema_catches_a_bad_event():
    run, nodes = _done_chain()
    bad = lineage.events(run, nodes)[0]
    del bad["job"]["namespace"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


# -- metrics, schema ------------------------------------------------------------------------------
def test_observed_takes_retries_and_node_durations():
    run, nodes = make_run([node("a"), node("b")], retry={"max_attempts": 2})
    submitted(nodes[0], "wa").started_at = T0 - 4
    submitted(nodes[1], "wb").started_at = T0 - 2
    plan = engine.plan(
        run,
        nodes,
        {"wa": wl("wa", Status.FAILED, "ValueError: x"), "wb": wl("wb", Status.COMPLETED, result=1)},
        T0,
    )
    seen = Observed()
    seen.add(run, plan)
    retries, durations = seen.drain()
    assert retries == {"user": 1} and durations == [("succeeded", 2.0)]
    assert seen.drain() == ({}, [])


def test_schema_8_adds_the_counts_to_an_older_file(tmp_path):
    path = str(tmp_path / "old.db")
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    cols = {r[1] for r in db.execute("PRAGMA table_info(node_runs)")}
    run_cols = {r[1] for r in db.execute("PRAGMA table_info(pipeline_runs)")}
    db.close()
    assert {"user_failures", "system_failures", "attempt_base", "user_base"} <= cols
    assert {"retries", "retried_at"} <= run_cols
