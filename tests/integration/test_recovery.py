"""Lose nothing: SIGKILL of the scheduler actor, loss of the executor, and a full restart."""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest
import ray

from orion_ray.store.lease import release_file as release_lease_file

from .conftest import start_orion, stop_orion, wait_for

pytestmark = pytest.mark.integration

SLEEP = "tests.integration.helpers:sleep_then"


@pytest.fixture
def fresh(ray_cluster, tmp_path):
    handle = start_orion(ray_cluster, str(tmp_path / "orion.db"))
    try:
        yield handle
    finally:
        stop_orion()


def runs_per_attempt(store_path: str, wid: str) -> dict[int, int]:
    """How many times each attempt entered ``running``, read from the durable store itself."""
    db = sqlite3.connect(store_path)
    try:
        rows = db.execute(
            "SELECT attempt, COUNT(*) FROM transitions WHERE workload_id=? AND "
            "status='running' GROUP BY attempt",
            (wid,),
        ).fetchall()
    finally:
        db.close()
    return dict(rows)


def test_sigkill_of_the_scheduler_adopts_running_work_and_loses_nothing(fresh, tmp_path):
    beat = str(tmp_path / "beat")
    task = fresh.submit(
        {
            "workload_type": "task",
            "function": SLEEP,
            "args": [4, "done"],
            "kwargs": {"heartbeat": beat},
            "resources": {"cpu": 0.5},
        }
    )
    job = fresh.submit(
        {"workload_type": "job", "entrypoint": "sleep 4; echo job-done", "resources": {"cpu": 0.5}}
    )
    fresh.wait(task, ("running",), 60)
    fresh.wait(job, ("running",), 60)
    queued = [
        fresh.submit(
            {"workload_type": "task", "function": "math:factorial", "args": [i], "resources": {"cpu": 0.1}}
        )
        for i in range(12)
    ]
    old_pid = fresh.pid()
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: _pid_or_none(fresh) not in (None, old_pid), 60, 0.2, "the actor to restart")
    results = {w: fresh.wait(w, timeout=90) for w in [task, job, *queued]}
    assert all(r["status"] == "completed" for r in results.values()), results
    assert results[task]["result"] == "done"
    assert "job-done" in fresh.logs(job)
    # adopted, not rerun: one run of attempt 1 each
    for wid in (task, job):
        assert results[wid]["attempt"] == 1
        assert runs_per_attempt(fresh.store_path, wid) == {1: 1}
    for i, wid in enumerate(queued):
        assert results[wid]["result"] == [1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800, 39916800][i]


def test_sigkill_of_the_scheduler_adopts_a_pinned_task_from_its_record(ray_cluster, tmp_path):
    """``scheduler.pin_single_bundle_tasks``: no group to find after the restart; the run is
    adopted with its reservation rebuilt from the stored placement, and runs once."""
    from ray.util.placement_group import placement_group_table

    orion = start_orion(ray_cluster, str(tmp_path / "orion.db"), pin_single_bundle_tasks=True)
    try:
        wid = orion.submit(
            {"workload_type": "task", "function": SLEEP, "args": [4, "done"], "resources": {"cpu": 0.5}}
        )
        node = orion.wait(wid, ("running",), 60)["placement"][0]["node_id"]
        old_pid = orion.pid()
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: _pid_or_none(orion) not in (None, old_pid), 60, 0.2, "the actor to restart")
        w = orion.wait(wid, timeout=90)
        assert w["status"] == "completed" and w["result"] == "done", w
        assert w["attempt"] == 1 and runs_per_attempt(orion.store_path, wid) == {1: 1}
        assert w["placement"][0]["node_id"] == node
        assert all(info["name"] != f"orion-{wid}" for info in placement_group_table().values())
    finally:
        stop_orion()


def _pid_or_none(handle):
    try:
        return handle.pid()
    except Exception:
        return None


def test_lost_executor_requeues_the_run_as_a_new_attempt(fresh):
    wid = fresh.submit(
        {"workload_type": "task", "function": SLEEP, "args": [30, "second"], "resources": {"cpu": 0.5}}
    )
    fresh.wait(wid, ("running",), 60)
    executor = ray.get_actor("orion-executor", namespace="orion")
    # the executor owns the task: killing it (it restarts empty) kills the run
    ray.kill(executor, no_restart=False)
    w = wait_for(
        lambda: (lambda w: w if w["attempt"] == 2 else None)(fresh.get(wid)), 60, 0.2, "a second attempt"
    )
    assert "lost" in str(w["history"])
    fresh.cancel(wid)
    assert runs_per_attempt(fresh.store_path, wid).get(1) == 1


def test_full_restart_keeps_every_workload(ray_cluster, tmp_path):
    """Like `orion down` then `orion up`: both actors go, a new scheduler reads the same store."""
    store = str(tmp_path / "orion.db")
    first = start_orion(ray_cluster, store)
    try:
        running = first.submit(
            {"workload_type": "task", "function": SLEEP, "args": [30], "resources": {"cpu": 0.5}}
        )
        first.wait(running, ("running",), 60)
        blocked = first.submit(
            {
                "workload_type": "task",
                "function": "math:factorial",
                "args": [3],
                "resources": {"cpu": 0.1, "custom": {"later": 1}},
            }
        )
        first.wait(blocked, ("queued",), 10)
        for name in ("orion-scheduler", "orion-executor"):
            ray.kill(ray.get_actor(name, namespace="orion"), no_restart=True)
        wait_for(lambda: not _exists("orion-scheduler"), 30, 0.2, "the scheduler to go")
        release_lease_file(store)  # as `orion down` does: the next scheduler need not wait it out
        second = start_orion(ray_cluster, store)
        # the run died with the executor: requeued as attempt 2 and running again
        w = wait_for(
            lambda: (lambda w: w if w["attempt"] == 2 and w["status"] == "running" else None)(
                second.get(running)
            ),
            60,
            0.2,
            "attempt 2 running",
        )
        assert runs_per_attempt(store, running) == {1: 1, 2: 1}
        assert second.get(blocked)["status"] == "queued"
        listed = {x["workload_id"] for x in ray.get(second.actor.list.remote())["items"]}
        assert {running, blocked} <= listed
        second.cancel(running)
        second.cancel(blocked)
        del w
    finally:
        stop_orion()


def _exists(name: str) -> bool:
    try:
        ray.get_actor(name, namespace="orion")
        return True
    except ValueError:
        return False
