"""Per-tenant serving limits: the pure limiter (clock passed in), the tenant config's validation,
and the limits on the in-process ``/v1`` routes and inference submissions (docs/serving-limits.md)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError as PydanticValidationError

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.config import TenantConfig
from orion_ray.policy.resilience import Breaker
from orion_ray.policy.serving_limits import ServingLimiter, estimate_tokens
from orion_ray.serving.limits_gate import configure_from_ring, limiter_of
from orion_ray.serving.router import ModelRouter
from orion_ray.serving_limits_config import ServingLimits

from .serving_fakes import LocalServing

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
OTHER = {"Authorization": "Bearer other-key"}


def lim(**kw) -> dict[str, ServingLimits]:
    return {"acme": ServingLimits.model_validate(kw)}


# == the pure limiter ===============================================================================
def test_requests_per_second_bucket_refuses_past_the_burst_and_says_when():
    limiter = ServingLimiter(lim(requests_per_second=2, burst=3))
    assert [limiter.check("acme", "chat", 0.0).allowed for _ in range(3)] == [True, True, True]
    v = limiter.check("acme", "chat", 0.0)
    assert not v.allowed and v.limit == "serving_limits.requests_per_second" and v.value == 2
    assert v.retry_after == pytest.approx(0.5)  # one request's worth at 2/s
    assert limiter.check("acme", "chat", 0.5).allowed  # refilled exactly then
    assert not limiter.check("acme", "chat", 0.5).allowed


def test_a_refused_request_takes_nothing_and_other_tenants_are_unaffected():
    limiter = ServingLimiter(
        {**lim(requests_per_second=1, tokens_per_minute=600), "other": ServingLimits(requests_per_second=1)}
    )
    assert limiter.check("acme", "chat", 0.0, tokens=10).allowed
    before = dict((k, b.level) for k, b in limiter._buckets.items())
    assert not limiter.check("acme", "chat", 0.0, tokens=10).allowed  # the rps bucket is empty
    assert {k: b.level for k, b in limiter._buckets.items()} == before  # the tokens were not taken
    assert limiter.check("other", "chat", 0.0).allowed
    assert limiter.check("nobody", "chat", 0.0).allowed  # not configured: not limited


def test_tokens_per_minute_charges_the_estimate_and_settles_the_answer():
    limiter = ServingLimiter(lim(tokens_per_minute=120))  # 2 tokens a second, 120 deep
    v = limiter.check("acme", "chat", 0.0, tokens=20)
    assert v.allowed and v.charged == 20
    limiter.settle("acme", "chat", 110, charged=v.charged, now=0.0)  # the answer was longer
    bucket = limiter._buckets[("acme", None, "tokens_per_minute")]
    assert bucket.level == pytest.approx(10)
    refused = limiter.check("acme", "chat", 0.0, tokens=30)
    assert not refused.allowed and refused.limit == "serving_limits.tokens_per_minute"
    assert refused.retry_after == pytest.approx(10.0)  # 20 more tokens at 2/s
    assert limiter.check("acme", "chat", 10.0, tokens=30).allowed
    limiter.settle("acme", "chat", 0, charged=30, now=10.0)  # a failed call gives it back
    assert bucket.level == pytest.approx(30)


def test_a_debt_past_zero_is_paid_by_refill_and_a_huge_prompt_passes_on_a_full_bucket():
    limiter = ServingLimiter(lim(tokens_per_minute=60))  # 1 token a second
    v = limiter.check("acme", "chat", 0.0, tokens=500)  # more than the bucket holds: passes when full
    assert v.allowed
    assert not limiter.check("acme", "chat", 100.0, tokens=1).allowed  # still paying 440 back
    w = limiter.check("acme", "chat", 100.0, tokens=1)
    assert w.retry_after == pytest.approx(341.0)


def test_per_model_limits_apply_with_the_tenants_and_name_the_model():
    limiter = ServingLimiter(lim(requests_per_second=100, models={"chat": {"requests_per_second": 1}}))
    assert limiter.check("acme", "chat", 0.0).allowed
    v = limiter.check("acme", "chat", 0.0)
    assert not v.allowed and v.limit == "serving_limits.models.chat.requests_per_second"
    assert limiter.check("acme", "embed", 0.0).allowed  # another model: only the tenant's limit


def test_share_splits_a_limit_between_replicas():
    limiter = ServingLimiter(lim(requests_per_second=4, burst=4), share=0.5)
    assert [limiter.check("acme", "m", 0.0).allowed for _ in range(3)] == [True, True, False]
    with pytest.raises(ValueError):
        ServingLimiter({}, share=0)


def test_reconfiguring_keeps_unchanged_buckets_and_resets_changed_ones():
    limiter = ServingLimiter(lim(requests_per_second=1))
    assert limiter.check("acme", "m", 0.0).allowed
    limiter.configure(lim(requests_per_second=1))
    assert not limiter.check("acme", "m", 0.0).allowed  # same limit: still empty
    limiter.configure(lim(requests_per_second=5))
    assert limiter.check("acme", "m", 0.0).allowed  # a new limit starts full
    limiter.configure({})
    assert all(limiter.check("acme", "m", 0.0).allowed for _ in range(50))


def test_a_clock_going_backwards_refills_nothing():
    limiter = ServingLimiter(lim(requests_per_second=1))
    assert limiter.check("acme", "m", 10.0).allowed
    assert not limiter.check("acme", "m", 5.0).allowed


def test_estimate_tokens_counts_prompt_and_messages():
    assert estimate_tokens({"prompt": "x" * 40}) == 10
    assert estimate_tokens({"messages": [{"role": "user", "content": "y" * 36}]}) == 10
    assert estimate_tokens({}) == 1


# == configuration ==================================================================================
def test_tenant_config_validates_serving_limits_naming_the_field():
    t = TenantConfig.model_validate(
        {
            "id": "acme",
            "serving_limits": {"requests_per_second": 5, "models": {"chat": {"tokens_per_minute": 1000}}},
        }
    )
    assert t.serving_limits is not None and t.serving_limits.models["chat"].tokens_per_minute == 1000
    for bad, where in [
        ({"requests_per_second": 0}, "requests_per_second"),
        ({"tokens_per_minute": -1}, "tokens_per_minute"),
        ({"burst": 3}, "burst needs requests_per_second"),
        ({"models": {"Not A Model": {}}}, "models"),
        ({"rps": 3}, "rps"),
    ]:
        with pytest.raises(PydanticValidationError, match=where):
            TenantConfig.model_validate({"id": "acme", "serving_limits": bad})


def test_the_key_ring_carries_the_serving_limits_to_the_api():
    from orion_ray.scheduler.tenants import TenantRegistry
    from orion_ray.store import SQLiteStore

    reg = TenantRegistry(SQLiteStore(":memory:"))
    reg.configure([{"id": "acme", "serving_limits": {"requests_per_second": 3}}], {})
    ring = reg.keyring()
    assert ring["serving_limits"] == {"acme": {"requests_per_second": 3.0, "models": {}}}

    class State:
        pass

    state = State()
    configure_from_ring(state, ring)
    assert limiter_of(state).limited("acme") and not limiter_of(state).limited("other")


# == through the API ================================================================================
@pytest.fixture
def env():
    serving = LocalServing()
    app = build_app(
        KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme", hash_key("other-key"): "other"})
    )
    router = ModelRouter(
        serving.client, serving.handle_of, table_ttl_s=0, report_every_s=0, breaker=Breaker(threshold=3)
    )
    app.state.serving, app.state.model_router = serving.client, router
    with TestClient(app) as client:
        r = client.post(
            "/internal/deployments/create",
            json={"model_id": "chat", "version": "v1", "engine": "test"},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        serving.running()
        yield client, app, serving


def complete(client, headers, **body):
    return client.post(
        "/v1/completions", json={"model": "chat", "prompt": "hello", "max_tokens": 4, **body}, headers=headers
    )


def test_a_burst_over_the_rate_is_429_with_retry_after_naming_the_limit(env):
    client, app, _ = env
    app.state.serving_limiter = ServingLimiter(lim(requests_per_second=0.5, burst=2))
    assert [complete(client, ACME).status_code for _ in range(2)] == [200, 200]
    r = complete(client, ACME)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"  # one request at 0.5/s
    err = r.json()["error"]
    assert err["code"] == "rate_limited" and "serving_limits.requests_per_second" in err["message"]
    assert err["details"][0]["field"] == "serving_limits.requests_per_second"
    assert complete(client, OTHER).status_code == 200  # another tenant is unaffected
    assert complete(client, ADMIN).status_code == 200  # the operator is never limited
    text = client.get("/metrics").text
    assert 'orion_serving_limited_total{limit="requests_per_second",tenant="acme"} 1.0' in text


def test_tokens_are_settled_counted_and_reported_for_records(env):
    client, app, serving = env
    app.state.serving_limiter = ServingLimiter(lim(tokens_per_minute=60))
    r = complete(client, ACME, max_tokens=6)
    assert r.status_code == 200
    usage = r.json()["usage"]
    bucket = app.state.serving_limiter._buckets[("acme", None, "tokens_per_minute")]
    assert 60 - bucket.level == pytest.approx(usage["total_tokens"], abs=0.5)  # estimate corrected
    text = client.get("/metrics").text
    assert (
        f'orion_serving_prompt_tokens_total{{model="chat",tenant="acme"}} {float(usage["prompt_tokens"])}'
        in text
    )
    assert (
        f'orion_serving_completion_tokens_total{{model="chat",tenant="acme"}} '
        f"{float(usage['completion_tokens'])}" in text
    )
    assert serving.manager.meter.tokens == {("chat--v1", "acme"): usage["total_tokens"]}


def test_a_streamed_answer_is_counted_when_it_ends_and_its_usage_never_reaches_the_client(env):
    client, app, serving = env
    app.state.serving_limiter = ServingLimiter(lim(tokens_per_minute=60))
    r = client.post(
        "/v1/chat/completions",
        json={
            "model": "chat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,
            "stream": True,
        },
        headers=ACME,
    )
    assert r.status_code == 200
    assert "orion.usage" not in r.text and r.text.rstrip().endswith("data: [DONE]")
    (tokens,) = serving.manager.meter.tokens.values()
    bucket = app.state.serving_limiter._buckets[("acme", None, "tokens_per_minute")]
    assert 60 - bucket.level == pytest.approx(tokens, abs=0.5)


def test_tokens_per_minute_refuses_once_spent(env):
    client, app, _ = env
    app.state.serving_limiter = ServingLimiter(lim(tokens_per_minute=12))
    codes = [complete(client, ACME, max_tokens=8).status_code for _ in range(3)]
    assert codes[0] == 200 and codes[-1] == 429
    r = complete(client, ACME, max_tokens=8)
    assert r.json()["error"]["details"][0]["field"] == "serving_limits.tokens_per_minute"
    assert int(r.headers["Retry-After"]) >= 1


def test_a_cache_hit_gives_the_estimate_back(env):
    client, app, serving = env
    app.state.serving_limiter = ServingLimiter(lim(tokens_per_minute=60))
    first = complete(client, ACME, temperature=0)
    bucket = app.state.serving_limiter._buckets[("acme", None, "tokens_per_minute")]
    spent = 60 - bucket.level
    assert complete(client, ACME, temperature=0).json() == first.json()  # cached
    assert 60 - bucket.level == pytest.approx(spent, abs=0.5)
    assert sum(serving.manager.meter.tokens.values()) == first.json()["usage"]["total_tokens"]


def test_inference_workload_submissions_are_limited_too(env):
    client, app, _ = env
    app.state.serving_limiter = ServingLimiter(lim(requests_per_second=0.1, burst=1))

    class Backend:
        async def submit(self, spec, tenant, who):
            return {"workload_id": "w1", "status": "queued", "queue_position": 1}

    app.state.backend = Backend()
    body = {"workload_type": "inference", "model_id": "chat", "input": "hi"}
    assert client.post("/api/v1/workloads", json=body, headers=ACME).status_code == 202
    r = client.post("/api/v1/workloads", json=body, headers=ACME)
    assert r.status_code == 429 and r.headers["Retry-After"] == "10"
    assert r.json()["error"]["details"][0]["field"] == "serving_limits.requests_per_second"


def test_reshare_keeps_each_buckets_fill_fraction():
    """A base URL's replica count changed: the share moves, what is left stays proportional
    (no extra burst at a scale, no emptied buckets)."""
    lim = ServingLimiter({"t": ServingLimits(requests_per_second=10, burst=10)}, share=0.5)
    assert [lim.check("t", "m", 0.0).allowed for _ in range(6)] == [True] * 5 + [False]
    lim.reshare(1.0, 0.0)  # empty stays empty
    assert not lim.check("t", "m", 0.0).allowed
    assert lim.check("t", "m", 0.1).allowed  # 10 a second now: 0.1 s gives one
    lim.reshare(0.25, 0.1)
    assert lim.share == 0.25
    assert [lim.check("t", "m", 1.1).allowed for _ in range(3)] == [True, True, False]  # depth 2.5
    with pytest.raises(ValueError):
        lim.reshare(0, 0.0)
