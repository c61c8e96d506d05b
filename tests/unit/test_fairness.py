"""No tenant can starve the others (issue 14, item 3), without Ray: the priority classes and the
preemption opt-out a tenant was granted, the default per-tenant queue cap, and the per-tenant
request rate (the token bucket's arithmetic on an injected clock, then the API over it).

Every API test runs twice: through the scheduler (the in-process backend) and as a Serve replica
runs it, the submission written by ``StoreAccess`` (the two submission paths).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.rate_limit import RateLimiter, TokenBucket
from orion_ray.api.store_access import StoreAccess
from orion_ray.config import PolicyConfig, RateLimit, SchedulerConfig, TenantConfig, load_config
from orion_ray.errors import ConfigError, RateLimited
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.serving.router import ModelRouter
from orion_ray.store import SQLiteStore

from .serving_fakes import LocalServing

ADMIN = {"Authorization": "Bearer admin-key"}
ALICE = {"Authorization": "Bearer alice-key"}
BOB = {"Authorization": "Bearer bob-key"}
# a task that stays queued: no node has this resource
TASK = {"workload_type": "task", "function": "math:factorial", "resources": {"custom": {"never": 1}}}
KEYS = {hash_key("alice-key"): "alice", hash_key("bob-key"): "bob"}


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["scheduler", "store"])
def make(tmp_path, request):
    """``make(tenants, ...)`` → a TestClient over a fresh Orion configured with ``tenants``."""
    made = []

    def make(tenants, *, max_queue_size=10_000, policy=None, rate_limit=None):
        path = str(tmp_path / f"orion-{len(made)}.db")
        store = SQLiteStore(path)
        sched = Scheduler(store, runtime=FakeRuntime(), config=SchedulerConfig(max_queue_size=max_queue_size))
        access = StoreAccess(path, max_queue_size=max_queue_size) if request.param == "store" else None
        app = build_app(KeyRing([hash_key("admin-key")]), backend=sched, access=access, rate_limit=rate_limit)
        client = TestClient(app)
        made.append((client, store, access))
        ids = {t["id"] for t in tenants}
        keys = {h: t for h, t in KEYS.items() if t in ids}
        body = {"tenants": tenants, "keys": keys, **({"policy": policy} if policy else {})}
        r = client.post("/admin/v1/reload", headers=ADMIN, json=body)
        assert r.status_code == 200, r.text
        app.state.keyring_at = 0.0
        return client

    yield make
    for client, store, access in made:
        client.close()
        if access is not None:
            access.close()
        store.close()


def submit(client, headers, **fields):
    return client.post("/api/v1/workloads", json={**TASK, **fields}, headers=headers)


def refused(r, status, code, field):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert field in [d["field"] for d in error["details"]], error
    return error


# -- priority classes ------------------------------------------------------------------------------
@pytest.mark.parametrize("priority", ["critical", "high"])
def test_a_tenant_cannot_take_a_class_it_was_not_granted(make, priority):
    client = make([{"id": "alice"}, {"id": "bob"}])
    error = refused(submit(client, ALICE, priority=priority), 403, "forbidden", "priority")
    assert "normal, low, best_effort" in error["details"][0]["problem"]  # the allowed values
    for granted in ("normal", "low", "best_effort"):
        assert submit(client, ALICE, priority=granted).status_code == 202


def test_critical_and_not_preemptible_is_refused_for_a_tenant(make):
    """The finding: critical with ``preemptible: false`` preempted everyone and could not be
    preempted back."""
    client = make([{"id": "alice"}, {"id": "bob"}])
    r = submit(client, ALICE, priority="critical", preemptible=False)
    refused(r, 403, "forbidden", "priority")
    got = client.get("/api/v1/workloads", headers=ADMIN).json()["items"]
    assert got == []  # nothing was stored


def test_granted_classes_are_accepted_and_others_still_refused(make):
    client = make([{"id": "alice", "allowed_priorities": ["high", "normal"]}, {"id": "bob"}])
    assert submit(client, ALICE, priority="high").status_code == 202
    refused(submit(client, ALICE, priority="low"), 403, "forbidden", "priority")
    refused(submit(client, ALICE, priority="critical"), 403, "forbidden", "priority")
    refused(submit(client, BOB, priority="high"), 403, "forbidden", "priority")  # bob was not granted


def test_preemption_opt_out_needs_its_own_grant(make):
    client = make(
        [
            {"id": "alice", "allowed_priorities": ["critical", "high", "normal"]},
            {"id": "bob", "allowed_priorities": ["high"], "may_disable_preemption": True},
        ]
    )
    error = refused(
        submit(client, ALICE, priority="high", preemptible=False), 403, "forbidden", "preemptible"
    )
    assert "may_disable_preemption" in error["details"][0]["problem"]
    assert submit(client, ALICE, priority="high").status_code == 202
    assert submit(client, BOB, priority="high", preemptible=False).status_code == 202
    # the class rule still holds for everyone: only protected classes may opt out (422)
    bob_low = {"id": "bob", "allowed_priorities": ["low"], "may_disable_preemption": True}
    client2 = make([bob_low])
    refused(submit(client2, BOB, priority="low", preemptible=False), 422, "validation_error", "preemptible")


def test_the_admin_may_submit_at_any_class_for_a_tenant(make):
    client = make([{"id": "alice"}, {"id": "bob"}])
    r = submit(client, ADMIN, priority="critical", preemptible=False, metadata={"tenant_id": "alice"})
    assert r.status_code == 202, r.text
    assert submit(client, ADMIN, priority="critical").status_code == 202  # the default tenant


def test_without_tenants_nothing_changes(make):
    """A single-user Orion (no tenants): the admin's ``default`` tenant has every class."""
    client = make([])
    assert submit(client, ADMIN, priority="critical", preemptible=False).status_code == 202


