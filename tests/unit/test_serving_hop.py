"""The first hop of a model's own base URL (``orion_ray/serving/gate.py``), without Ray: the key
cache, tenant visibility, the release split answered locally or forwarded, streaming, errors, and
which version serves the base URL as versions come and go."""

from __future__ import annotations

import asyncio
import json

import pytest

from orion_ray.errors import SchedulerUnavailable, Unauthorized
from orion_ray.serving.first_hop import LocalHandle
from orion_ray.serving.gate import FirstHop, GateRouter, KeyCache, key_hash, route_of
from orion_ray.serving.manager import app_name
from orion_ray.serving_specs import DeploymentSpec
from serve_apps.llm.replica import LLMReplica

from .serving_fakes import LocalServing

KEYS = {"admin-key": None, "alice-key": "alice", "bob-key": "bob"}
BEARER = {k: f"Bearer {k}" for k in KEYS}


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def verifier(keys: dict, calls: list):
    by_hash = {key_hash(f"Bearer {k}"): t for k, t in keys.items()}

    async def verify(h: str) -> dict:
        calls.append(h)
        return {"valid": h in by_hash, "tenant_id": by_hash.get(h)}

    return verify


def run(coro):
    return asyncio.run(coro)


# -- the key cache ---------------------------------------------------------------------------------
def test_a_verified_key_is_checked_once_then_answered_from_memory():
    calls: list = []
    clock = Clock()
    keys = KeyCache(verifier(KEYS, calls), ttl_s=5, clock=clock)

    async def go():
        assert await keys.principal(BEARER["alice-key"]) == "alice"
        assert await keys.principal(BEARER["alice-key"]) == "alice"
        assert await keys.principal(BEARER["admin-key"]) is None

    run(go())
    assert len(calls) == 2


def test_concurrent_first_requests_share_one_verification():
    calls: list = []
    keys = KeyCache(verifier(KEYS, calls))

    async def go():
        return await asyncio.gather(*(keys.principal(BEARER["bob-key"]) for _ in range(20)))

    assert run(go()) == ["bob"] * 20 and len(calls) == 1


def test_missing_and_unknown_keys_are_401_and_unknown_ones_are_cached_briefly():
    calls: list = []
    clock = Clock()
    keys = KeyCache(verifier(KEYS, calls), negative_ttl_s=1, clock=clock)

    async def go():
        for auth in (None, "Basic abc", "Bearer wrong"):
            with pytest.raises(Unauthorized):
                await keys.principal(auth)
        with pytest.raises(Unauthorized):
            await keys.principal("Bearer wrong")
        assert len(calls) == 1  # the second wrong key came from the cache
        clock.t += 2
        with pytest.raises(Unauthorized):
            await keys.principal("Bearer wrong")
        assert len(calls) == 2

    run(go())


def test_a_revoked_key_stops_within_the_ttl():
    calls: list = []
    clock = Clock()
    live = dict(KEYS)
    keys = KeyCache(verifier(live, calls), ttl_s=4, clock=clock)

    async def go():
        assert await keys.principal(BEARER["alice-key"]) == "alice"
        # revoked: the verifier no longer knows it (a new closure over the smaller ring)
        keys.verify = verifier({k: t for k, t in KEYS.items() if k != "alice-key"}, calls)
        clock.t += 1
        assert await keys.principal(BEARER["alice-key"]) == "alice"  # inside half the TTL
        clock.t += 1.5  # past half: answered now, refreshed in the background
        assert await keys.principal(BEARER["alice-key"]) == "alice"
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(Unauthorized):
            await keys.principal(BEARER["alice-key"])

    run(go())


def test_past_the_ttl_a_request_waits_for_a_fresh_verdict():
    calls: list = []
    clock = Clock()
    keys = KeyCache(verifier(KEYS, calls), ttl_s=4, clock=clock)

    async def go():
        await keys.principal(BEARER["alice-key"])
        keys.verify = verifier({}, calls)
        clock.t += 10
        with pytest.raises(Unauthorized):
            await keys.principal(BEARER["alice-key"])

    run(go())


def test_an_unreachable_verifier_is_a_503_never_a_guess():
    async def down(h):
        raise ConnectionError("api restarting")

    keys = KeyCache(down)
    with pytest.raises(SchedulerUnavailable):
        run(keys.principal(BEARER["alice-key"]))


def test_the_cache_is_bounded():
    calls: list = []
    keys = KeyCache(verifier(KEYS, calls), max_entries=2)

    async def go():
        for k in ("admin-key", "alice-key", "bob-key"):
            await keys.principal(BEARER[k])

    run(go())
    assert len(keys._entries) == 2


