"""The pipeline controller's work per reconcile, counted in SQL statements (never time): between
sweeps a reconcile reads what moved, not the whole run, so a longer run costs no more statements
per completed node; the rows it keeps are read again on a sweep, on ``touch`` and after a failed
commit. Also the controller's batched reads (``snapshot``), its counters on ``/health``, and the
``pipelines`` benchmark's DAG builders and in-process measure."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from benchmarks import _pipeline_dags as dags
from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.config import SchedulerConfig
from orion_ray.pipelines import runs_store as runs
from orion_ray.pipelines import snapshot
from orion_ray.pipelines.controller import PipelineController
from orion_ray.pipelines.intake import accept
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from tests.unit.pipeline_support import T0, Clock


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def submit(store, spec, sid="s"):
    run, ids = accept({"dag_spec": spec, "runtime_params": {"submission_id": sid}}, tenant_id="acme", now=T0)
    return runs.create_run(store, run, ids, who="acme")[0]


def complete_queued(store, result=None):
    """What the scheduler does when node workloads end: status, result, one transition each."""
    done = []
    for w in store.list(status=Status.QUEUED.value, limit=10_000):
        w.status, w.result = (
            Status.COMPLETED,
            result if result is not None else {f"o_{w.spec.kwargs['out'][2:]}": 1},
        )
        done.append((w, (Status.COMPLETED.value, T0, "")))
    store.update_many(done)
    return len(done)


class Statements:
    """Counts the SQL statements the store's connection runs (its trace callback)."""

    def __init__(self, store):
        self.n = 0
        store._db.set_trace_callback(self._count)

    def _count(self, _sql):
        self.n += 1

    def during(self, fn):
        before = self.n
        fn()
        return self.n - before


def statements_per_step(store, n):
    """Statements of the controller's ticks for one completed node of an ``n``-node chain, once
    the run is under way (after the first sweep)."""
    submit(store, dags.chain_spec(n))
    ctl = PipelineController(store, clock=Clock(), sweep_s=3600)
    ctl.tick()  # the first tick sweeps: reads the whole run
    ctl.tick()  # the look again after a launch
    counter = Statements(store)
    counts = []
    for _ in range(3):
        assert complete_queued(store) == 1
        counts.append(counter.during(lambda: (ctl.tick(), ctl.tick())))
    store._db.set_trace_callback(None)
    return counts


def test_a_reconcile_costs_the_same_statements_whatever_the_size_of_the_run(tmp_path):
    small, big = SQLiteStore(str(tmp_path / "a.db")), SQLiteStore(str(tmp_path / "b.db"))
    try:
        per_small, per_big = statements_per_step(small, 10), statements_per_step(big, 400)
    finally:
        small.close()
        big.close()
    assert per_small == per_big  # not O(nodes): a regression to re-reading every node fails here
    assert max(per_big) <= 40  # feed, run row, changed workloads, one commit with its launch


def test_the_nodes_of_a_run_are_read_only_on_a_sweep(store):
    run = submit(store, dags.dag_spec(5, 4))
    clock = Clock()
    ctl = PipelineController(store, clock=clock, sweep_s=2.0)
    reads = []
    real = runs.node_runs

    def counting(s, run_id):
        reads.append(run_id)
        return real(s, run_id)

    runs.node_runs, saved = counting, runs.node_runs
    try:
        ctl.tick()
        for _ in range(3):
            complete_queued(store)
            ctl.tick()
            ctl.tick()
        assert reads == [run.run_id]  # the first sweep only
        clock.now += 2.0
        ctl.tick()
        assert reads == [run.run_id] * 2  # level-triggered: each sweep reads the store again
    finally:
        runs.node_runs = saved


def test_touch_forgets_the_kept_rows_so_a_write_elsewhere_is_seen(store):
    run = submit(store, dags.chain_spec(3))
    ctl = PipelineController(store, clock=Clock(), sweep_s=3600)
    ctl.tick()
    first = runs.node_runs(store, run.run_id)[0]
    w = store.get(first.workload_id)
    # another writer (a retry route, say) resets the node to pending behind the controller
    with store._lock, store._tx():
        store._db.execute(
            "UPDATE node_runs SET status='pending', attempt=0, workload_id=NULL WHERE run_id=? AND node_id=?",
            (run.run_id, first.node_id),
        )
    ctl.touch(run.run_id)
    ctl.tick()
    again = runs.node_runs(store, run.run_id)[0]
    assert again.status == "submitted" and again.workload_id == w.workload_id  # request_id: adopted
    assert len(store.list(limit=100)) == 1


def test_a_failed_commit_forgets_the_kept_rows(store, monkeypatch):
    run = submit(store, dags.chain_spec(3))
    ctl = PipelineController(store, clock=Clock(), sweep_s=3600)
    ctl.tick()
    complete_queued(store)

    def broken(*a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runs, "commit_reconcile", broken)
    ctl.tick()  # logged, not raised
    assert run.run_id not in ctl._nodes
    monkeypatch.undo()
    ctl.tick()
    nodes = runs.node_runs(store, run.run_id)
    assert [n.status for n in nodes] == ["succeeded", "submitted", "pending"]


