"""Retention of pipeline runs: an ended run goes with its node runs and map items once past its own
``runtime_params.ttl_days``, else past ``store.retention.pipeline_runs_days``; a running run never
goes, whatever its age; a default of 0 keeps runs without a ttl for ever."""

from __future__ import annotations

import pytest

from orion_ray.config import RetentionConfig
from orion_ray.pipelines import runs_store as runs
from orion_ray.pipelines.controller import PipelineController
from orion_ray.pipelines.intake import accept
from orion_ray.scheduler.housekeeping import Housekeeping
from orion_ray.store import SQLiteStore

DAY = 86_400.0
NOW = 2_000_000_000.0
FN = "tests.pipelines.nodes_map"


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def run_of(store, sid, *, ttl_days=None, map_node=False):
    node = {"id": "a", "kind": "python_task", "params": {"function": f"{FN}:square"}}
    if map_node:
        node = {**node, "kind": "map", "map": {"with_items": [1, 2, 3]}}
    body = {
        "dag_spec": {"version": 1, "pipeline_id": "p", "nodes": [node]},
        "runtime_params": {"submission_id": sid, **({"ttl_days": ttl_days} if ttl_days else {})},
    }
    run, ids = accept(body, tenant_id="acme", now=NOW - 100 * DAY)
    return runs.create_run(store, run, ids, who="acme")[0]


def end(store, run, *, days_ago, status="succeeded"):
    store._db.execute(
        "UPDATE pipeline_runs SET status=?, finished_at=? WHERE run_id=?",
        (status, NOW - days_ago * DAY, run.run_id),
    )


def rows(store, table, run):
    return store._db.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id=?", (run.run_id,)).fetchone()[0]


def test_ended_runs_go_after_their_own_ttl_or_the_default_window(store):
    short = run_of(store, "short", ttl_days=2)  # ended 3 days ago, its own ttl is 2: goes
    long_ttl = run_of(store, "long", ttl_days=60)  # ended 40 days ago, its own ttl is 60: stays
    default_old = run_of(store, "old")  # no ttl, ended 40 days ago, default 30: goes
    default_new = run_of(store, "new")  # no ttl, ended 10 days ago: stays
    run_of(store, "running", ttl_days=1)  # never ended: stays, however old
    end(store, short, days_ago=3)
    end(store, long_ttl, days_ago=40, status="failed")
    end(store, default_old, days_ago=40, status="cancelled")
    end(store, default_new, days_ago=10)
    got = store.prune(now=NOW, keep_s={"pipeline_runs": 30 * DAY}, limit=500)
    assert got["pipeline_runs"] == 2
    assert runs.find_run(store, "short", "acme") is None and rows(store, "node_runs", short) == 0
    assert runs.find_run(store, "old", "acme") is None
    for sid in ("long", "new", "running"):
        assert runs.find_run(store, sid, "acme") is not None


def test_a_default_of_zero_keeps_runs_without_a_ttl_for_ever(store):
    forever = run_of(store, "forever")
    short = run_of(store, "short", ttl_days=1)
    end(store, forever, days_ago=3000)
    end(store, short, days_ago=2)
    assert store.prune(now=NOW, keep_s={"pipeline_runs": 0}, limit=500) == {"pipeline_runs": 1}
    assert runs.find_run(store, "forever", "acme") is not None
    assert store.prune(now=NOW, keep_s={}, limit=500) == {}  # nothing due: nothing said


def test_a_map_runs_items_go_with_it_a_batch_at_a_time(store):
    ctl = PipelineController(store, clock=lambda: NOW)
    maps = [run_of(store, f"m{i}", map_node=True) for i in range(3)]
    ctl.tick()  # the map nodes launched: items and counters stored
    assert all(rows(store, "map_items", r) == 3 and rows(store, "map_nodes", r) == 1 for r in maps)
    for r in maps:
        end(store, r, days_ago=31, status="cancelled")
    assert store.prune(now=NOW, keep_s={"pipeline_runs": 30 * DAY}, limit=2)["pipeline_runs"] == 2
    assert store.prune(now=NOW, keep_s={"pipeline_runs": 30 * DAY}, limit=2)["pipeline_runs"] == 1
    assert all(rows(store, t, r) == 0 for r in maps for t in ("map_items", "map_nodes", "node_runs"))


def test_the_scheduler_housekeeping_passes_the_configured_window(store):
    hk = Housekeeping(store, clock=lambda: NOW, retention=RetentionConfig(pipeline_runs_days=5))
    assert hk.keep_s()["pipeline_runs"] == 5 * DAY
    old = run_of(store, "old")
    end(store, old, days_ago=6)
    hk.tick()
    assert runs.find_run(store, "old", "acme") is None