# -- the gate --------------------------------------------------------------------------------------
def test_route_of_takes_whatever_prefix_the_proxy_leaves():
    assert route_of("/models/m/v1/chat/completions") == "chat"
    assert route_of("/v1/completions/") == "completion"
    assert route_of("/v1/models") == "models"
    assert route_of("/v1/embeddings") is None


class Env:
    """A model's versions in process, the gate running in the replica of ``front``."""

    def __init__(self, versions=("v1",), tenant=None, front="v1", **release):
        self.serving = LocalServing()
        for v in versions:
            self.serving.manager.create(
                DeploymentSpec(model_id="m", version=v, engine="test", tenant_id=tenant)
            )
        self.serving.running()
        if release:
            from orion_ray.serving_specs import ReleaseSpec

            self.serving.manager.set_release(ReleaseSpec.model_validate({"model_id": "m", **release}))
        own = app_name(f"m--{front}")
        self.replica = LLMReplica("test", {}, "m", front)
        self.local = LocalHandle(self.replica)
        self.forwarded: list[str] = []

        def handle_of(app):
            if app == own:
                return self.local
            self.forwarded.append(app)
            return self.serving.handle_of(app)

        self.calls: list = []
        self.router = GateRouter(self.serving.client, handle_of, report_every_s=0)
        self.gate = FirstHop("m", self.router, KeyCache(verifier(KEYS, self.calls)))

    def post(self, kind="completion", key="admin-key", **body):
        path = "/models/m/v1/" + ("chat/completions" if kind == "chat" else "completions")
        payload = {"prompt": "hello", "max_tokens": 3, **body}
        if kind == "chat":
            payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, **body}
        hdrs = {"authorization": BEARER[key]} if key else {}
        return run(self.gate.handle("POST", path, hdrs, json.dumps(payload).encode()))


def test_the_stable_version_is_answered_in_process_with_the_version_header():
    env = Env()
    a = env.post()
    assert a.status == 200 and a.headers["x-orion-model-version"] == "v1"
    assert a.body["object"] == "text_completion" and a.body["model"] == "m"
    assert env.forwarded == []
    assert env.post("chat").body["object"] == "chat.completion"


def test_the_url_names_the_model_whatever_the_body_says():
    env = Env()
    assert env.post(model="another-model").body["model"] == "m"


def test_keys_and_visibility_at_the_base_url():
    env = Env(tenant="alice")
    assert env.post(key=None).status == 401
    assert env.post(key="bob-key").status == 404  # another tenant's model does not exist
    assert env.post(key="alice-key").status == 200
    assert env.post(key="admin-key").status == 200
    models = run(env.gate.handle("GET", "/models/m/v1/models", {"authorization": BEARER["alice-key"]}, b""))
    assert models.status == 200 and models.body["data"][0]["id"] == "m"
    hidden = run(env.gate.handle("GET", "/models/m/v1/models", {"authorization": BEARER["bob-key"]}, b""))
    assert hidden.status == 404


def test_a_canary_share_is_forwarded_and_the_rest_stays_here():
    env = Env(
        versions=("v1", "v2"),
        strategy="canary",
        stable="v1",
        candidate="v2",
        steps=[{"weight": 10, "duration": "24h"}],
    )
    versions = [env.post(prompt=f"p{i}").headers["x-orion-model-version"] for i in range(400)]
    share = versions.count("v2") / len(versions)
    assert 0.04 < share < 0.18
    assert env.forwarded == [app_name("m--v2")]  # only the candidate is ever a handle
    assert env.serving.handles[app_name("m--v2")].calls == versions.count("v2")  # its share only
    samples = env.serving.manager.samples
    assert len(samples[("m", "v2")]) == versions.count("v2")  # outcomes reach the manager
    assert len(samples[("m", "v1")]) == versions.count("v1")


def test_streaming_stays_streaming():
    env = Env()
    a = env.post(stream=True, max_tokens=4)
    assert a.status == 200 and a.stream is not None and a.headers["x-orion-model-version"] == "v1"

    async def read():
        return [c async for c in a.stream]

    chunks = run(read())
    assert chunks[-1] == b"data: [DONE]\n\n" and len(chunks) >= 5


def test_bad_input_is_a_4xx_naming_the_field():
    env = Env()
    a = env.post(max_tokens=100_000)
    assert a.status == 422 and a.body["error"]["details"][0]["field"] == "max_tokens"
    bad = run(env.gate.handle("POST", "/v1/completions", {"authorization": BEARER["admin-key"]}, b"{"))
    assert bad.status == 400 and bad.body["error"]["code"] == "malformed_json"
    arr = run(env.gate.handle("POST", "/v1/completions", {"authorization": BEARER["admin-key"]}, b"[]"))
    assert arr.status == 422
    assert run(env.gate.handle("GET", "/v1/completions", {}, b"")).status == 405
    assert run(env.gate.handle("POST", "/v1/embeddings", {}, b"")).status == 404


