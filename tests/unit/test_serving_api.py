"""Serving through Orion's API in-process: the deployment routes over a manager without Serve, and
the OpenAI routes over in-process test replicas (the real replica and router code, no Ray)."""

import json

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.policy.resilience import Breaker
from orion_ray.serving.router import ModelRouter

from .serving_fakes import LocalServing
from .test_api import assert_error

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
OTHER = {"Authorization": "Bearer other-key"}


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def env():
    clock = Clock()
    serving = LocalServing(clock=clock)
    app = build_app(
        KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme", hash_key("other-key"): "other"})
    )
    router = ModelRouter(
        serving.client,
        serving.handle_of,
        table_ttl_s=0,
        report_every_s=0,
        breaker=Breaker(threshold=3, cooldown_s=60),
        clock=clock,
    )
    app.state.serving, app.state.model_router = serving.client, router
    with TestClient(app) as client:
        yield client, serving, router, clock


def deploy(client, **spec):
    body = {"model_id": "chat", "version": "v1", "engine": "test", **spec}
    r = client.post("/internal/deployments/create", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()


def canary(client, candidate_args=None, steps=None, **criteria):
    """Versions v1 and v2 of ``chat`` (v2's engine built with ``candidate_args``) and a canary."""
    deploy(client, version="v1")
    deploy(client, version="v2", engine_args=candidate_args or {})
    r = client.put(
        "/internal/models/chat/release",
        headers=ADMIN,
        json={
            "model_id": "chat",
            "strategy": "canary",
            "stable": "v1",
            "candidate": "v2",
            "steps": steps,
            "success_criteria": criteria,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()


def complete(client, headers=ADMIN, **body):
    return client.post(
        "/v1/completions", json={"model": "chat", "prompt": "hello", "max_tokens": 4, **body}, headers=headers
    )


# -- deployment management -------------------------------------------------------------------------
def test_deploy_list_status_scale_restart_undeploy(env):
    client, serving, _, _ = env
    d = deploy(client, gpus_per_replica=1, replicas=2, tenant_id="acme")
    assert d["id"] == "chat--v1" and d["status"] == "pending" and d["app"] == "orion-llm-chat--v1"
    assert_error(
        client.post(
            "/internal/deployments/create", headers=ADMIN, json={"model_id": "chat", "version": "v1"}
        ),
        409,
        "conflict",
    )
    serving.running()
    serving.manager.tick()
    st = client.get("/internal/deployments/chat--v1/status", headers=ADMIN).json()
    assert st["status"] == "healthy" and st["running_replicas"] == 1
    assert [
        x["id"] for x in client.get("/internal/deployments?tenant_id=acme", headers=ADMIN).json()["items"]
    ] == ["chat--v1"]
    assert client.get("/internal/deployments?model_id=nope", headers=ADMIN).json()["items"] == []
    gpus = client.get("/internal/serving/gpus", headers=ADMIN).json()
    assert gpus["total"] == 2 and gpus["by_tenant"] == {"acme": 2}  # 2 asked for, 1 running
    r = client.post(
        "/admin/v1/models/chat/scale",
        headers=ADMIN,
        json={"autoscaling": {"min_replicas": 0, "max_replicas": 4}},
    )
    assert r.status_code == 200 and r.json()["items"][0]["spec"]["autoscaling"]["min_replicas"] == 0
    assert serving.deployer.calls[-1][3].autoscaling.max_replicas == 4
    r = client.post("/internal/deployments/chat--v1/restart", headers=ADMIN)
    assert r.status_code == 202 and r.json()["restarts"] == 1 and serving.deployer.calls[-1][2] == 1
    assert client.delete("/internal/deployments/chat--v1", headers=ADMIN).status_code == 202
    assert_error(client.get("/internal/deployments/chat--v1/status", headers=ADMIN), 404, "not_found")
    kinds = [e["kind"] for e in client.get("/internal/events?model_id=chat", headers=ADMIN).json()["items"]]
    assert kinds == ["undeployed", "restarted", "scaled", "deployed"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"model_id": "Chat!"}, "model_id"),
        ({"model_id": "a--b"}, "model_id"),
        ({"model_id": "m", "engine": "gpt"}, "engine"),
        ({"model_id": "m", "replicas": -1}, "replicas"),
        ({"model_id": "m", "gpus_per_replica": 1.5}, "gpus_per_replica"),
        ({"model_id": "m", "autoscaling": {"min_replicas": 3, "max_replicas": 1}}, "autoscaling"),
        ({"model_id": "m", "replicas": 1, "autoscaling": {}}, ""),
        ({"model_id": "m", "ready_deadline": "whenever"}, "ready_deadline"),
        ({"model_id": "m", "colour": "blue"}, "colour"),
    ],
)
def test_bad_deployments_are_422_naming_the_field(env, body, field):
    err = assert_error(
        env[0].post("/internal/deployments/create", json=body, headers=ADMIN), 422, "validation_error"
    )
    assert any(d["field"].startswith(field) for d in err["details"]), err


