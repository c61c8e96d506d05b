"""The ``map`` node kind (fan-out): its spec and its 422s, and the controller over a real SQLite store
(no Ray) with item workloads completed by hand: items in index order, ``concurrency`` never
exceeded, ``min_success_ratio`` both ways, nulls for failed items in the fan-in, per-item retries,
nothing launched twice across a restarted controller, cancel and ``slo.max_runtime``, counters and
the paged listing."""

from __future__ import annotations

import pytest

from orion_ray.errors import ValidationError
from orion_ray.pipelines import map_store, progress
from orion_ray.pipelines import runs_store as runs
from orion_ray.pipelines.controller import PipelineController
from orion_ray.pipelines.intake import accept
from orion_ray.pipelines.spec import parse_submission
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from tests.unit.pipeline_support import T0, Clock

FN = "tests.pipelines.nodes_map"


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def mapped(items=None, *, over_upstream=False, retry=None, slo=None, **m):
    """A pipeline: [shards →] square (a map) → total."""
    block = {"with_param": "shards"} if over_upstream else {"with_items": items}
    block.update(m)
    sq = {
        "id": "square",
        "kind": "map",
        "params": {"function": f"{FN}:square", "offset": 1},
        "outs": ["value"],
        "map": block,
        "ins": ["shards"] if over_upstream else [],
    }
    if retry:
        sq["retry"] = retry
    nodes = [
        sq,
        {"id": "total", "kind": "python_task", "params": {"function": f"{FN}:total"}, "ins": ["value"]},
    ]
    edges = [{"from": "square", "to": "total"}]
    if over_upstream:
        nodes.insert(0, {"id": "shards", "kind": "python_task", "params": {"function": f"{FN}:shards"}})
        nodes[0]["outs"] = ["shards"]
        edges.insert(0, {"from": "shards", "to": "square"})
    spec = {
        "version": 1,
        "pipeline_id": "fan",
        "nodes": nodes,
        "edges": edges,
        **({"slo": slo} if slo else {}),
    }
    return {"dag_spec": spec, "runtime_params": {"submission_id": "m1"}}


def submit(store, body, tenant="acme"):
    run, ids = accept(body, tenant_id=tenant, now=T0)
    return runs.create_run(store, run, ids, who=tenant)[0]


def finish(store, workload_id, status, result=None, error=None):
    w = store.get(workload_id)
    w.status, w.result, w.error = status, result, error
    store.update(w, (status.value, T0, ""))


def items(store, run, node="square"):
    return map_store.items_page(store, run.run_id, node, after=-1, limit=1000)


def inflight(store, run, node="square"):
    return [i for i in items(store, run, node) if i.status == "submitted"]


def node(store, run, node_id):
    return {n.node_id: n for n in runs.node_runs(store, run.run_id)}[node_id]


def complete_all(store, ctl, run, fail=()):
    """Complete every item in flight (those in ``fail``: failed), tick, until none is in flight."""
    for _ in range(1000):
        going = inflight(store, run)
        if not going:
            return
        for it in going:
            w = store.get(it.workload_id)
            value = w.spec.kwargs["item"]
            if value in fail:
                finish(store, it.workload_id, Status.FAILED, error=f"item {value} failed")
            else:
                finish(
                    store,
                    it.workload_id,
                    Status.COMPLETED,
                    {"value": value * value + w.spec.kwargs["offset"]},
                )
        ctl.tick()


# -- the spec -----------------------------------------------------------------------------------------
def refused(body):
    with pytest.raises(ValidationError) as info:
        parse_submission(body)
    return info.value.details


def test_map_is_a_built_in_kind_named_among_the_installed_ones():
    sub = parse_submission(mapped([1, 2]))
    m = sub.dag_spec.node("square").map
    assert (m.concurrency, m.min_success_ratio, m.max_items, m.item_arg) == (100, 1.0, 10_000, "item")
    details = refused(
        {"dag_spec": {"version": 1, "pipeline_id": "p", "nodes": [{"id": "a", "kind": "trino_sql"}]}}
    )
    assert "installed: python_task, ray_job, map" in details[0]["problem"]


