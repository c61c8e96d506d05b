"""The pipeline controller over a real SQLite store (no Ray): runs and node runs stored, each node
an ordinary workload with ``request_id`` ``submission/node/attempt``, and a controller that
crashes and restarts (a new one on the same file) loses nothing and submits nothing twice."""

import pytest

from orion_ray.errors import Conflict
from orion_ray.pipelines import runs_store as runs
from orion_ray.pipelines.controller import PipelineController
from orion_ray.pipelines.intake import accept
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from tests.unit.pipeline_support import T0, Clock

HELPERS = "tests.pipelines.nodes"


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def three_nodes(**runtime):
    return {
        "dag_spec": {
            "version": 1,
            "pipeline_id": "bt",
            "slo": {"retry": {"max_attempts": 2, "backoff_sec": 0}},
            "nodes": [
                {"id": "fetch_data", "kind": "python_task", "params": {"rows": 3}, "outs": ["dataset_uri"]},
                {
                    "id": "compute_features",
                    "kind": "python_task",
                    "env": {"FEATURE_VIEW": "xs_v2"},
                    "ins": ["dataset_uri"],
                    "outs": ["feature_table"],
                },
                {
                    "id": "train_model",
                    "kind": "ray_job",
                    "params": {"epochs": 30},
                    "ins": ["feature_table"],
                    "outs": ["model_uri"],
                },
            ],
            "edges": [
                {"from": "fetch_data", "to": "compute_features"},
                {"from": "compute_features", "to": "train_model"},
            ],
        },
        "refs": {n: f"{HELPERS}:{n}" for n in ("fetch_data", "compute_features", "train_model")},
        "runtime_params": runtime,
    }


def submit(store, body, tenant="acme"):
    run, ids = accept(body, tenant_id=tenant, now=T0)
    return runs.create_run(store, run, ids, who=tenant)[0]


def finish(store, workload_id, status, result=None, error=None):
    """What the scheduler would do when the workload ends."""
    w = store.get(workload_id)
    w.status, w.result, w.error = status, result, error
    store.update(w, (status.value, T0, ""))


def node_rows(store, run):
    return {n.node_id: n for n in runs.node_runs(store, run.run_id)}


def test_a_run_goes_end_to_end_passing_values(store):
    clock = Clock()
    ctl = PipelineController(store, clock=clock)
    run = submit(store, three_nodes(submission_id="s1", labels={"team": "xs"}))
    assert ctl.tick() == []
    fetch = node_rows(store, run)["fetch_data"]
    assert (fetch.status, fetch.attempt) == ("submitted", 1)
    w = store.get(fetch.workload_id)
    assert w.spec.metadata.request_id == "s1/fetch_data/1" and w.tenant_id == "acme"
    assert w.spec.kwargs == {"rows": 3} and w.spec.function == f"{HELPERS}:fetch_data"
    assert (
        w.spec.metadata.labels["orion.pipeline.node"] == "fetch_data"
        and w.spec.metadata.labels["team"] == "xs"
    )
    assert w.status == Status.QUEUED  # an ordinary queued workload: the scheduler takes it in by seq
    finish(store, w.workload_id, Status.COMPLETED, {"dataset_uri": "file:///d"})
    ctl.tick()
    features = store.get(node_rows(store, run)["compute_features"].workload_id)
    assert features.spec.kwargs == {"dataset_uri": "file:///d"}
    assert features.spec.runtime_env == {"env_vars": {"FEATURE_VIEW": "xs_v2"}}
    finish(store, features.workload_id, Status.COMPLETED, {"feature_table": "t1"})
    ctl.tick()
    train = store.get(node_rows(store, run)["train_model"].workload_id)
    assert train.spec.kwargs == {"epochs": 30, "feature_table": "t1"}
    finish(store, train.workload_id, Status.COMPLETED, {"model_uri": "s3://m"})
    ctl.tick()
    done = runs.get_run(store, run.run_id)
    assert done.status == "succeeded"
    status = done.public(runs.node_runs(store, run.run_id))
    assert [n["state"] for n in status["nodes"]] == ["succeeded"] * 3
    assert status["nodes"][2]["outputs"] == ["model_uri"]
    assert runs.active_runs(store) == []


def test_a_restarted_controller_submits_nothing_twice(store, tmp_path):
    run = submit(store, three_nodes(submission_id="s2"))
    PipelineController(store, clock=Clock()).tick()
    first = node_rows(store, run)["fetch_data"].workload_id
    other = SQLiteStore(str(tmp_path / "orion.db"))  # a new controller process on the same file
    try:
        for _ in range(3):
            PipelineController(other, clock=Clock()).tick()
        assert node_rows(other, run)["fetch_data"].workload_id == first
        assert len(other.list(limit=100)) == 1
    finally:
        other.close()


def test_a_launch_already_in_the_store_is_adopted_not_repeated(store):
    """A crash after a workload was written but before its node row was (cannot happen: one
    transaction), or two controllers at once: the request_id finds the first workload."""
    run = submit(store, three_nodes(submission_id="s3"))
    clock = Clock()
    ctl = PipelineController(store, clock=clock)
    stale = runs.get_run(store, run.run_id)
    ctl.tick()
    ctl.reconcile(stale)  # planned again from an older view of the nodes
    assert len(store.list(limit=100)) == 1