def test_a_chain_and_a_layered_dag_run_to_the_end_with_two_transitions_a_node():
    for spec, n in ((dags.chain_spec(30), 30), (dags.dag_spec(6, 4), 24)):
        got = dags.inprocess(spec)
        assert got["state"] == "succeeded"
        assert got["transitions"] == 2 * n  # launched, then succeeded: nothing twice
        assert got["controller_s"] > 0 and got["reconciles"] >= 1


# -- snapshot ------------------------------------------------------------------------------------------
def test_workload_states_reads_many_at_once_and_missing_ones_are_none(store):
    submit(store, dags.chain_spec(2))
    PipelineController(store, clock=Clock()).tick()
    (w,) = store.list(limit=10)
    got = snapshot.workload_states(store, [w.workload_id, "wl-nope"])
    assert got["wl-nope"] is None
    assert got[w.workload_id] == snapshot.WorkloadState(Status.QUEUED)
    w.status, w.result, w.error = Status.FAILED, {"x": 1}, "boom"
    store.update(w, (Status.FAILED.value, T0, ""))
    assert snapshot.workload_states(store, [w.workload_id])[w.workload_id] == snapshot.WorkloadState(
        Status.FAILED, {"x": 1}, "boom"
    )


def test_an_unreadable_workload_row_reads_as_gone(store):
    submit(store, dags.chain_spec(2))
    PipelineController(store, clock=Clock()).tick()
    (w,) = store.list(limit=10)
    with store._lock, store._tx():
        store._db.execute("UPDATE workloads SET status='???' WHERE workload_id=?", (w.workload_id,))
    assert snapshot.workload_states(store, [w.workload_id]) == {w.workload_id: None}


def test_workload_states_reads_in_chunks(store, monkeypatch):
    monkeypatch.setattr(snapshot, "CHUNK", 2)
    submit(store, dags.dag_spec(5, 1))
    PipelineController(store, clock=Clock()).tick()
    ids = [w.workload_id for w in store.list(limit=10)]
    got = snapshot.workload_states(store, ids)
    assert len(ids) == 5 and all(got[i] == snapshot.WorkloadState(Status.QUEUED) for i in ids)


def test_changes_since_names_the_moved_workloads_of_unfinished_runs(store):
    run = submit(store, dags.dag_spec(3, 1))
    PipelineController(store, clock=Clock()).tick()
    head = store.last_transition_id()
    assert snapshot.changes_since(store, head) == {}
    w = store.list(limit=10)[0]
    w.status = Status.RUNNING
    store.update(w, (Status.RUNNING.value, T0, ""))
    assert snapshot.changes_since(store, head) == {run.run_id: {w.workload_id}}


def test_a_run_read_without_its_body(store):
    run = submit(store, dags.chain_spec(2))
    light = runs.get_run(store, run.run_id, body=False)
    assert light.body == {} and light.status == "running" and light.submission_id == "s"
    assert runs.active_runs(store, body=False)[0].body == {}
    assert runs.get_run(store, run.run_id).body == run.body