def test_argo_and_kubernetes_spellings_are_accepted_and_stored_in_snake_case():
    body = mapped()
    body["dag_spec"]["nodes"][0]["map"] = {"withItems": [1, 2, 3], "parallelism": 2}
    run, _ = accept(body, tenant_id="acme", now=T0)
    stored = run.body["dag_spec"]["nodes"][0]["map"]
    assert stored["with_items"] == [1, 2, 3] and stored["concurrency"] == 2 and "withItems" not in stored
    body["dag_spec"]["nodes"][0]["map"] = {"withParam": "shards"}
    body["dag_spec"]["nodes"][0]["ins"] = ["shards"]
    body["dag_spec"]["nodes"].insert(
        0, {"id": "up", "kind": "python_task", "params": {"function": f"{FN}:shards"}}
    )
    body["dag_spec"]["nodes"][0]["outs"] = ["shards"]
    body["dag_spec"]["edges"].append({"from": "up", "to": "square"})
    assert parse_submission(body).dag_spec.node("square").map.with_param == "shards"


@pytest.mark.parametrize(
    "change,field,words",
    [
        (lambda n: n.pop("map"), "dag_spec.nodes.square.map", "needs a map block"),
        (lambda n: n["map"].update(with_param="x"), "dag_spec.nodes.square.map", "exactly one"),
        (lambda n: n["map"].update(with_items=None), "dag_spec.nodes.square.map", "exactly one"),
        (lambda n: n["map"].update(with_items=list(range(11)), max_items=10), "with_items", "over max_items"),
        (lambda n: n["map"].update(with_items=list(range(10_001))), "with_items", "at most 10000"),
        (lambda n: n["map"].update(max_items=10_001), "max_items", "10000"),
        (lambda n: n["map"].update(concurrency=0), "concurrency", "greater than or equal to 1"),
        (lambda n: n["map"].update(min_success_ratio=1.5), "min_success_ratio", "less than or equal to 1"),
        (lambda n: n["map"].update(item_arg="offset"), "dag_spec.nodes.square.map.item_arg", "own keyword"),
        (lambda n: n["map"].update(item_arg="not a name"), "item_arg", "pattern"),
        (lambda n: n["map"].update(surprise=1), "surprise", "xtra"),
        (lambda n: n.update(entrypoint="echo hi"), "dag_spec.nodes.square.entrypoint", "not an entrypoint"),
    ],
)
def test_a_bad_map_block_is_a_422_naming_the_field(change, field, words):
    body = mapped([1, 2, 3])
    change(body["dag_spec"]["nodes"][0])
    details = refused(body)
    assert any(field in d["field"] and words in d["problem"] for d in details), details


def test_with_param_must_be_one_of_the_nodes_ins():
    body = mapped(over_upstream=True)
    body["dag_spec"]["nodes"][1]["map"]["with_param"] = "other"
    details = refused(body)
    assert (
        details[0]["field"] == "dag_spec.nodes.square.map.with_param"
        and "not one of" in details[0]["problem"]
    )


def test_a_map_block_on_another_kind_is_refused():
    body = mapped([1])
    body["dag_spec"]["nodes"][1]["map"] = {"with_items": [1]}
    assert refused(body)[0]["field"] == "dag_spec.nodes.total.map"


def test_a_map_item_over_the_value_bounds_is_refused_at_submit():
    details = refused(mapped([{"deep": "x" * 70_000}]))
    assert "with_items" in details[0]["field"] or "with_items" in details[0]["problem"]


# -- the controller -----------------------------------------------------------------------------------
def test_items_run_in_index_order_within_concurrency_and_fan_in_in_order(store):
    run = submit(store, mapped(list(range(10)), concurrency=3))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    first = inflight(store, run)
    assert [i.idx for i in first] == [0, 1, 2]
    w = store.get(first[0].workload_id)
    assert w.spec.metadata.request_id == "m1/square/1/0" and w.spec.kwargs == {"offset": 1, "item": 0}
    assert w.spec.function == f"{FN}:square" and w.tenant_id == "acme"
    seen_max = 0
    order = [2, 0, 1]  # they end out of order: the fan-in is still in index order
    for _ in range(20):
        going = inflight(store, run)
        seen_max = max(seen_max, len(going))
        if not going:
            break
        for it in sorted(going, key=lambda i: order.index(i.idx % 3)):
            item = store.get(it.workload_id).spec.kwargs["item"]
            finish(store, it.workload_id, Status.COMPLETED, {"value": item * 10})
        ctl.tick()
    assert seen_max == 3
    ctl.tick()
    sq = node(store, run, "square")
    assert sq.status == "succeeded" and sq.outputs == {"value": [i * 10 for i in range(10)]}
    total = store.get(node(store, run, "total").workload_id)
    assert total.spec.kwargs == {"value": [i * 10 for i in range(10)]}
    assert len(store.list(limit=1000)) == 11  # one workload per item, one for the fan-in


