"""The multi-tenant policy on a real local Ray: preemption end to end, and explain's estimates.

Weighted fair share under saturation has a module (and an Orion) of its own: test_fair_share_live.py.

Fake GPU nodes: H100 and A100, 4 GPUs each (8 in all). Run times are Orion's own records
(``started_at`` → ``finished_at``): the time each workload held its GPUs.
"""

from __future__ import annotations

import time

import pytest
import ray

from .conftest import start_orion, stop_orion

pytestmark = pytest.mark.integration

HOLD = "tests.integration.helpers:where_when"


@pytest.fixture(scope="module")
def orion_policy(ray_cluster, tmp_path_factory):
    handle = start_orion(
        ray_cluster,
        str(tmp_path_factory.mktemp("store") / "orion.db"),
        policy={"preemption": {"grace_period_s": 2}},
    )
    ray.get(
        handle.actor.configure_tenants.remote(
            # gold is granted critical (a configured tenant gets normal and below by default)
            [
                {"id": "gold", "weight": 2, "allowed_priorities": ["critical", "normal", "low"]},
                {"id": "silver", "weight": 1},
            ],
            {},
            None,
            "test",
        ),
        timeout=30,
    )
    try:
        yield handle
    finally:
        stop_orion()


def test_preemption_end_to_end(orion_policy, tmp_path):
    orion = orion_policy
    go = tmp_path / "go"
    victim = orion.submit(
        {
            "workload_type": "task",
            "function": HOLD,
            "args": [str(go)],
            "priority": "low",
            "resources": {"cpu": 0.1, "gpu": 4, "gpu_type": "H100"},
        },
        "silver",
    )
    assert orion.wait(victim, ("running", "failed"))["status"] == "running"
    urgent = orion.submit(
        {
            "workload_type": "task",
            "function": "math:factorial",
            "args": [5],
            "priority": "critical",
            "resources": {"cpu": 0.1, "gpu": 1, "gpu_type": "H100"},
        },
        "gold",
    )
    try:
        done = orion.wait(urgent, timeout=120)
        assert done["status"] == "completed" and done["result"] == 120, done
        v = orion.get(victim)
        statuses = [h["status"] for h in v["history"]]
        assert "preempted" in statuses and v["attempt"] == 2, v
        assert statuses.index("preempted") < len(statuses) - 1
        # the victim was stopped before the urgent work started
        t_pre = next(h["at"] for h in v["history"] if h["status"] == "preempted")
        assert t_pre <= done["started_at"]
    finally:
        go.touch()
    v = orion.wait(victim, timeout=120)
    assert v["status"] == "completed" and v["attempt"] == 2, v


def test_explain_estimates_start_from_running_work(orion_policy, tmp_path):
    orion = orion_policy
    go = tmp_path / "go"
    hold = {
        "workload_type": "task",
        "function": HOLD,
        "args": [str(go)],
        "timeout_s": 40,
        "resources": {"cpu": 0.1, "gpu": 4, "gpu_type": "A100"},
    }
    holder = orion.submit(hold, "gold")
    try:
        h = orion.wait(holder, ("running", "failed"))
        assert h["status"] == "running", h
        waiting = orion.submit({**hold, "timeout_s": 5}, "silver")
        e = {}
        for _ in range(50):  # the first cycle after submission records the reasons
            e = ray.get(orion.actor.explain.remote(waiting), timeout=30)
            if any(r["code"] == "capacity" for r in e["reasons"]):
                break
            time.sleep(0.1)
        assert e["status"] == "queued" and e["position"] == {"overall": 1, "tenant": 1}, e
        assert any(r["code"] == "capacity" for r in e["reasons"]), e
        start, end = _ts(e["estimated_start"]), _ts(e["estimated_completion"])
        assert abs(start - (_ts(h["started_at"]) + 40)) < 2, (e, h)  # when the holder times out
        assert abs(end - start - 5) < 0.01
    finally:
        go.touch()
    assert orion.wait(holder)["status"] == "completed"
    assert orion.wait(waiting)["status"] == "completed"


def _ts(value):
    if value is None:
        return None
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