def test_checks_plug_in_after_the_key_and_can_refuse():
    from orion_ray.errors import OrionError

    class Limited(OrionError):
        status_code = 429
        code = "rate_limited"

    seen = []

    async def limit(tenant, model_id, body):
        seen.append((tenant, model_id))
        if tenant == "alice":
            raise Limited("over the limit", retry_after=3)

    env = Env()
    env.gate.checks.append(limit)
    a = env.post(key="alice-key")
    assert a.status == 429 and a.headers["Retry-After"] == "3"
    assert env.post(key="admin-key").status == 200
    assert seen == [("alice", "m"), (None, "m")]


def test_a_stale_table_is_refreshed_in_the_background():
    env = Env()
    clock = Clock()
    env.router.clock = clock

    async def go():
        await env.router.table()
        reads = []
        orig = env.serving.client.call

        async def counted(method, *args):
            reads.append(method)
            return await orig(method, *args)

        env.serving.client.call = counted
        clock.t += 0.5
        await env.router.table()
        assert reads == []
        clock.t += 5
        await env.router.table()  # answered with the old table; the new one is on its way
        await asyncio.sleep(0)
        assert reads == ["routing_table"]

    run(go())


# -- which version serves the base URL -------------------------------------------------------------
def test_the_first_version_serves_the_base_url_and_it_moves_when_undeployed():
    s = LocalServing()
    m = s.manager
    m.create(DeploymentSpec(model_id="m", version="v1", engine="test"))
    m.create(DeploymentSpec(model_id="m", version="v2", engine="test"))
    assert s.deployer.fronts == {"m": app_name("m--v1")}
    assert m.view("m--v1")["base_url"] == "/models/m/v1" and m.view("m--v2")["base_url"] is None
    m.restart("m--v1")
    assert s.deployer.fronts == {"m": app_name("m--v1")}
    m.delete("m--v1")
    assert s.deployer.fronts == {"m": app_name("m--v2")} and m.view("m--v2")["base_url"] == "/models/m/v1"
    assert any(e["kind"] == "base_url_moved" for e in m.list_events("m"))


def test_a_model_deployed_before_base_urls_gets_one_with_its_next_version():
    s = LocalServing()
    s.manager.create(DeploymentSpec(model_id="old", version="v1", engine="test"))
    s.manager.deployments["old--v1"].pop("front")  # as saved by a manager without base URLs
    s.deployer.fronts.clear()
    s.deployer.routes.clear()  # its Serve app had no route
    s.manager.create(DeploymentSpec(model_id="old", version="v2", engine="test"))
    assert s.deployer.fronts == {"old": app_name("old--v2")}


def test_the_serve_deployer_puts_the_front_on_the_models_route(monkeypatch):
    from ray import serve

    from orion_ray.serving.deployer import ServeDeployer

    calls = []
    monkeypatch.setattr(
        serve, "_run", lambda bound, name, route_prefix, _blocking: calls.append(route_prefix)
    )
    spec = DeploymentSpec(model_id="m", version="v1", engine="test")
    ServeDeployer(direct_prefix="/direct").deploy(spec, "orion-llm-m--v1", 0, front=True)
    ServeDeployer(direct_prefix="/direct").deploy(spec, "orion-llm-m--v1", 0)
    ServeDeployer().deploy(spec, "orion-llm-m--v1", 0)
    assert calls == ["/models/m", "/direct/m--v1", None]


# -- the API replica's side: verifying a key by its hash -------------------------------------------
def test_the_api_verifies_a_key_hash_against_the_ring_requests_use():
    from orion_ray.api.app import build_app
    from orion_ray.api.auth import KeyRing, hash_key

    class Backend:
        async def keyring(self):
            return {"keys": {hash_key("alice-key"): "alice"}, "admins": []}

    app = build_app(KeyRing([hash_key("admin-key")]), backend=Backend())

    async def go():
        admin = await app.state.key_principal(hash_key("admin-key"))
        alice = await app.state.key_principal(hash_key("alice-key"))
        nobody = await app.state.key_principal(hash_key("wrong"))
        return admin, alice, nobody

    admin, alice, nobody = run(go())
    assert admin.is_admin and alice.tenant_id == "alice" and nobody is None