def test_concurrency_is_never_exceeded_even_with_items_failing_and_retrying(store):
    body = mapped(list(range(12)), concurrency=4, retry={"max_attempts": 2, "backoff_sec": 0})
    run = submit(store, body)
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    failed_once: set[int] = set()
    for _ in range(60):
        going = inflight(store, run)
        assert len(going) <= 4
        c = map_store.counters(store, run.run_id, "square")
        assert c.running == len(going)
        if not going:
            break
        it = going[0]
        if it.idx % 2 and it.idx not in failed_once:
            failed_once.add(it.idx)
            finish(store, it.workload_id, Status.FAILED, error="flaky")
        else:
            finish(store, it.workload_id, Status.COMPLETED, {"value": it.idx})
        ctl.tick()
    sq = node(store, run, "square")
    assert sq.status == "succeeded" and sq.outputs == {"value": list(range(12))}
    retried = [i for i in items(store, run) if i.attempt == 2]
    assert {i.idx for i in retried} == failed_once
    w = store.get(retried[0].workload_id)
    assert w.spec.metadata.request_id == f"m1/square/2/{retried[0].idx}"


def test_map_over_an_upstream_list_passes_other_ins_whole(store):
    body = mapped(over_upstream=True, concurrency=50)
    sq = body["dag_spec"]["nodes"][1]
    sq["params"].pop("offset")
    sq["ins"] = ["shards", "offset"]
    body["dag_spec"]["nodes"][0]["outs"] = ["shards", "offset"]
    run = submit(store, body)
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    finish(
        store, node(store, run, "shards").workload_id, Status.COMPLETED, {"shards": [5, 6, 7], "offset": 100}
    )
    ctl.tick()
    kwargs = [store.get(i.workload_id).spec.kwargs for i in inflight(store, run)]
    assert kwargs == [{"offset": 100, "item": v} for v in (5, 6, 7)]  # the list itself is not passed
    complete_all(store, ctl, run)
    ctl.tick()
    assert node(store, run, "square").outputs == {"value": [125, 136, 149]}


def test_min_success_ratio_met_the_node_succeeds_with_nulls_for_failed_items(store):
    run = submit(store, mapped([0, 1, 2, 3], min_success_ratio=0.75))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    complete_all(store, ctl, run, fail={2})
    ctl.tick()
    sq = node(store, run, "square")
    assert sq.status == "succeeded" and sq.outputs == {"value": [1, 2, None, 10]}
    status = progress.status_body(store, runs.get_run(store, run.run_id))
    square = status["nodes"][0]
    assert (square["total_tasks"], square["completed_tasks"], square["failed_tasks"]) == (4, 3, 1)
    assert store.get(node(store, run, "total").workload_id).spec.kwargs["value"] == [1, 2, None, 10]


def test_min_success_ratio_missed_the_node_fails_early_and_downstream_is_skipped(store):
    run = submit(store, mapped(list(range(10)), concurrency=2, min_success_ratio=0.8))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    a, b = inflight(store, run)
    finish(store, a.workload_id, Status.FAILED, error="boom")
    finish(store, b.workload_id, Status.FAILED, error="boom")
    ctl.tick()
    c = map_store.counters(store, run.run_id, "square")
    assert c.failed == 2 and c.running == 2  # two failures allowed: it goes on
    c_, d = inflight(store, run)
    finish(store, c_.workload_id, Status.FAILED, error="boom")
    assert ctl.tick() == [d.workload_id]  # a third: it cannot succeed; the rest is cancelled
    assert node(store, run, "square").status == "submitted"  # until none is in flight
    finish(store, d.workload_id, Status.CANCELLED, error="cancelled")
    ctl.tick()
    sq = node(store, run, "square")
    assert (
        sq.status == "failed" and "3 of 10 items failed, 7 cancelled" in sq.error and "at most 2" in sq.error
    )
    assert node(store, run, "total").status == "skipped"
    assert runs.get_run(store, run.run_id).status == "failed"
    c = map_store.counters(store, run.run_id, "square")
    assert (c.failed, c.cancelled, c.running, c.completed) == (3, 7, 0, 0)
    assert len(store.list(limit=100)) == 4  # no item started after the node was doomed


