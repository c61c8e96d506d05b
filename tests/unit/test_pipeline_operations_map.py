"""Retry from the failed node when that node is a map (fan-out): ``retry_run`` reopens its items
that did not succeed in the same transaction, so only those run again (new request ids) and the
items that succeeded keep their outputs."""

from __future__ import annotations

import pytest

from orion_ray.pipelines import map_store
from orion_ray.pipelines import runs_store as runs
from orion_ray.pipelines.controller import PipelineController
from orion_ray.pipelines.retry_run import retry_run
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

from .test_pipeline_map import Clock, complete_all, finish, inflight, mapped, node, submit


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def test_a_retried_run_reruns_only_the_map_items_that_did_not_succeed(store):
    run = submit(store, mapped(list(range(6)), concurrency=2))
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    complete_all(store, ctl, run, fail={1})  # item 1 fails: the node fails, the run with it
    ctl.tick()
    failed = runs.get_run(store, run.run_id)
    assert failed.status == "failed"
    before = {i.idx: i for i in map_store.items_page(store, run.run_id, "square", after=-1, limit=10)}
    done = [i for i, it in before.items() if it.status == "succeeded"]
    again = retry_run(store, failed, who="acme", now=2_000_000.0)
    assert again.status == "running" and again.retries == 1
    ctl = PipelineController(store, clock=Clock())
    ctl.tick()
    ctl.tick()
    first = inflight(store, run)[0]
    assert (first.idx, first.attempt) == (1, 2)  # the failed item, its next attempt
    assert store.get(first.workload_id).spec.metadata.request_id == "m1/square/2/1"
    complete_all(store, ctl, run)
    ctl.tick()
    sq = node(store, run, "square")
    assert sq.status == "succeeded" and sq.outputs == {"value": [i * i + 1 for i in range(6)]}
    after = {i.idx: i for i in map_store.items_page(store, run.run_id, "square", after=-1, limit=10)}
    assert all(after[i].workload_id == before[i].workload_id for i in done)  # not run again
    ctl.tick()  # total (skipped when square failed, pending again after the retry) runs now
    total = node(store, run, "total")
    assert total.status == "submitted" and total.attempt == 1
    finish(store, total.workload_id, Status.COMPLETED, {"sum": 1})
    ctl.tick()
    assert node(store, run, "total").status == "succeeded"
    assert runs.get_run(store, run.run_id).status == "succeeded"
