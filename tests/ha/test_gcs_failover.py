"""Control-plane failover with a real Redis: the GCS killed, then Orion's actors on the head killed,
while a task runs on the worker node. Orion's GCS supervisor restarts the GCS (Ray does not), the
cluster recovers from Redis, Ray restarts the scheduler, which takes the lease with a new token and
resumes from the store; the running task is not restarted, and nothing accepted is lost."""

from __future__ import annotations

import json
import time

import pytest

from orion_ray.gcs_supervisor import GCS_NAME, find_process
from tests.ha.drill import Orion, kill_gcs, kill_orion_actors, lease_token, restarted, runs

# `orion up`, a worker node and two recoveries: minutes on a loaded 2-core machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

LONG_S = 20.0


def marked(markers, wid: str) -> int:
    """Executions of ``wid`` (``sleep_and_mark`` appends one line per execution)."""
    path = markers / wid
    return len(path.read_text().splitlines()) if path.exists() else 0


def on_worker(seconds: float, markers) -> dict:
    return {
        "workload_type": "task",
        "function": "benchmarks._tasks:sleep_and_mark",
        "args": [seconds, str(markers)],
        "resources": {"cpu": 1, "gpu": 1, "custom": {"ha_worker": 1}},
    }


def test_gcs_and_orion_actors_killed_the_running_task_is_kept_and_nothing_is_lost(ha_live):
    orion = Orion(ha_live.url, ha_live.admin)
    root = ha_live.head_pid
    long = orion.submit(on_worker(LONG_S, ha_live.markers))
    orion.wait(long, ("running",), 120)
    # "running" is the launch; the worker process may take a while to reach the function
    deadline = time.time() + 120
    while marked(ha_live.markers, long) == 0 and time.time() < deadline:
        time.sleep(0.2)
    assert marked(ha_live.markers, long) == 1
    # accepted before the kills, waiting for the worker's one `ha_worker`
    queued = [orion.submit(on_worker(0.1, ha_live.markers)) for _ in range(3)]
    token_before = lease_token(ha_live.home)

    # 1. the GCS: Orion's supervisor starts it again, on the same port, from Redis
    old = kill_gcs(root)
    new = restarted(root, GCS_NAME, old)
    assert new != old
    orion.schedules_again(time.time())
    assert orion.get(long)["status"] == "running"

    # 2. Orion's actors on the head: Ray restarts them; the scheduler resumes from the store
    kill_orion_actors(root)
    orion.schedules_again(time.time())
    assert lease_token(ha_live.home) > token_before  # a new incarnation, a new fencing token
    assert find_process(root, GCS_NAME) == new  # the GCS was left alone this time

    done = orion.wait(long, ("completed", "failed", "cancelled"), 120)
    assert done["status"] == "completed" and done["attempt"] == 1, done
    assert marked(ha_live.markers, long) == 1  # ran once: kept through both kills
    assert runs(ha_live.home, long) == 1
    for wid in queued:  # accepted before the kills: none lost, none run twice
        w = orion.wait(wid, ("completed", "failed", "cancelled"), 120)
        assert w["status"] == "completed", w
        assert marked(ha_live.markers, wid) == 1 and runs(ha_live.home, wid) == 1
    health = orion.http.get("/health").json()
    assert health.get("status", "ok") in ("ok", "healthy") or json.dumps(health)