def test_an_item_that_fails_all_its_attempts_fails_the_node_with_ratio_one(store):
    run = submit(store, mapped([1, 2], retry={"max_attempts": 2, "backoff_sec": 0}))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    complete_all(store, ctl, run, fail={2})
    ctl.tick()
    bad = items(store, run)[1]
    assert (bad.status, bad.attempt) == ("failed", 2) and "attempt 2: item 2 failed" in bad.error
    assert node(store, run, "square").status == "failed"


def test_a_retry_waits_for_its_backoff(store):
    clock = Clock()
    run = submit(store, mapped([1], retry={"max_attempts": 2, "backoff_sec": 30}))
    ctl = PipelineController(store, clock=clock, sweep_s=3600)
    ctl.tick()
    finish(store, inflight(store, run)[0].workload_id, Status.FAILED, error="flaky")
    ctl.tick()
    it = items(store, run)[0]
    assert (it.status, it.attempt, it.workload_id) == ("pending", 1, None) and ctl.next_due == T0 + 30
    clock.now += 30
    ctl.tick()
    assert items(store, run)[0].attempt == 2 and len(inflight(store, run)) == 1


def test_a_restarted_controller_launches_nothing_twice(store, tmp_path):
    run = submit(store, mapped(list(range(20)), concurrency=5))
    PipelineController(store, clock=Clock()).tick()
    first = [i.workload_id for i in inflight(store, run)]
    other = SQLiteStore(str(tmp_path / "orion.db"))  # the controller's process restarted
    try:
        for _ in range(3):
            PipelineController(other, clock=Clock()).tick()
        assert [i.workload_id for i in inflight(other, run)] == first
        assert len(other.list(limit=100)) == 5
        c = map_store.counters(other, run.run_id, "square")
        assert (c.running, c.next_idx) == (5, 5)
    finally:
        other.close()


def test_a_stale_reconcile_repeats_nothing_and_counts_nothing_twice(store):
    run = submit(store, mapped(list(range(6)), concurrency=2))
    ctl = PipelineController(store, clock=Clock())
    stale = runs.get_run(store, run.run_id)
    ctl.tick()
    a, _b = inflight(store, run)
    finish(store, a.workload_id, Status.COMPLETED, {"value": 0})
    ctl.tick()
    PipelineController(store, clock=Clock()).reconcile(stale)  # another controller, an older view
    ctl.reconcile(stale)
    c = map_store.counters(store, run.run_id, "square")
    assert (c.completed, c.running, c.next_idx) == (1, 2, 3)
    assert len(store.list(limit=100)) == 3


def test_cancel_cascades_to_items_in_flight_and_no_more_start(store):
    run = submit(store, mapped(list(range(10)), concurrency=3))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    ids = [i.workload_id for i in inflight(store, run)]
    runs.request_cancel(store, runs.get_run(store, run.run_id), who="acme", now=T0)
    assert sorted(ctl.tick()) == sorted(ids)
    assert sorted(ctl.tick()) == sorted(ids)  # asked again until they end
    for wid in ids:
        finish(store, wid, Status.CANCELLED, error="cancelled by pipelines")
    ctl.tick()
    assert runs.get_run(store, run.run_id).status == "cancelled"
    assert node(store, run, "square").status == "cancelled"
    assert {i.status for i in items(store, run)} == {"cancelled"}
    assert len(store.list(limit=100)) == 3


def test_slo_max_runtime_stops_the_items(store):
    clock = Clock()
    run = submit(store, mapped(list(range(4)), concurrency=2, slo={"max_runtime": 60}))
    ctl = PipelineController(store, clock=clock)
    ctl.tick()
    clock.now += 61
    ids = ctl.tick()
    assert len(ids) == 2
    for wid in ids:
        finish(store, wid, Status.CANCELLED)
    ctl.tick()
    done = runs.get_run(store, run.run_id)
    assert done.status == "failed" and "max_runtime" in done.error


def test_an_upstream_list_over_max_items_fails_the_node_with_the_reason(store):
    body = mapped(over_upstream=True, max_items=3)
    run = submit(store, body)
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    finish(store, node(store, run, "shards").workload_id, Status.COMPLETED, {"shards": [1, 2, 3, 4]})
    ctl.tick()
    sq = node(store, run, "square")
    assert sq.status == "failed" and "4 items, over max_items (3)" in sq.error


