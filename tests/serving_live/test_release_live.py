"""Rolling releases and serving's scaling events on a live Orion (issue 15, items 4 and 5): a
rolling release bounded by maxSurge that completes, a progressDeadline that rolls a never-ready
version back, a manual scale seen in the scaling events and the replicas' detail, and Serve's own
autoscaling decision as an event."""

from __future__ import annotations

import time

import pytest

from .conftest import WAIT_S, deploy, healthy, model_events, release_ended, start_rolling, status, until

pytestmark = pytest.mark.e2e


def test_a_rolling_release_bounded_by_max_surge_completes(admin):
    deploy(admin, model_id="roll", version="v1", replicas=2)
    deploy(admin, model_id="roll", version="v2", replicas=1)
    healthy(admin, "roll--v1", 2)
    healthy(admin, "roll--v2", 1)
    start_rolling(admin, "roll", "3m")
    peak, low = 0, 99
    end = time.monotonic() + WAIT_S
    while True:
        rows = admin.get("/internal/deployments", params={"model_id": "roll"}).json()["items"]
        peak = max(peak, sum(d["alive_replicas"] for d in rows))
        low = min(low, sum(d["running_replicas"] for d in rows))
        rel = release_ended(admin, "roll")
        if rel is not None:
            break
        assert time.monotonic() < end, admin.get("/internal/models/roll/release").json()
        time.sleep(0.3)
    assert rel["phase"] == "promoted" and rel["weights"] == {"v1": 0.0, "v2": 100.0}, rel
    assert peak <= 3, f"{peak} replicas alive at once with desired 2 and maxSurge 1"
    assert low >= 2, f"only {low} running with maxUnavailable 0"
    healthy(admin, "roll--v2", 2)
    out = admin.post("/v1/completions", json={"model": "roll", "prompt": "hi", "max_tokens": 2})
    assert out.status_code == 200 and out.headers["x-orion-model-version"] == "v2"
    kinds = [e["kind"] for e in admin.get("/internal/events", params={"model_id": "roll"}).json()["items"]]
    assert kinds[0] == "promoted" and "advanced" in kinds
    rollout = until(
        "the rollout's scaling events",
        lambda: [e for e in model_events(admin, "roll") if e["trigger"] == "rollout"],
    )
    assert all(e["before"] is not None and e["after"] is not None and e["outcome"] for e in rollout)


def test_a_version_never_ready_rolls_back_after_its_progress_deadline(admin):
    deploy(admin, model_id="stuck", version="v1", replicas=1)
    deploy(admin, model_id="stuck", version="v2", replicas=1, engine_args={"latency_s": "never"})
    healthy(admin, "stuck--v1", 1)
    start_rolling(admin, "stuck", "8s")
    rel = until("the rollback", lambda: release_ended(admin, "stuck"))
    assert rel["phase"] == "rolled_back" and rel["weights"] == {"v1": 100.0, "v2": 0.0}, rel
    event = admin.get("/internal/events", params={"model_id": "stuck"}).json()["items"][0]
    assert event["kind"] == "rolled_back" and "progressDeadline" in event["message"]
    healthy(admin, "stuck--v1", 1)
    out = admin.post("/v1/completions", json={"model": "stuck", "prompt": "hi", "max_tokens": 2})
    assert out.status_code == 200 and out.headers["x-orion-model-version"] == "v1"


def test_a_manual_scale_is_a_scaling_event_and_status_shows_each_replica(admin):
    deploy(admin, model_id="scaled", version="v1", replicas=1)
    healthy(admin, "scaled--v1", 1)
    r = admin.post("/admin/v1/models/scaled/scale", json={"replicas": 2})
    assert r.status_code == 200, r.text
    healthy(admin, "scaled--v1", 2)
    [event] = until(
        "the scale's event", lambda: [e for e in model_events(admin, "scaled") if e["trigger"] == "manual"]
    )
    assert (event["before"], event["after"], event["outcome"]) == (1, 2, "completed"), event
    assert event["details"]["deployment"] == "scaled--v1" and event["duration_s"] >= 0
    assert not [e for e in model_events(admin, "scaled") if e["trigger"] == "serve_autoscaler"]
    st = status(admin, "scaled--v1")
    replicas = st["replicas"]
    assert len(replicas) == 2 and len({x["replica_id"] for x in replicas}) == 2, st
    for x in replicas:
        assert x["node_id"] and x["state"] == "RUNNING" and x["gpus"] == 0 and x["restarts"] == 0, x
        assert x["last_health_check"]["ok"] is True and x["last_health_check"]["at"] > 0, x


def test_serves_own_autoscaling_decision_is_a_scaling_event(admin):
    """An idle autoscaled model started at 2 replicas is taken to its minimum by Serve's own
    autoscaler (after its 5 s downscale delay): that decision, which Orion did not ask for, is a
    scaling event of trigger ``serve_autoscaler``, 2 → 1, completed."""
    auto = {"min_replicas": 1, "max_replicas": 2, "initial_replicas": 2, "downscale_delay": 5}
    deploy(admin, model_id="auto", version="v1", autoscaling=auto)

    def decided():
        return [
            e
            for e in model_events(admin, "auto")
            if e["trigger"] == "serve_autoscaler" and e["outcome"] == "completed"
        ]

    events = until("Serve's autoscaling decision as an event", decided)
    assert [(e["before"], e["after"]) for e in events] == [(2, 1)], events
    assert events[0]["details"]["deployment"] == "auto--v1"
    healthy(admin, "auto--v1", 1)
    assert not [e for e in model_events(admin, "auto") if e["trigger"] == "manual"]