def test_a_failed_node_is_retried_as_a_new_workload_then_succeeds(store):
    run = submit(store, three_nodes(submission_id="s4"))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    w1 = node_rows(store, run)["fetch_data"].workload_id
    finish(store, w1, Status.FAILED, error="network")
    ctl.tick()
    fetch = node_rows(store, run)["fetch_data"]
    assert fetch.attempt == 2 and fetch.workload_id != w1
    assert store.get(fetch.workload_id).spec.metadata.request_id == "s4/fetch_data/2"


def test_a_full_queue_leaves_the_node_pending_with_the_reason(store):
    run = submit(store, three_nodes(submission_id="s5"))
    ctl = PipelineController(store, clock=Clock(), max_queue_size=0)
    ctl.tick()
    fetch = node_rows(store, run)["fetch_data"]
    assert (fetch.status, fetch.attempt, fetch.workload_id) == ("pending", 0, None)
    assert "queue is full" in fetch.reason
    PipelineController(store, clock=Clock()).tick()
    assert node_rows(store, run)["fetch_data"].status == "submitted"


def test_cancel_stops_the_running_node_and_ends_the_run(store):
    run = submit(store, three_nodes(submission_id="s6"))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    wid = node_rows(store, run)["fetch_data"].workload_id
    runs.request_cancel(store, runs.get_run(store, run.run_id), who="acme", now=T0)
    assert ctl.tick() == [wid]
    assert ctl.tick() == [wid]  # asked again until it is done (a lost cancel costs one tick)
    finish(store, wid, Status.CANCELLED, error="cancelled by user")
    ctl.tick()
    assert runs.get_run(store, run.run_id).status == "cancelled"
    assert {n.status for n in node_rows(store, run).values()} == {"cancelled"}


def test_submission_ids_are_idempotent_per_tenant(store):
    body = three_nodes(submission_id="same")
    first = submit(store, body)
    again, created = runs.create_run(store, *accept(body, tenant_id="acme", now=T0)[:1], [], who="acme")
    assert not created and again.run_id == first.run_id
    with pytest.raises(Conflict):
        other = three_nodes(submission_id="same", labels={"x": "y"})
        run, ids = accept(other, tenant_id="acme", now=T0)
        runs.create_run(store, run, ids, who="acme")
    theirs = submit(store, body, tenant="bob")  # another tenant's id space
    assert theirs.run_id != first.run_id
    assert runs.find_run(store, "same", "acme").run_id == first.run_id
    assert runs.find_run(store, "same", "bob").run_id == theirs.run_id
    assert runs.find_run(store, "same", "carol") is None


def test_the_stored_body_reads_back_as_the_same_submission(store):
    run = submit(store, three_nodes(submission_id="s7"))
    back = runs.get_run(store, run.run_id)
    assert back.submission == run.submission


class Counting(PipelineController):
    """Counts which runs each tick reconciles."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen: list[str] = []

    def reconcile(self, run, **kw):
        self.seen.append(run.submission_id)
        return super().reconcile(run, **kw)


def test_a_tick_reconciles_only_runs_that_moved_and_sweeps_the_rest(store):
    clock = Clock()
    ctl = Counting(store, clock=clock, sweep_s=2.0)
    a, b = submit(store, three_nodes(submission_id="a")), submit(store, three_nodes(submission_id="b"))
    ctl.tick()  # the first tick sweeps everything
    ctl.tick()  # what the first launched is looked at once more
    ctl.seen.clear()
    ctl.tick()
    assert ctl.seen == []  # both running, nothing moved: no work between sweeps
    finish(store, node_rows(store, a)["fetch_data"].workload_id, Status.COMPLETED, {"dataset_uri": "u"})
    ctl.tick()
    assert ctl.seen == ["a"]  # its workload's transition, not b
    assert node_rows(store, a)["compute_features"].status == "submitted"
    ctl.seen.clear()
    clock.now += 2.0
    ctl.tick()
    assert sorted(ctl.seen) == ["a", "b"]  # the sweep: every unfinished run, changed or not
    assert node_rows(store, b)["fetch_data"].status == "submitted"


def test_a_change_without_a_transition_is_caught_by_the_sweep(store):
    clock = Clock()
    ctl = PipelineController(store, clock=clock, sweep_s=2.0)
    run = submit(store, three_nodes(submission_id="quiet"))
    ctl.tick()
    ctl.tick()  # the look again after a launch
    wid = node_rows(store, run)["fetch_data"].workload_id
    w = store.get(wid)
    w.status, w.result = Status.COMPLETED, {"dataset_uri": "u"}
    store.update(w, None)  # no transition row: the feed cannot see it
    ctl.tick()
    assert node_rows(store, run)["fetch_data"].status == "submitted"
    clock.now += 2.0
    ctl.tick()
    assert node_rows(store, run)["fetch_data"].status == "succeeded"


def test_a_backoff_end_brings_the_run_back_without_a_transition(store):
    clock = Clock()
    ctl = PipelineController(store, clock=clock, sweep_s=3600)
    body = three_nodes(submission_id="retry")
    body["dag_spec"]["slo"]["retry"]["backoff_sec"] = 30
    run = submit(store, body)
    ctl.tick()
    finish(store, node_rows(store, run)["fetch_data"].workload_id, Status.FAILED, error="flaky")
    ctl.tick()
    assert node_rows(store, run)["fetch_data"].status == "pending" and ctl.next_due == T0 + 30
    clock.now += 29
    ctl.tick()
    assert node_rows(store, run)["fetch_data"].status == "pending"
    clock.now += 1
    ctl.tick()
    assert node_rows(store, run)["fetch_data"].attempt == 2