def test_serving_admin_routes_refuse_tenant_keys(env):
    client = env[0]
    assert_error(
        client.post("/internal/deployments/create", json={"model_id": "m"}, headers=ACME), 403, "forbidden"
    )
    assert_error(client.get("/internal/deployments", headers=ACME), 403, "forbidden")
    assert_error(
        client.post("/admin/v1/models/m/scale", json={"replicas": 1}, headers=ACME), 403, "forbidden"
    )
    assert_error(client.get("/v1/models"), 401, "unauthorized")


def test_scale_and_release_validation(env):
    client = env[0]
    deploy(client)
    assert_error(client.post("/admin/v1/models/chat/scale", json={}, headers=ADMIN), 422, "validation_error")
    assert_error(
        client.post("/admin/v1/models/nope/scale", json={"replicas": 2}, headers=ADMIN), 404, "not_found"
    )
    err = assert_error(
        client.put(
            "/internal/models/chat/release",
            headers=ADMIN,
            json={
                "model_id": "chat",
                "strategy": "canary",
                "stable": "v1",
                "candidate": "v9",
                "steps": [{"weight": 10, "duration": "1m"}],
            },
        ),
        422,
        "validation_error",
    )
    assert err["details"][0]["field"] == "versions" and "v9" in err["details"][0]["problem"]
    err = assert_error(
        client.put(
            "/internal/models/chat/release", headers=ADMIN, json={"model_id": "other", "stable": "v1"}
        ),
        422,
        "validation_error",
    )
    assert err["details"][0]["field"] == "model_id"


# -- the OpenAI routes ---------------------------------------------------------------------------
def test_models_are_seen_by_their_tenant_and_shared_ones_by_all(env):
    client = env[0]
    deploy(client, model_id="private", tenant_id="acme")
    deploy(client, model_id="common")

    def ids(h):
        return [m["id"] for m in client.get("/v1/models", headers=h).json()["data"]]

    assert ids(ADMIN) == ["common", "private"]
    assert ids(ACME) == ["common", "private"] and ids(OTHER) == ["common"]
    assert_error(complete(client, OTHER, model="private"), 404, "not_found")  # no leak
    assert complete(client, ACME, model="private").status_code == 200


def test_completion_chat_and_stream_answer_in_openai_shape(env):
    client = env[0]
    deploy(client)
    r = complete(client)
    body = r.json()
    assert r.status_code == 200 and r.headers["x-orion-model-version"] == "v1"
    assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 4
    assert body["choices"][0]["text"] == complete(client).json()["choices"][0]["text"]
    r = client.post(
        "/v1/chat/completions",
        headers=ADMIN,
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
    )
    assert r.json()["choices"][0]["message"]["role"] == "assistant"
    r = client.post(
        "/v1/completions",
        headers=ADMIN,
        json={"model": "chat", "prompt": "hello", "max_tokens": 4, "stream": True},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [ln[6:] for ln in r.text.split("\n") if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])
    assert text == body["choices"][0]["text"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "temperature": 3}, "temperature"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "x", "n": 2}, "n"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({}, "prompt"),
    ],
)
def test_bad_openai_bodies_are_422_naming_the_field(env, body, field):
    err = assert_error(
        env[0].post("/v1/completions", json={"model": "chat", **body}, headers=ADMIN), 422, "validation_error"
    )
    assert any(d["field"].startswith(field) for d in err["details"]), err