# -- /health -------------------------------------------------------------------------------------------
def test_health_shows_the_controllers_counters(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    sched = Scheduler(store, runtime=FakeRuntime(), config=SchedulerConfig())
    client = TestClient(build_app(KeyRing([hash_key("admin-key")], {}), backend=sched))
    try:
        submit(store, dags.chain_spec(2))
        sched.pipelines.controller.tick()
        got = client.get("/health").json()["pipelines"]
        assert got["transitions"] == 1 and got["reconciles"] == 1 and got["busy_s"] >= 0
    finally:
        client.close()
        store.close()


# -- the benchmark's workloads -------------------------------------------------------------------------
def test_the_layered_dag_is_deterministic_with_one_to_three_upstream_nodes():
    a, b = dags.layers(50, 20), dags.layers(50, 20)
    assert a == b and sum(len(row) for row in a) == 1000
    assert all(not ups for _, ups in a[0])
    assert all(1 <= len(ups) <= 3 for row in a[1:] for _, ups in row)
    assert dags.layers(50, 20, seed=8) != a


def test_the_dag_spec_is_a_valid_pipeline_and_its_values_add_up():
    run, ids = accept({"dag_spec": dags.dag_spec()}, tenant_id="acme", now=T0)
    assert len(ids) == 1000
    sinks = dags.expected_sinks(2, 2, seed=1)
    ups = dict(dags.layers(2, 2, seed=1)[1])
    assert sinks == {nid: 1 + len(ups[nid]) for nid in ups}


def test_the_node_function_takes_values_or_ray_result_dicts():
    from benchmarks._pipeline_tasks import item, marked_node, node

    assert node(out="o") == {"o": 1}
    assert node(out="o", o_a=2, o_b=3) == {"o": 6}
    assert node(out="o", o_a={"o_a": 2}) == {"o": 3}  # plain Ray passes the upstream dict
    assert item(item=7) == {"value": 7}
    assert marked_node(out="o", o_a=1) == {"o": 2}


def test_the_map_spec_is_built_for_the_map_kind_or_skipped():
    spec = dags.map_spec(3)
    assert spec["nodes"][0]["kind"] == "map" and spec["nodes"][0]["map"]["with_items"] == [0, 1, 2]
    if dags.map_supported():
        accept({"dag_spec": spec}, tenant_id="acme", now=T0)
    else:
        assert json.dumps(spec)  # the harness notes the map as skipped


def test_a_node_workload_admitted_or_started_plans_nothing_but_one_that_ended_does(store, monkeypatch):
    from orion_ray.pipelines import engine

    run = submit(store, dags.chain_spec(3))
    ctl = PipelineController(store, clock=Clock(), sweep_s=3600)
    ctl.tick()
    plans = []
    real = engine.plan
    monkeypatch.setattr(engine, "plan", lambda *a, **kw: plans.append(1) or real(*a, **kw))
    (w,) = store.list(limit=10)
    for status in (Status.STARTING, Status.RUNNING):
        w.status = status
        store.update(w, (status.value, T0, ""))
        ctl.tick()
    assert plans == []  # two transitions in the feed, nothing any plan could act on
    w.status, w.result = Status.COMPLETED, {"o_L0_0": 1}
    store.update(w, (Status.COMPLETED.value, T0, ""))
    ctl.tick()
    assert plans == [1]
    assert [n.status for n in runs.node_runs(store, run.run_id)][:2] == ["succeeded", "submitted"]


def test_a_running_node_of_a_cancelled_run_is_still_cancelled(store):
    run = submit(store, dags.chain_spec(2))
    ctl = PipelineController(store, clock=Clock(), sweep_s=3600)
    ctl.tick()
    (w,) = store.list(limit=10)
    runs.request_cancel(store, runs.get_run(store, run.run_id), who="acme", now=T0)
    ctl.touch(run.run_id)
    w.status = Status.RUNNING
    store.update(w, (Status.RUNNING.value, T0, ""))
    assert ctl.tick() == [w.workload_id]
    assert ctl.tick() == [w.workload_id]  # asked again until it ends


@pytest.mark.parametrize("seed", range(12))
def test_a_plan_with_a_focus_asks_what_a_whole_plan_asks(seed):
    """Random states of a layered DAG, as plans leave them (every pending node waits on an
    upstream node), some submitted workloads ended: looking at those nodes only (and what is
    downstream of what changes) plans exactly what looking at every node plans."""
    import random

    from orion_ray.pipelines import engine
    from orion_ray.pipelines.records import NodeRun

    rng = random.Random(seed)
    spec = dags.dag_spec(6, 5, seed=seed)
    run, _ = accept({"dag_spec": spec, "runtime_params": {"submission_id": "f"}}, tenant_id="a", now=T0)
    shape = engine.shape_of(run)
    nodes: dict[str, NodeRun] = {}
    workloads = {}
    for nid in shape.order:
        ups = [nodes[u] for u in shape.upstream[nid]]
        if any(u.status in ("failed", "skipped") for u in ups):
            nodes[nid] = NodeRun(nid, status="skipped")
        elif all(u.status == "succeeded" for u in ups):
            roll = rng.random()
            if roll < 0.4:
                nodes[nid] = NodeRun(nid, status="succeeded", attempt=1, outputs={f"o_{nid}": 1})
            elif roll < 0.45:
                nodes[nid] = NodeRun(nid, status="failed", attempt=1)
            else:
                wid = f"w-{nid}"
                nodes[nid] = NodeRun(nid, status="submitted", attempt=1, workload_id=wid)
                ended = rng.random() < 0.5
                status = rng.choice([Status.COMPLETED, Status.FAILED]) if ended else Status.RUNNING
                workloads[wid] = snapshot.WorkloadState(status, {f"o_{nid}": 2}, None)
        else:
            nodes[nid] = NodeRun(nid)
    rows = list(nodes.values())
    focus = [n.node_id for n in rows if n.workload_id and workloads[n.workload_id].status.terminal]
    whole = engine.plan(run, rows, workloads, T0 + 1, shape)
    part = engine.plan(run, rows, workloads, T0 + 1, shape, focus=focus)
    key = lambda p: (  # noqa: E731
        sorted((n.node_id, n.status, n.attempt, n.error) for n in p.changed),
        sorted((n.node_id, json.dumps(i, sort_keys=True)) for n, i in p.launches),
        p.status,
        p.error,
    )
    assert key(part) == key(whole)
    assert not focus or whole.changed  # something ended: the plans had work to compare


def test_a_workload_state_is_copied_with_changes_as_a_workload_is():
    st = snapshot.WorkloadState(Status.COMPLETED, {"a": 1})
    assert st.model_copy(update={"status": Status.RUNNING}) == snapshot.WorkloadState(
        Status.RUNNING, {"a": 1}
    )
    assert st.status == Status.COMPLETED
