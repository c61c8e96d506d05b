"""Tried: a tenant taking the cluster: submitting at ``critical`` (or ``high``) with
``preemptible: false`` to preempt everyone and never be preempted back; filling the queue so every
other tenant gets 429; flooding the API with requests. Answered: a tenant submits only at the
classes it was granted (``allowed_priorities``, normal and below by default) and opts out of
preemption only with ``may_disable_preemption`` (403 naming ``priority`` / ``preemptible`` and
the allowed values; the admin may do either for it); each tenant has a queue cap by default
(half the queue, ``policy.default_tenant_max_queued``), so alice at her cap gets 429 while bob's
submissions are still accepted; each tenant has a request rate (a token bucket per tenant in the
API replica, ``api.rate_limit`` or the tenant's own ``rate_limit``): alice's burst gets 429
``rate_limited`` with ``Retry-After`` while bob's requests pass.

The cap and the rate are tightened for the test with ``orion reload`` (both are reloadable) and
put back as they were at the end, so the other modules of the suite see the usual Orion.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import pytest
import yaml

pytestmark = pytest.mark.e2e

TASK = {"workload_type": "task", "function": "math:factorial", "args": [5], "resources": {"cpu": 1}}
# stays queued for the whole test: no node has this resource
STUCK = {"workload_type": "task", "function": "math:factorial", "resources": {"custom": {"orion-never": 1}}}


@contextlib.contextmanager
def reloaded(live: Any, tmp_path: Any, *, policy: Any = None, alice: Any = None) -> Iterator[None]:
    """The live Orion with ``policy`` settings and ``alice``'s tenant fields added (``orion
    reload``), then the configuration it was started with again."""
    config = yaml.safe_load((live.home / "orion.yaml").read_text())
    config["orion"].setdefault("policy", {}).update(policy or {})
    for t in config["orion"]["tenants"]:
        if t["id"] == "alice":
            t.update(alice or {})
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(config))
    live.orion("reload", "--config", str(path))
    try:
        yield
    finally:
        live.orion("reload", "--config", str(live.home / "orion.yaml"))


def cancel_all(live: Any, ids: list[str]) -> None:
    with live.client("admin") as admin:
        for wid in ids:
            admin.delete(f"/api/v1/workloads/{wid}")


def test_a_tenant_cannot_take_a_protected_class_or_opt_out_of_preemption(live):
    r = live.submit("alice", {**TASK, "priority": "critical", "preemptible": False})
    assert r.status_code == 403, r.text  # on main: 202, and it preempted everyone
    error = r.json()["error"]
    assert error["details"][0]["field"] == "priority"
    assert "normal, low, best_effort" in error["details"][0]["problem"]
    r = live.submit("bob", {**TASK, "priority": "high"})
    assert r.status_code == 403 and r.json()["error"]["details"][0]["field"] == "priority"
    # the admin may, for a tenant (the operator's decision)
    with live.client("admin") as admin:
        spec = {**STUCK, "priority": "critical", "preemptible": False, "metadata": {"tenant_id": "alice"}}
        r = admin.post("/api/v1/workloads", json=spec)
        assert r.status_code == 202, r.text
        admin.delete(f"/api/v1/workloads/{r.json()['workload_id']}")


def test_one_tenant_at_its_queue_cap_leaves_room_for_the_others(live, tmp_path):
    ids: list[str] = []
    try:
        with reloaded(live, tmp_path, policy={"default_tenant_max_queued": 3}):
            for _ in range(3):
                r = live.submit("alice", STUCK)
                assert r.status_code == 202, r.text
                ids.append(r.json()["workload_id"])
            r = live.submit("alice", STUCK)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "queue_full" and int(r.headers["Retry-After"]) >= 1
            r = live.submit("bob", STUCK)
            assert r.status_code == 202, r.text  # on main: bob waited behind alice's flood
            ids.append(r.json()["workload_id"])
    finally:
        cancel_all(live, ids)


def test_a_burst_from_one_tenant_is_429_while_the_others_pass(live, tmp_path):
    # one request a hundred seconds, bursts of 5: the 6th request of a quick burst is refused
    with reloaded(live, tmp_path, alice={"rate_limit": {"per_tenant_rps": 0.01, "burst": 5}}):
        with live.client("alice") as alice, live.client("bob") as bob:
            codes = [alice.get("/api/v1/workloads?limit=1").status_code for _ in range(8)]
            assert 429 in codes and set(codes) <= {200, 429}, codes  # on main: all 200
            r = alice.get("/api/v1/workloads?limit=1")
            assert r.status_code == 429
            assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
            assert alice.get("/v1/models").status_code == 429  # the OpenAI-compatible routes too
            assert [bob.get("/api/v1/workloads?limit=1").status_code for _ in range(8)] == [200] * 8
            assert live.submit("bob", TASK).status_code == 202
            with live.client("admin") as admin:  # health, metrics and the admin are not limited
                assert admin.get("/health").status_code == 200
                assert admin.get("/metrics").status_code == 200