def test_inference_submissions_pass_the_same_grants(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    app = build_app(KeyRing([hash_key("admin-key")]), backend=Scheduler(store, runtime=FakeRuntime()))
    serving = LocalServing()
    app.state.serving = serving.client
    app.state.model_router = ModelRouter(serving.client, serving.handle_of, table_ttl_s=0)
    with TestClient(app) as client:
        body = {"tenants": [{"id": "alice"}, {"id": "bob"}], "keys": KEYS}
        assert client.post("/admin/v1/reload", headers=ADMIN, json=body).status_code == 200
        model = {"model_id": "chat", "tenant_id": "alice"}
        client.post("/internal/deployments/create", headers=ADMIN, json=model).raise_for_status()
        client.app.state.keyring_at = 0.0
        ask = {"workload_type": "inference", "model_id": "chat", "input": "hi"}
        r = client.post("/api/v1/workloads", json={**ask, "priority": "critical"}, headers=ALICE)
        refused(r, 403, "forbidden", "priority")
        assert client.post("/api/v1/workloads", json=ask, headers=ALICE).status_code == 202
    store.close()


def test_the_scheduler_path_checks_the_grants(tmp_path):
    """A submission the replica cannot write (a deadline the policy checks) goes through the
    scheduler's own ``parse``: the same refusal there."""
    store = SQLiteStore(str(tmp_path / "o.db"))
    sched = Scheduler(store, runtime=FakeRuntime())
    client = TestClient(build_app(KeyRing([hash_key("admin-key")]), backend=sched))
    policy = {"refuse_infeasible_deadlines": True}
    body = {"tenants": [{"id": "alice"}, {"id": "bob"}], "keys": KEYS, "policy": policy}
    assert client.post("/admin/v1/reload", headers=ADMIN, json=body).status_code == 200
    client.app.state.keyring_at = 0.0
    r = submit(client, ALICE, priority="critical", deadline="2999-01-01T00:00:00Z")
    refused(r, 403, "forbidden", "priority")
    store.close()


def test_unknown_classes_in_the_config_are_refused(tmp_path):
    path = tmp_path / "orion.yaml"
    path.write_text("orion:\n  tenants:\n    - {id: a, allowed_priorities: [urgent]}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert e.value.details[0]["field"] == "orion.tenants.0.allowed_priorities"


def test_no_tenant_may_be_called_admin(tmp_path):
    """``who == "admin"`` is the operator in the submission checks: a tenant of that name would
    skip its grants."""
    path = tmp_path / "orion.yaml"
    path.write_text("orion:\n  tenants:\n    - {id: Admin}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert e.value.details[0]["field"] == "orion.tenants.0.id"


# -- the default per-tenant queue cap --------------------------------------------------------------
def test_the_default_cap_is_half_the_queue():
    p = PolicyConfig()
    assert p.tenant_queue_limit(TenantConfig(id="a"), 10_000) == 5_000
    assert p.tenant_queue_limit(TenantConfig(id="a"), 1) == 1
    assert p.tenant_queue_limit(TenantConfig(id="a", max_queued=7), 10_000) == 7
    assert p.tenant_queue_limit(None, 10_000) is None  # not a configured tenant: the global limit
    p = PolicyConfig(default_tenant_max_queued=3)
    assert p.tenant_queue_limit(TenantConfig(id="a"), 10_000) == 3
    assert p.tenant_queue_limit(TenantConfig(id="a", max_queued=9), 10_000) == 9


def test_the_admin_sees_each_tenants_grants_and_cap(make):
    client = make([{"id": "alice", "allowed_priorities": ["high"]}, {"id": "bob"}], max_queue_size=10)
    items = {t["tenant_id"]: t for t in client.get("/api/v1/tenants", headers=ADMIN).json()["items"]}
    assert items["alice"]["allowed_priorities"] == ["high"] and items["alice"]["max_queued"] == 5
    assert items["bob"]["allowed_priorities"] == ["normal", "low", "best_effort"]
    assert items["bob"]["may_disable_preemption"] is False


def test_one_tenant_filling_its_cap_leaves_room_for_the_others(make):
    """The finding: one tenant filled the global queue and every other tenant got 429."""
    client = make([{"id": "alice"}, {"id": "bob"}], max_queue_size=6)
    for _ in range(3):
        assert submit(client, ALICE).status_code == 202
    r = submit(client, ALICE)
    assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
    assert int(r.headers["Retry-After"]) >= 1
    assert "alice" in r.json()["error"]["message"]
    assert submit(client, BOB).status_code == 202


def test_the_default_cap_is_reloadable_and_a_tenant_limit_wins(make):
    client = make([{"id": "alice"}, {"id": "bob", "max_queued": 3}], policy={"default_tenant_max_queued": 1})
    assert submit(client, ALICE).status_code == 202
    assert submit(client, ALICE).status_code == 429
    for _ in range(3):
        assert submit(client, BOB).status_code == 202
    assert submit(client, BOB).status_code == 429


# -- the token bucket ------------------------------------------------------------------------------
def test_bucket_spends_its_burst_then_refills_at_the_rate():
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)  # one token comes back in 1/rate seconds
    assert b.take(0.25) == pytest.approx(0.25)
    assert b.take(0.5) == 0.0
    assert b.take(0.5) == pytest.approx(0.5)
    assert [b.take(100.0) for _ in range(3)] == [0.0] * 3  # refilled, but never above the burst
    assert b.take(100.0) > 0


def test_bucket_ignores_a_clock_going_backwards():
    b = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert b.take(10.0) == 0.0
    assert b.take(5.0) == pytest.approx(1.0)  # no refill, no negative time
    assert b.take(11.0) == 0.0


def test_limiter_per_tenant_with_retry_after():
    clock = Clock()
    lim = RateLimiter(RateLimit(per_tenant_rps=0.5, burst=2), clock=clock)
    lim.check("alice")
    lim.check("alice")
    with pytest.raises(RateLimited) as e:
        lim.check("alice")
    assert e.value.status_code == 429 and e.value.code == "rate_limited"
    assert e.value.retry_after == 2  # a token every 2 s, rounded up to whole seconds
    lim.check("bob")  # bob has his own bucket
    clock.t += 2
    lim.check("alice")


def test_limiter_overrides_disable_and_reset():
    clock = Clock()
    lim = RateLimiter(None, clock=clock)
    for _ in range(1000):
        lim.check("alice")  # no default: nobody is limited
    lim.set_overrides({"alice": RateLimit(per_tenant_rps=1, burst=1)})
    lim.check("alice")
    with pytest.raises(RateLimited):
        lim.check("alice")
    lim.set_overrides({"alice": RateLimit(per_tenant_rps=1, burst=5)})
    for _ in range(5):  # a changed limit starts a full bucket
        lim.check("alice")
    lim.set_overrides({"alice": RateLimit(enabled=False)})
    for _ in range(100):
        lim.check("alice")


def test_rate_limit_config_is_validated(tmp_path):
    path = tmp_path / "orion.yaml"
    path.write_text("orion:\n  api: {rate_limit: {per_tenant_rps: 0, burst: 1}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert e.value.details[0]["field"] == "orion.api.rate_limit.per_tenant_rps"
    assert load_config(None).orion.api.rate_limit.enabled  # on by default


# -- the rate limit on the API ---------------------------------------------------------------------
def limited(make, **tenant):
    client = make([{"id": "alice", **tenant}, {"id": "bob"}], rate_limit=RateLimit(per_tenant_rps=1, burst=3))
    clock = Clock()
    client.app.state.rate_limiter.clock = clock
    return client, clock


def test_a_burst_from_one_tenant_is_429_while_the_others_pass(make):
    client, clock = limited(make)
    for _ in range(3):
        assert client.get("/api/v1/workloads", headers=ALICE).status_code == 200
    r = client.get("/api/v1/workloads", headers=ALICE)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited" and set(r.json()) == {"error"}
    assert r.headers["Retry-After"] == "1"
    assert submit(client, ALICE).status_code == 429  # every route, submissions too
    assert submit(client, BOB).status_code == 202
    assert client.get("/api/v1/workloads", headers=BOB).status_code == 200
    for _ in range(20):  # the admin is not limited
        assert client.get("/api/v1/workloads", headers=ADMIN).status_code == 200
    clock.t += 1
    assert client.get("/api/v1/workloads", headers=ALICE).status_code == 200


def test_health_metrics_and_unauthenticated_requests_take_no_token(make):
    client, _ = limited(make)
    for _ in range(10):
        assert client.get("/health").status_code in (200, 503)
        assert client.get("/metrics").status_code == 200
        assert client.get("/api/v1/workloads").status_code == 401
    assert client.get("/api/v1/workloads", headers=ALICE).status_code == 200


def test_the_openai_routes_are_limited_too(make):
    client, _ = limited(make)
    codes = [client.get("/v1/models", headers=ALICE).status_code for _ in range(6)]
    assert codes[3:] == [429, 429, 429], codes
    assert client.get("/v1/models", headers=BOB).status_code != 429


def test_a_tenant_rate_limit_comes_with_the_tenants(make):
    """A tenant's own ``rate_limit`` (reloadable) replaces ``api.rate_limit`` for it alone."""
    client, _ = limited(make, rate_limit={"per_tenant_rps": 1, "burst": 1})
    assert client.get("/api/v1/workloads", headers=ALICE).status_code == 200
    assert client.get("/api/v1/workloads", headers=ALICE).status_code == 429
    for _ in range(3):
        assert client.get("/api/v1/workloads", headers=BOB).status_code == 200