def test_temperature_zero_answers_come_from_the_cache(env):
    client, serving, router, _ = env
    deploy(client)
    first = complete(client, temperature=0).json()
    handle = serving.handles["orion-llm-chat--v1"]
    calls = handle.calls
    assert complete(client, temperature=0).json() == first and handle.calls == calls
    complete(client, temperature=0.5)
    assert handle.calls == calls + 1 and router.cache.hits == 1


# -- releases through the router -----------------------------------------------------------------
def test_canary_rolls_back_when_injected_errors_fail_it(env):
    client, serving, router, clock = env
    rel = canary(
        client,
        {"error_rate": 1.0},
        [{"weight": 50, "duration": "1m"}, {"weight": 100, "duration": 0}],
        error_rate=0.2,
        min_requests=3,
    )
    assert rel["weights"] == {"v1": 50, "v2": 50}
    # the stable version is the rollback target while the canary runs
    assert_error(client.delete("/internal/deployments/chat--v1", headers=ADMIN), 409, "conflict")
    codes = [complete(client, prompt=f"p{i}").status_code for i in range(20)]
    assert set(codes) == {200, 502}  # the canary took traffic and failed it
    serving.manager.tick()
    rel = client.get("/internal/models/chat/release", headers=ADMIN).json()
    assert rel["phase"] == "rolled_back" and rel["weights"] == {"v1": 100, "v2": 0}
    assert rel["stats"]["v2"]["errors"] >= 3
    assert {complete(client, prompt=f"q{i}").headers["x-orion-model-version"] for i in range(10)} == {"v1"}
    ev = client.get("/internal/events?model_id=chat", headers=ADMIN).json()["items"][0]
    assert ev["kind"] == "rolled_back" and "error rate" in ev["message"]


def test_canary_advances_automatically_while_it_holds(env):
    client, serving, router, clock = env
    canary(client, None, [{"weight": 50, "duration": "10s"}, {"weight": 100, "duration": 0}], min_requests=2)
    for i in range(10):
        assert complete(client, prompt=f"p{i}").status_code == 200
    serving.manager.tick()
    assert client.get("/internal/models/chat/release", headers=ADMIN).json()["step"] == 0
    clock.t += 11
    serving.manager.tick()  # step 1 held for its duration → step 2 (100 %)
    for i in range(4):
        complete(client, prompt=f"r{i}")
    serving.manager.tick()  # last step → promoted
    rel = client.get("/internal/models/chat/release", headers=ADMIN).json()
    assert rel["phase"] == "promoted" and rel["weights"] == {"v2": 100, "v1": 0}
    kinds = [e["kind"] for e in client.get("/internal/events?model_id=chat", headers=ADMIN).json()["items"]][
        :3
    ]
    assert kinds == ["promoted", "advanced", "started"]
    assert_error(client.delete("/internal/deployments/chat--v2", headers=ADMIN), 409, "conflict")
    assert client.delete("/internal/deployments/chat--v1", headers=ADMIN).status_code == 202
    assert client.delete("/internal/deployments/chat--v2", headers=ADMIN).status_code == 202  # last
    assert_error(client.get("/internal/models/chat/release", headers=ADMIN), 404, "not_found")


def test_blue_green_and_operator_rollback(env):
    client, serving, _, _ = env
    deploy(client, version="blue")
    deploy(client, version="green")
    client.put(
        "/internal/models/chat/release",
        headers=ADMIN,
        json={
            "model_id": "chat",
            "strategy": "blue-green",
            "stable": "blue",
            "candidate": "green",
            "testing_period": "5m",
        },
    )
    assert complete(client).headers["x-orion-model-version"] == "green"
    r = client.post("/internal/models/chat/rollback", headers=ADMIN)
    assert r.json()["weights"]["blue"] == 100
    assert complete(client).headers["x-orion-model-version"] == "blue"


