"""Rolling releases and serving's scaling events on a live Orion (issue 15, items 4 and 5): a
rolling release bounded by maxSurge that completes, a progressDeadline that rolls a never-ready
version back, and a manual scale seen in the scaling events and the replicas' detail."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import httpx

WAIT_S = 240  # a bound on waiting on a loaded 2-core machine, not a timing assertion


def until(what: str, probe: Callable[[], Optional[Any]], within_s: float = WAIT_S, every: float = 0.5) -> Any:
    end = time.monotonic() + within_s
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < end, f"waited {within_s}s for {what}"
        time.sleep(every)


def deploy(c: httpx.Client, **spec) -> None:
    r = c.post("/internal/deployments/create", json={"engine": "test", **spec})
    assert r.status_code == 201, r.text


def status(c: httpx.Client, dep_id: str) -> dict:
    r = c.get(f"/internal/deployments/{dep_id}/status")
    assert r.status_code == 200, r.text
    return r.json()


def healthy(c: httpx.Client, dep_id: str, n: int) -> dict:
    def ok():
        rows = c.get("/internal/deployments", params={"model_id": dep_id.split("--")[0]}).json()["items"]
        d = next(r for r in rows if r["id"] == dep_id)
        return d if d["status"] == "healthy" and d["running_replicas"] == n else None

    return until(f"{dep_id} healthy with {n}", ok)


def model_events(c: httpx.Client, model_id: str) -> list[dict]:
    items = c.get("/admin/v1/scaling/events", params={"kind": "model", "limit": 200}).json()["items"]
    return [e for e in items if (e.get("details") or {}).get("model_id") == model_id]


def test_a_rolling_release_bounded_by_max_surge_completes(admin):
    deploy(admin, model_id="roll", version="v1", replicas=2)
    deploy(admin, model_id="roll", version="v2", replicas=1)
    healthy(admin, "roll--v1", 2)
    healthy(admin, "roll--v2", 1)
    r = admin.put(
        "/internal/models/roll/release",
        json={
            "model_id": "roll",
            "stable": "v1",
            "candidate": "v2",
            "strategy": "rolling",
            "rolling": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadline": "3m"},
        },
    )
    assert r.status_code == 200, r.text
    peak, low = 0, 99
    end = time.monotonic() + WAIT_S
    while True:
        rows = admin.get("/internal/deployments", params={"model_id": "roll"}).json()["items"]
        peak = max(peak, sum(d["alive_replicas"] for d in rows))
        low = min(low, sum(d["running_replicas"] for d in rows))
        rel = admin.get("/internal/models/roll/release").json()
        if rel["phase"] != "running":
            break
        assert time.monotonic() < end, f"rollout still running: {rel}"
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
    r = admin.put(
        "/internal/models/stuck/release",
        json={
            "model_id": "stuck",
            "stable": "v1",
            "candidate": "v2",
            "strategy": "rolling",
            "rolling": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadline": "8s"},
        },
    )
    assert r.status_code == 200, r.text
    rel = until(
        "the rollback",
        lambda: (lambda x: x if x["phase"] != "running" else None)(
            admin.get("/internal/models/stuck/release").json()
        ),
    )
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
