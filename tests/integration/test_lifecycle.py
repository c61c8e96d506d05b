"""Cancel in every state, timeouts, retries with backoff, and work waiting on GPUs held outside Orion."""

from __future__ import annotations

import os
import time
from datetime import datetime

import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group

from .conftest import wait_for
from .test_run import pg_state

pytestmark = pytest.mark.integration

SLEEP = "tests.integration.helpers:sleep_then"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _statuses(w: dict) -> list[str]:
    return [h["status"] for h in w["history"]]


def test_cancel_queued(orion):
    # a custom resource no node has: it can never be placed, so it stays queued
    wid = orion.submit(
        {
            "workload_type": "task",
            "function": SLEEP,
            "args": [1],
            "resources": {"cpu": 0.1, "custom": {"no-such-thing": 1}},
        }
    )
    w = orion.wait(wid, ("queued",))
    time.sleep(0.3)
    assert orion.get(wid)["status"] == "queued"
    assert "could ever hold" in (orion.get(wid)["reason"] or "")
    w = orion.cancel(wid)
    assert w["status"] == "cancelled"
    assert _statuses(orion.get(wid))[-2:] == ["queued", "cancelled"]
    assert orion.cancel(wid)["status"] == "cancelled"  # idempotent


def _block_node_gpus(gpu_type: str):
    """A placement group Orion does not know about, holding every GPU of one node; returns it
    with the node's id."""
    node = [n["NodeID"] for n in ray.nodes() if n["Labels"].get("ray.io/accelerator-type") == gpu_type][0]
    pg = placement_group([{"GPU": 4}], bundle_label_selector=[{"ray.io/node-id": node}])
    ray.get(pg.ready(), timeout=30)
    return pg, node


@pytest.mark.parametrize("kind", ["task", "job"])
def test_cancel_running_stops_the_work(orion, tmp_path, kind):
    beat = str(tmp_path / "beat")
    if kind == "task":
        spec = {
            "workload_type": "task",
            "function": SLEEP,
            "args": [60],
            "kwargs": {"heartbeat": beat},
            "resources": {"cpu": 0.5},
        }
    else:
        spec = {
            "workload_type": "job",
            "resources": {"cpu": 0.5},
            "entrypoint": f"while true; do echo -n . >> {beat}; sleep 0.1; done",
        }
    wid = orion.submit(spec)
    orion.wait(wid, ("running",), timeout=60)
    wait_for(lambda: os.path.exists(beat) and os.path.getsize(beat) > 3, 30, what="heartbeats")
    t0 = time.time()
    assert orion.cancel(wid)["status"] == "cancelled"
    wait_for(lambda: pg_state(wid) == "REMOVED", 10, what="group removed")

    # the work itself has stopped: the heartbeat file stops growing
    def stopped():
        a = os.path.getsize(beat)
        time.sleep(0.5)
        return os.path.getsize(beat) == a

    wait_for(stopped, 10, 0.1, "the work to stop")
    assert time.time() - t0 < 15
    assert orion.get(wid)["status"] == "cancelled"


@pytest.mark.parametrize("kind", ["task", "job"])
def test_timeout_fails_and_stops(orion, kind):
    if kind == "task":
        spec = {
            "workload_type": "task",
            "function": SLEEP,
            "args": [60],
            "timeout_s": 1.5,
            "resources": {"cpu": 0.5},
        }
    else:
        spec = {"workload_type": "job", "entrypoint": "sleep 60", "timeout_s": 1.5, "resources": {"cpu": 0.5}}
    wid = orion.submit(spec)
    w = orion.wait(wid, timeout=60)
    assert w["status"] == "failed", w
    assert "timed out after 1.5s" in w["error"]
    assert w["attempt"] == 1
    wait_for(lambda: pg_state(wid) == "REMOVED", 10, what="group removed")


def test_retry_with_exponential_backoff(orion):
    wid = orion.submit(
        {
            "workload_type": "task",
            "function": "tests.integration.helpers:fail",
            "args": ["flaky"],
            "max_retries": 2,
            "resources": {"cpu": 0.5},
        }
    )
    w = orion.wait(wid, timeout=60)
    assert w["status"] == "failed" and "flaky" in w["error"]
    assert w["attempt"] == 3
    hist = w["history"]
    assert _statuses(w).count("running") == 3
    assert [h["attempt"] for h in hist if h["status"] == "running"] == [1, 2, 3]
    # the backoff doubles: base 0.2 s, then 0.4 s between a failure and the next start
    requeued = [i for i, h in enumerate(hist) if h["status"] == "queued" and i > 1]
    gaps = [_ts(hist[i + 1]["at"]) - _ts(hist[i]["at"]) for i in requeued]
    assert len(gaps) == 2 and gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps


def test_retry_then_success_keeps_result(orion, tmp_path):
    # fails while a marker file is absent, creates it: the second attempt succeeds
    marker = tmp_path / "ran-once"
    wid = orion.submit(
        {
            "workload_type": "job",
            "max_retries": 1,
            "resources": {"cpu": 0.5},
            "entrypoint": f"test -f {marker} && echo second || (touch {marker}; echo first; exit 1)",
        }
    )
    w = orion.wait(wid, timeout=90)
    assert w["status"] == "completed" and w["attempt"] == 2, w
    assert "second" in orion.logs(wid)


def test_gpus_blocked_outside_orion_keep_work_queued_then_it_runs(orion):
    """Ray usage outside Orion is in Orion's snapshot: no reservation is asked for GPUs another
    group holds (the readiness timeout remains for the second in which the view may be stale)."""
    blocker, node = _block_node_gpus("A100")
    released = False

    def free_gpus() -> float:
        frag = ray.get(orion.actor.fragmentation.remote(), timeout=30)
        return next(r for r in frag["nodes"] if r["node_id"] == node)["free_gpus"]

    try:
        # Orion's node view is refreshed in the background: submit once it sees the held GPUs
        # (a fixed pause is not always enough on a busy machine)
        wait_for(lambda: free_gpus() == 0.0, 60, what="Orion's node view to see the held GPUs")
        wid = orion.submit(
            {
                "workload_type": "task",
                "function": "math:factorial",
                "args": [5],
                "resources": {"cpu": 0.1, "gpu": 4, "gpu_type": "A100"},
            }
        )
        w = wait_for(
            lambda: (lambda w: w if w["reason"] else None)(orion.get(wid)), 30, 0.2, "a reason to wait"
        )
        assert w["status"] == "queued" and "free resources" in w["reason"], w
        assert "starting" not in _statuses(w)
        remove_placement_group(blocker)
        released = True
        w = orion.wait(wid, timeout=60)
        assert w["status"] == "completed" and w["result"] == 120
        assert w["attempt"] == 1
    finally:
        if not released:
            remove_placement_group(blocker)