def test_ab_is_sticky_per_user_header(env):
    client = env[0]
    deploy(client, version="a")
    deploy(client, version="b")
    client.put(
        "/internal/models/chat/release",
        headers=ADMIN,
        json={
            "model_id": "chat",
            "strategy": "ab",
            "stable": "a",
            "ab": {"header": "X-User-Id", "variants": {"a": 50, "b": 50}},
        },
    )
    seen = {}
    for user in [f"user-{i}" for i in range(12)] * 3:
        v = client.post(
            "/v1/completions",
            json={"model": "chat", "prompt": "x", "max_tokens": 2},
            headers={**ADMIN, "X-User-Id": user},
        ).headers["x-orion-model-version"]
        assert seen.setdefault(user, v) == v
    assert set(seen.values()) == {"a", "b"}


def test_shadow_mirrors_requests_and_discards_answers(env):
    client, serving, router, _ = env
    deploy(client, version="v1")
    deploy(client, version="v3", engine_args={"error_rate": 1.0})
    client.put(
        "/internal/models/chat/release",
        headers=ADMIN,
        json={
            "model_id": "chat",
            "stable": "v1",
            "weights": {"v1": 100},
            "shadow": {"version": "v3", "percent": 100},
        },
    )
    for i in range(5):
        r = complete(client, prompt=f"s{i}")
        assert r.status_code == 200 and r.headers["x-orion-model-version"] == "v1"
    assert serving.handles["orion-llm-chat--v3"].calls == 5
    stats = client.get("/internal/models/chat/release", headers=ADMIN).json()["stats"]
    assert stats["v3"]["requests"] == 5 and stats["v3"]["errors"] == 5  # recorded, not served
    assert stats["v1"]["errors"] == 0


def test_circuit_breaker_cuts_off_a_failing_version(env):
    client, serving, router, clock = env
    deploy(client, version="v1")
    deploy(client, version="v2")
    client.put(
        "/internal/models/chat/release",
        headers=ADMIN,
        json={"model_id": "chat", "stable": "v1", "weights": {"v1": 50, "v2": 50}},
    )
    serving.handle_of("orion-llm-chat--v2").replica.engine.configure(error_rate=1.0)
    codes = [complete(client, prompt=f"b{i}").status_code for i in range(30)]
    assert codes.count(502) == 3  # threshold 3, then v2 is cut off
    assert router.breakers[("chat", "v2")].state == "open"
    serving.handle_of("orion-llm-chat--v2").replica.engine.configure(error_rate=0.0)
    clock.t += 61  # cooldown over: a probe closes it
    versions = {complete(client, prompt=f"c{i}").headers["x-orion-model-version"] for i in range(30)}
    assert versions == {"v1", "v2"} and router.breakers[("chat", "v2")].state == "closed"


def test_stuck_deployment_is_restarted_and_reported(env):
    client, serving, _, clock = env
    deploy(client, ready_deadline="30s")
    serving.manager.tick()
    assert serving.deployer.calls[-1][2] == 0
    clock.t += 31  # still DEPLOYING past its deadline
    serving.manager.tick()
    assert serving.deployer.calls[-1][:3] == ("deploy", "orion-llm-chat--v1", 1)
    kinds = [e["kind"] for e in client.get("/internal/events", headers=ADMIN).json()["items"]]
    assert kinds[:2] == ["restarted", "stuck"]
    serving.running()
    clock.t += 100
    serving.manager.tick()  # healthy now: left alone
    assert client.get("/internal/deployments/chat--v1/status", headers=ADMIN).json()["restarts"] == 1


def test_manager_state_survives_a_restart(env):
    client, serving, _, _ = env
    deploy(client, version="v1")
    deploy(client, version="v2")
    client.put(
        "/internal/models/chat/release",
        headers=ADMIN,
        json={"model_id": "chat", "stable": "v1", "weights": {"v1": 70, "v2": 30}},
    )
    from orion_ray.serving.manager import DeploymentManager

    again = DeploymentManager(serving.deployer, serving.manager.kv)
    assert sorted(again.deployments) == ["chat--v1", "chat--v2"]
    assert again.routing_table()["chat"]["weights"] == {"v1": 70, "v2": 30}