def test_an_upstream_value_that_is_not_a_list_fails_the_node(store):
    run = submit(store, mapped(over_upstream=True))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    finish(store, node(store, run, "shards").workload_id, Status.COMPLETED, {"shards": "abc"})
    ctl.tick()
    assert "not a list (it is str)" in node(store, run, "square").error


def test_an_empty_list_succeeds_at_once_with_empty_outputs(store):
    run = submit(store, mapped([]))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    ctl.tick()
    sq = node(store, run, "square")
    assert sq.status == "succeeded" and sq.outputs == {"value": []}
    assert store.get(node(store, run, "total").workload_id).spec.kwargs == {"value": []}


def test_a_fan_in_over_the_inline_cap_fails_with_the_reason(store):
    run = submit(store, mapped(list(range(3))))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    for it in inflight(store, run):
        finish(store, it.workload_id, Status.COMPLETED, {"value": "x" * 30_000})
    ctl.tick()
    sq = node(store, run, "square")
    assert sq.status == "failed" and "fan-in of 3 items" in sq.error and "inline limit" in sq.error


def test_an_item_output_that_cannot_be_taken_is_a_failed_attempt(store):
    run = submit(store, mapped([1]))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    finish(store, inflight(store, run)[0].workload_id, Status.COMPLETED, {"other": 1})
    ctl.tick()
    assert "lacks the output(s) value" in items(store, run)[0].error


def test_the_feed_reads_only_items_whose_workloads_moved(store):
    run = submit(store, mapped(list(range(6)), concurrency=6))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    mark = store.last_transition_id()
    one = inflight(store, run)[4]
    finish(store, one.workload_id, Status.COMPLETED, {"value": 1})
    moved = map_store.moved_items(store, run.run_id, "square", mark)
    assert [i.idx for i in moved] == [4]
    assert [i.idx for i in map_store.moved_items(store, run.run_id, "square", None)] == [4]  # a sweep
    ctl.tick()
    assert map_store.counters(store, run.run_id, "square").completed == 1


def test_progress_counters_on_nodes_and_run_and_the_paged_listing(store):
    run = submit(store, mapped(list(range(25)), concurrency=10, min_success_ratio=0.5))
    ctl = PipelineController(store, clock=Clock())
    before = progress.status_body(store, run)
    assert before["nodes"][0]["total_tasks"] == 25 and before["progress"]["total_tasks"] == 26
    ctl.tick()
    going = inflight(store, run)
    for it in going[:4]:
        finish(store, it.workload_id, Status.COMPLETED, {"value": 1})
    finish(store, going[4].workload_id, Status.FAILED, error="x")
    ctl.tick()
    got = progress.status_body(store, runs.get_run(store, run.run_id))
    sq = got["nodes"][0]
    assert (sq["total_tasks"], sq["completed_tasks"], sq["failed_tasks"], sq["running_tasks"]) == (
        25,
        4,
        1,
        10,
    )  # 5 more started
    assert got["progress"]["total_tasks"] == 26 and got["progress"]["pending_tasks"] == 10 + 1
    assert got["progress"]["total"] == 2 and got["progress"]["submitted"] == 1  # what existed stays
    live = runs.get_run(store, run.run_id)
    page = progress.items_body(store, live, "square", after=-1, limit=10)
    assert [i["index"] for i in page["items"]] == list(range(10)) and page["next_after"] == 9
    assert set(page["items"][0]) == {
        "index",
        "state",
        "attempt",
        "workload_id",
        "error",
        "started_at",
        "finished_at",
    }
    rest = progress.items_body(store, live, "square", after=9, limit=1000)
    assert [i["index"] for i in rest["items"]] == list(range(10, 25)) and rest["next_after"] is None
    failed = progress.items_body(store, live, "square", state="failed")
    assert [i["index"] for i in failed["items"]] == [4] and failed["items"][0]["error"] == "attempt 1: x"
    with pytest.raises(ValidationError) as info:
        progress.items_body(store, live, "total")
    assert info.value.details[0]["field"] == "node"
    for bad in ({"limit": 1001}, {"limit": 0}, {"after": -2}, {"state": "odd"}):
        with pytest.raises(ValidationError):
            progress.items_body(store, live, "square", **bad)


def test_an_ordinary_node_counts_as_one_task(store):
    run = submit(store, mapped([1]))
    body = progress.status_body(store, run)
    assert body["nodes"][1]["total_tasks"] == 1 and body["nodes"][1]["pending_tasks"] == 1
