"""Orion's answers → AIWorkload status (``orion_ray.operator.status``), purely."""

from __future__ import annotations

import pytest

from orion_ray.operator import status as st

NOW, LATER = "2026-12-06T10:00:00Z", "2026-12-06T11:00:00Z"


@pytest.mark.parametrize(
    "orion,phase",
    [
        ("submitted", "Pending"),
        ("queued", "Queued"),
        ("preempted", "Queued"),
        ("starting", "Starting"),
        ("running", "Running"),
        ("completed", "Succeeded"),
        ("failed", "Failed"),
        ("cancelled", "Cancelled"),
        ("something-new", "Unknown"),
    ],
)
def test_workload_phases(orion, phase):
    assert st.from_workload({"workload_id": "w", "status": orion, "attempt": 1})["phase"] == phase


def test_a_completed_workload_carries_its_result_and_attempts():
    out = st.from_workload({"workload_id": "w", "status": "completed", "attempt": 2, "result": 6})
    assert out == {"phase": "Succeeded", "orionId": "w", "attempts": 2, "message": "", "result": {"value": 6}}


def test_a_large_result_is_not_copied_into_the_status():
    out = st.from_workload({"workload_id": "w", "status": "completed", "attempt": 1, "result": "x" * 10_000})
    assert out["result"] == {"truncated": True, "chars": 10_002}


def test_a_failed_workload_says_why():
    out = st.from_workload({"workload_id": "w", "status": "failed", "attempt": 3, "error": "boom"})
    assert out["phase"] == "Failed" and out["message"] == "boom" and "result" not in out


def test_pipeline_status_names_the_failed_node_and_the_most_attempts():
    run = {
        "submission_id": "k8s-u",
        "state": "failed",
        "nodes": [
            {"node_id": "a", "state": "succeeded", "attempt": 1},
            {"node_id": "b", "state": "failed", "attempt": 2, "error": "oops"},
        ],
    }
    out = st.from_pipeline(run)
    assert out == {"phase": "Failed", "orionId": "k8s-u", "attempts": 2, "message": "node b: oops"}


def _view(**kw):
    base = {
        "id": "m--r1",
        "version": "r1",
        "status": "healthy",
        "running_replicas": 3,
        "restarts": 0,
        "message": "",
        "spec": {"replicas": 3},
    }
    return {**base, **kw}


def test_a_healthy_deployment_is_ready_with_its_replicas():
    out = st.from_deployment(_view())
    assert out["phase"] == "Ready" and out["replicasReady"] == 3 and out["replicas"] == 3
    assert out["orionId"] == "m--r1" and out["version"] == "r1" and out["attempts"] == 1


def test_healthy_but_short_of_replicas_is_still_deploying():
    assert st.from_deployment(_view(running_replicas=1))["phase"] == "Deploying"


def test_autoscaling_is_ready_at_its_minimum_and_reports_its_initial_replicas():
    # Serve's autoscaler owns the count above the minimum: an idle model scaled down to it is Ready
    spec = {"autoscaling": {"min_replicas": 2, "max_replicas": 9, "initial_replicas": 3}}
    assert st.from_deployment(_view(spec=spec, running_replicas=1))["phase"] == "Deploying"
    assert st.from_deployment(_view(spec=spec, running_replicas=2))["phase"] == "Ready"
    assert st.from_deployment(_view(spec=spec))["replicas"] == 3


@pytest.mark.parametrize(
    "orion,phase",
    [("pending", "Deploying"), ("deploying", "Deploying"), ("unhealthy", "Degraded"), ("failed", "Failed")],
)
def test_deployment_phases(orion, phase):
    assert st.from_deployment(_view(status=orion))["phase"] == phase


def test_the_release_is_summarised():
    rel = {"strategy": "canary", "phase": "running", "step": 0, "weights": {"r1": 90, "r2": 10}, "stats": {}}
    out = st.from_deployment(_view(), rel)
    assert out["release"] == {
        "strategy": "canary",
        "phase": "running",
        "step": 0,
        "weights": {"r1": 90, "r2": 10},
    }


def test_conditions_keep_their_transition_time_while_unchanged():
    first = [st.condition("Ready", False, "Deploying", generation=1, now=NOW)]
    same = st.merge_conditions(first, [st.condition("Ready", False, "Deploying", generation=1, now=LATER)])
    assert same[0]["lastTransitionTime"] == NOW
    flipped = st.merge_conditions(same, [st.condition("Ready", True, "Ready", generation=1, now=LATER)])
    assert flipped[0]["lastTransitionTime"] == LATER and flipped[0]["status"] == "True"


def test_conditions_of_other_types_are_kept_and_sorted():
    old = [st.condition("Valid", True, "Accepted", generation=1, now=NOW)]
    out = st.merge_conditions(old, [st.condition("Ready", True, "Ready", generation=None, now=NOW)])
    assert [c["type"] for c in out] == ["Ready", "Valid"] and "observedGeneration" not in out[0]
