"""Tried: one tenant reading, listing, cancelling or submitting as another through the REST API;
calling without a key or with a wrong one. Answered: 401 without a valid key, 403 for submitting as
another tenant, 404 (not 403: an id's existence is not disclosed) for another tenant's workload."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

TASK = {"workload_type": "task", "function": "math:factorial", "args": [5], "resources": {"cpu": 1}}


def test_no_key_or_a_wrong_key_is_401(live):
    import httpx

    assert httpx.get(live.url + "/api/v1/workloads").status_code == 401
    bad = {"Authorization": "Bearer not-a-key"}
    assert httpx.post(live.url + "/api/v1/workloads", json=TASK, headers=bad).status_code == 401


def test_a_tenant_cannot_see_or_touch_another_tenants_workload(live):
    r = live.submit("alice", TASK)
    assert r.status_code == 202, r.text
    wid = r.json()["workload_id"]
    with live.client("bob") as bob:
        assert bob.get(f"/api/v1/workloads/{wid}").status_code == 404
        assert bob.get(f"/api/v1/workloads/{wid}/logs").status_code == 404
        assert bob.get(f"/api/v1/workloads/{wid}/explain").status_code == 404
        assert bob.delete(f"/api/v1/workloads/{wid}").status_code == 404
        listed = bob.get("/api/v1/workloads").json()
        assert wid not in {w["workload_id"] for w in listed["items"]}
    with live.client("alice") as alice:
        assert alice.get(f"/api/v1/workloads/{wid}").status_code == 200


def test_a_tenant_cannot_submit_as_another(live):
    r = live.submit("bob", {**TASK, "metadata": {"tenant_id": "alice"}})
    assert r.status_code == 403, r.text