def test_a_cache_hit_does_not_take_a_half_open_probe(env):
    client, serving, router, clock = env
    deploy(client, version="v1")
    assert complete(client, prompt="cached", temperature=0).status_code == 200
    serving.handle_of("orion-llm-chat--v1").replica.engine.configure(error_rate=1.0)
    assert [complete(client, prompt=f"x{i}").status_code for i in range(3)] == [502] * 3
    assert_error(complete(client, prompt="y"), 503, "scheduler_unavailable")  # circuit open
    serving.handle_of("orion-llm-chat--v1").replica.engine.configure(error_rate=0.0)
    clock.t += 61
    assert complete(client, prompt="cached", temperature=0).status_code == 200  # from the cache
    assert complete(client, prompt="probe").status_code == 200  # the probe
    assert router.breakers[("chat", "v1")].state == "closed"


def test_release_view_gives_each_versions_error_rate_and_the_judged_window(env):
    """The console reads error rate and latency per version from REST (nothing computed in the
    browser): ``stats`` since the release, ``window`` since the current step began."""
    client, serving, router, clock = env
    canary(
        client,
        {"error_rate": 1.0},
        [{"weight": 50, "duration": "1m"}, {"weight": 100, "duration": 0}],
        error_rate=0.99,
        min_requests=1000,
    )
    for i in range(20):
        complete(client, prompt=f"p{i}")
    rel = client.get("/internal/models/chat/release", headers=ADMIN).json()
    for v in ("v1", "v2"):
        s = rel["stats"][v]
        assert set(s) == {"requests", "errors", "latency_p95", "error_rate"}
        assert s["error_rate"] == (s["errors"] / s["requests"] if s["requests"] else 0.0)
    assert rel["stats"]["v2"]["error_rate"] == 1.0 and rel["stats"]["v1"]["error_rate"] == 0.0
    assert rel["stats"]["v1"]["latency_p95"] is not None
    assert rel["window"]["since"] == clock.t
    assert rel["window"]["stats"] == rel["stats"]  # every outcome so far is in the first step
    clock.t += 5  # outcomes after the step began are in the window; a new release clears both
    r = client.put(
        "/internal/models/chat/release",
        headers=ADMIN,
        json={"model_id": "chat", "stable": "v1", "weights": {"v1": 100}},
    )
    rel = r.json()
    assert rel["window"]["since"] == clock.t
    assert rel["stats"]["v1"] == {"requests": 0, "errors": 0, "latency_p95": None, "error_rate": 0.0}


def test_a_tenant_key_gets_403_on_every_serving_admin_route(env):
    """The console shows a tenant only what /v1/models gives it: the /internal routes are admin's."""
    client, serving, router, clock = env
    deploy(client, version="v1", tenant_id="acme")
    for path in (
        "/internal/deployments",
        "/internal/deployments/chat--v1/status",
        "/internal/models/chat/release",
        "/internal/events",
        "/internal/serving/gpus",
    ):
        assert_error(client.get(path, headers=ACME), 403, "forbidden")
    assert_error(client.post("/internal/models/chat/rollback", headers=ACME), 403, "forbidden")
    assert [m["id"] for m in client.get("/v1/models", headers=ACME).json()["data"]] == ["chat"]
    assert client.get("/v1/models", headers=OTHER).json()["data"] == []


def test_list_releases_gives_every_models_release_in_one_call(env):
    client, serving, router, clock = env
    assert client.get("/internal/releases", headers=ADMIN).json() == {"items": []}
    canary(client, None, [{"weight": 10, "duration": "1m"}, {"weight": 100, "duration": 0}])
    deploy(client, model_id="solo", version="v1")  # no release: not listed (and no 404)
    items = client.get("/internal/releases", headers=ADMIN).json()["items"]
    assert [r["model_id"] for r in items] == ["chat"]
    assert items[0] == client.get("/internal/models/chat/release", headers=ADMIN).json()
    assert_error(client.get("/internal/releases", headers=ACME), 403, "forbidden")