def test_the_tenants_request_rate_holds_at_the_base_url():
    from orion_ray.serving.gate import request_rate

    by_hash = {key_hash(BEARER["alice-key"]): "alice", key_hash(BEARER["admin-key"]): None}

    async def verify(h):
        t = by_hash.get(h, "?")
        limit = {"per_tenant_rps": 1, "burst": 2} if t == "alice" else None
        return {"valid": h in by_hash, "tenant_id": by_hash.get(h), "rate_limit": limit}

    env = Env()
    clock = Clock()
    env.gate.keys = KeyCache(verify)
    env.gate.checks.append(request_rate(env.gate.keys, clock=clock))
    assert [env.post(key="alice-key").status for _ in range(3)] == [200, 200, 429]
    assert env.post(key="alice-key").headers["Retry-After"] == "1"
    assert all(env.post(key="admin-key").status == 200 for _ in range(5))  # the admin: never
    clock.t += 1
    assert env.post(key="alice-key").status == 200


def test_serving_limits_and_token_usage_hold_at_the_base_url():
    """A tenant's ``serving_limits`` (from its key's verdict) refuse at the model's own URL with
    the limit named, and every answer's tokens reach the router's usage report."""
    from orion_ray.serving.limits_gate import FirstHopLimits

    by_hash = {key_hash(BEARER[k]): t for k, t in KEYS.items()}
    limits = {"alice": {"requests_per_second": 1, "burst": 2}}

    async def verify(h):
        t = by_hash.get(h)
        return {"valid": h in by_hash, "tenant_id": t, "serving_limits": limits.get(t)}

    env = Env()
    clock = Clock()
    env.gate.keys = KeyCache(verify)
    env.gate.usage = FirstHopLimits(env.gate.keys, env.router, clock=clock)
    used: list = []
    env.router.usage = lambda *item: used.append(item)  # type: ignore[method-assign]
    got = [env.post(key="alice-key") for _ in range(3)]
    assert [a.status for a in got] == [200, 200, 429]
    assert got[2].body["error"]["details"][0]["field"] == "serving_limits.requests_per_second"
    assert int(got[2].headers["Retry-After"]) >= 1
    assert all(env.post(key="bob-key").status == 200 for _ in range(4))  # bob has no limit
    clock.t += 1
    assert env.post(key="alice-key").status == 200
    # tokens of every answer, limited tenant or not, by tenant, model and version
    assert {u[0] for u in used} == {"alice", "bob"} and all(u[1:3] == ("m", "v1") for u in used)
    assert len(used) == 7 and all(u[3] + u[4] > 0 for u in used)


def test_a_serving_limit_at_the_base_url_holds_for_the_model_not_for_each_replica():
    """Each of the front's N running replicas (the routing table's count) holds 1/N of the
    tenant's limit: two replicas taking alice's requests in turn admit her burst once, not
    twice; when the model scales to one replica, that one holds the whole limit."""
    from orion_ray.serving.limits_gate import FirstHopLimits

    by_hash = {key_hash(BEARER[k]): t for k, t in KEYS.items()}
    limits = {"alice": {"requests_per_second": 2, "burst": 4}}

    async def verify(h):
        t = by_hash.get(h)
        return {"valid": h in by_hash, "tenant_id": t, "serving_limits": limits.get(t)}

    env, clock = Env(), Clock()
    env.serving.deployer.statuses_by_app[app_name("m--v1")]["running"] = 2
    env.serving.manager.refresh_status()
    env.gate.keys = KeyCache(verify)
    # two replicas of the front, each with its own limiter, as Serve's proxy spreads requests
    replicas = [
        FirstHopLimits(env.gate.keys, env.router, own_app=app_name("m--v1"), clock=clock) for _ in "ab"
    ]
    statuses = []
    for i in range(6):
        env.gate.usage = replicas[i % 2]
        statuses.append(env.post(key="alice-key").status)
    assert statuses.count(200) == 4 and statuses[-2:] == [429, 429]  # the burst of 4, once
    assert replicas[0].replicas("m") == 2
    # scaled to one replica: it holds the whole limit, its buckets as full as they were (empty)
    env.serving.deployer.statuses_by_app[app_name("m--v1")]["running"] = 1
    env.serving.manager.refresh_status()
    env.router._table = None  # the next request reads the table again, and waits for it
    env.router.refresh()
    env.gate.usage = replicas[0]
    assert env.post(key="alice-key").status == 429
    clock.t += 2  # 2 s at 2 requests a second refill the one replica's bucket with 4
    assert [env.post(key="alice-key").status for _ in range(5)] == [200] * 4 + [429]
    # no own app (an in-process gate): the whole limit
    assert FirstHopLimits(env.gate.keys, env.router).replicas("m") == 1
