"""The pure per-item plan of a map node (``fanout.plan_items``) and its fan-in, without a store; and
a crash inside a map reconcile's transaction (all of it or none)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from orion_ray.pipelines import fanout, map_store
from orion_ray.pipelines.fanout import Counters, Item, plan_items
from orion_ray.pipelines.mapspec import MapSpec
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

from .test_pipeline_map import Clock, inflight, mapped, submit

NOW = 100.0
RETRY = SimpleNamespace(max_attempts=2, backoff_sec=5.0)


def w(status, result=None, error=None):
    return SimpleNamespace(status=status, result=result, error=error)


def plan(m=None, counters=None, moved=(), waiting=(), stopping=None, retry=RETRY):
    return plan_items(
        m or MapSpec(with_items=[], concurrency=2),
        outs=["v"],
        retry=retry,
        counters=counters or Counters(total=5),
        moved=list(moved),
        waiting=list(waiting),
        now=NOW,
        stopping=stopping,
    )


def test_first_plan_launches_concurrency_items_in_index_order():
    p = plan()
    assert [(it.idx, it.attempt, prior) for it, prior in p.launches] == [(0, 1, 0), (1, 1, 0)]
    assert (p.counters.running, p.counters.next_idx) == (2, 2) and p.node_status is None


def test_a_settled_item_frees_its_slot_for_the_next():
    c = Counters(total=5, next_idx=2, running=2)
    p = plan(counters=c, moved=[(Item(0, "submitted", 1, "w0"), w(Status.COMPLETED, {"v": 7}))])
    assert p.settled[0].status == "succeeded" and p.settled[0].output == {"v": 7}
    assert [it.idx for it, _ in p.launches] == [2] and p.counters.completed == 1
    assert counters_unchanged(c)


def counters_unchanged(c):
    return c == Counters(total=5, next_idx=2, running=2)  # the plan never mutates its input


def test_a_workload_still_going_is_not_settled():
    c = Counters(total=5, next_idx=2, running=2)
    p = plan(counters=c, moved=[(Item(0, "submitted", 1, "w0"), w(Status.RUNNING))])
    assert p.settled == [] and p.launches == []


def test_a_failed_item_waits_for_its_backoff_then_goes_first():
    c = Counters(total=5, next_idx=2, running=2)
    p = plan(counters=c, moved=[(Item(1, "submitted", 1, "w1"), w(Status.FAILED, error="oom"))])
    it = p.settled[0]
    assert (it.status, it.not_before, it.error) == ("pending", NOW + 5, "attempt 1: oom")
    assert it.workload_id == "w1"  # the row it leaves (the guard of the write)
    assert [x.idx for x, _ in p.launches] == [2] and p.next_due == NOW + 5 and p.counters.retrying == 1
    later = Counters(total=5, next_idx=3, running=1, retrying=1)
    due = Item(1, "pending", 1, None, not_before=NOW)
    p2 = plan(counters=later, waiting=[due])
    assert [(x.idx, x.attempt, prior) for x, prior in p2.launches] == [(1, 2, 1)]
    assert p2.counters.retrying == 0 and p2.counters.next_idx == 3


def test_the_last_attempt_fails_the_item():
    c = Counters(total=5, next_idx=2, running=2)
    p = plan(counters=c, moved=[(Item(1, "submitted", 2, "w1"), None)])
    assert p.settled[0].status == "failed" and "gone from the store" in p.settled[0].error


def test_a_cancelled_item_workload_is_a_cancelled_item():
    c = Counters(total=5, next_idx=2, running=2)
    m = MapSpec(with_items=[], concurrency=2, min_success_ratio=0.5)
    p = plan(m, counters=c, moved=[(Item(1, "submitted", 1, "w1"), w(Status.CANCELLED, error="by alice"))])
    assert (p.settled[0].status, p.settled[0].error) == ("cancelled", "by alice")


def test_stopping_cancels_in_flight_and_every_item_not_started():
    c = Counters(total=5, next_idx=2, running=2, retrying=1)
    p = plan(counters=c, stopping="cancelled")
    assert p.cancel_inflight and p.cancel_rest == "cancelled" and p.launches == []
    assert (p.counters.cancelled, p.counters.next_idx, p.counters.retrying) == (4, 5, 0)
    assert p.node_status is None  # until none is in flight
    done = plan(
        counters=Counters(total=5, next_idx=5, running=0, cancelled=4, completed=1), stopping="cancelled"
    )
    assert (done.node_status, done.node_error) == ("cancelled", "cancelled")


def test_every_item_ended_with_enough_successes_asks_for_the_fan_in():
    c = Counters(total=2, next_idx=2, running=1, completed=1)
    p = plan(counters=c, moved=[(Item(1, "submitted", 1, "w1"), w(Status.COMPLETED, {"v": 1}))])
    assert p.node_status == "succeeded" and p.fan_in


@pytest.mark.parametrize(
    "total,ratio,allowed", [(10, 1.0, 0), (10, 0.9, 1), (10, 0.75, 2), (3, 0.5, 1), (0, 1.0, 0), (7, 0.0, 7)]
)
def test_allowed_failures(total, ratio, allowed):
    assert MapSpec(with_items=[], min_success_ratio=ratio).allowed_failures(total) == allowed


def test_fan_in_orders_by_index_with_nulls():
    rows = [(2, "succeeded", {"v": 2, "w": "c"}), (0, "succeeded", {"v": 0, "w": "a"}), (1, "failed", None)]
    out, problem = fanout.fan_in(["v", "w"], rows, 3)
    assert problem is None and out == {"v": [0, None, 2], "w": ["a", None, "c"]}


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def test_a_crash_inside_a_map_reconcile_leaves_none_of_it(store, monkeypatch):
    """The items' workloads, their rows and the counters are one transaction with the node row:
    a failure after the workloads were submitted rolls all of it back, and the next reconcile
    launches the same items once."""
    from orion_ray.pipelines import map_reconcile
    from orion_ray.pipelines.controller import PipelineController

    run = submit(store, mapped(list(range(6)), concurrency=3))
    real = map_store.write_plan

    def crash(*a, **kw):
        real(*a, **kw)
        raise RuntimeError("SIGKILL here")

    monkeypatch.setattr(map_reconcile.map_store, "write_plan", crash)
    PipelineController(store, clock=Clock()).tick()  # logged and skipped, as any failing reconcile
    assert store.list(limit=100) == [] and map_store.counters(store, run.run_id, "square") is None
    monkeypatch.setattr(map_reconcile.map_store, "write_plan", real)
    PipelineController(store, clock=Clock()).tick()
    assert [i.idx for i in inflight(store, run)] == [0, 1, 2] and len(store.list(limit=100)) == 3


def test_a_retried_map_node_reruns_only_the_items_that_did_not_succeed(store):
    """The seam for retry-from-the-failed-node: ``map_store.reopen`` plus the node row set back
    (here by hand, as a retry route would in one transaction)."""
    from orion_ray.pipelines import runs_store as runs
    from orion_ray.pipelines.controller import PipelineController

    from .test_pipeline_map import complete_all, node

    run = submit(store, mapped(list(range(6)), concurrency=2))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    complete_all(store, ctl, run, fail={1})  # item 1 fails: the node is doomed, 2..5 partly not started
    ctl.tick()
    assert runs.get_run(store, run.run_id).status == "failed"
    before = {i.idx: i for i in map_store.items_page(store, run.run_id, "square", after=-1, limit=10)}
    done = [i for i, it in before.items() if it.status == "succeeded"]
    assert 1 not in done and done
    with store._lock, store._tx():
        reopened = map_store.reopen(store._db, run.run_id, "square")
        store._db.execute(
            "UPDATE node_runs SET status='pending', error=NULL, finished_at=NULL WHERE run_id=?",
            (run.run_id,),
        )
        store._db.execute(
            "UPDATE pipeline_runs SET status='running', error=NULL, finished_at=NULL WHERE run_id=?",
            (run.run_id,),
        )
    assert reopened == 6 - len(done)
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    ctl.tick()
    first = [(i.idx, i.attempt) for i in inflight(store, run)]
    assert first[0] == (1, 2)  # the failed item, its next attempt first
    assert store.get(inflight(store, run)[0].workload_id).spec.metadata.request_id == "m1/square/2/1"
    complete_all(store, ctl, run)
    ctl.tick()
    sq = node(store, run, "square")
    assert sq.status == "succeeded" and sq.outputs == {"value": [i * i + 1 for i in range(6)]}
    after = {i.idx: i for i in map_store.items_page(store, run.run_id, "square", after=-1, limit=10)}
    assert all(after[i].workload_id == before[i].workload_id for i in done)  # not run again
    c = map_store.counters(store, run.run_id, "square")
    assert (c.completed, c.failed, c.cancelled, c.running) == (6, 0, 0, 0)
