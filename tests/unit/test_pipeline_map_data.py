"""A map's data through the artifact store (the map and data parts together): a fan-in too large to
keep inline is written as an artifact and the downstream node gets the whole list as a value; a
``with_param`` list kept as an artifact upstream is read back before the items are made."""

from __future__ import annotations

import pytest

from orion_ray.pipelines import runs_store as runs
from orion_ray.pipelines.artifacts import LocalArtifacts
from orion_ray.pipelines.controller import PipelineController
from orion_ray.pipelines.dataflow import DataFlow
from orion_ray.pipelines.records import MAX_OUTPUT_CHARS
from orion_ray.pipelines.refs import is_ref
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from tests.unit.test_pipeline_map import Clock, finish, inflight, mapped, node, submit

BIG = "x" * 2_000  # one item's value: 100 of them are far over the inline cap


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def controller(store, tmp_path):
    data = DataFlow(LocalArtifacts(tmp_path / "artifacts"))
    return PipelineController(store, clock=Clock(), data=data)


def test_a_fan_in_over_the_inline_cap_reaches_the_next_node_as_a_value(store, tmp_path):
    ctl = controller(store, tmp_path)
    run = submit(store, mapped(list(range(100)), concurrency=100))
    ctl.tick()
    for it in inflight(store, run):
        w = store.get(it.workload_id)
        finish(store, it.workload_id, Status.COMPLETED, {"value": f"{w.spec.kwargs['item']}:{BIG}"})
    ctl.tick()
    square = node(store, run, "square")
    assert square.status == "succeeded", square.error
    assert is_ref(square.outputs["value"])  # the fan-in is an artifact, the row holds its reference
    assert 100 * len(BIG) > MAX_OUTPUT_CHARS
    ctl.tick()
    total = node(store, run, "total")
    assert total.status == "submitted"
    got = store.get(total.workload_id).spec.kwargs["value"]
    assert got == [f"{i}:{BIG}" for i in range(100)]  # the whole list, in order, as a value


def test_an_upstream_list_kept_as_an_artifact_is_mapped_over(store, tmp_path):
    ctl = controller(store, tmp_path)
    run = submit(store, mapped(over_upstream=True, concurrency=3))
    ctl.tick()
    shards = node(store, run, "shards")
    values = [f"{i}-{BIG}" for i in range(20)]  # 40 KB: over the 16 KiB inline bound
    finish(store, shards.workload_id, Status.COMPLETED, {"shards": values})
    ctl.tick()
    assert is_ref(node(store, run, "shards").outputs["shards"])
    ctl.tick()
    going = inflight(store, run)
    assert len(going) == 3
    assert [store.get(i.workload_id).spec.kwargs["item"] for i in going] == values[:3]
    assert runs.get_run(store, run.run_id).status == "running"
