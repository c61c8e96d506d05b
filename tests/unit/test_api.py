"""The REST API in-process (TestClient) over a Scheduler that is never started: nothing runs."""

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.config import SchedulerConfig
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
MAX_BODY = 4096
TASK = {"workload_type": "task", "function": "math:factorial"}


@pytest.fixture(params=["scheduler", "store"])
def make_client(tmp_path, request):
    """Every test runs twice: every route through the scheduler (the in-process backend), and
    as a Serve replica runs it, reads and submissions straight on the store (``StoreAccess``)."""
    made = []

    def make(max_queue_size=10_000):
        path = str(tmp_path / f"orion-{len(made)}.db")
        store = SQLiteStore(path)
        sched = Scheduler(store, runtime=FakeRuntime(), config=SchedulerConfig(max_queue_size=max_queue_size))
        keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme"})
        access = StoreAccess(path, max_queue_size=max_queue_size) if request.param == "store" else None
        client = TestClient(build_app(keys, backend=sched, max_body_bytes=MAX_BODY, access=access))
        made.append((client, store, access))
        return client

    yield make
    for client, store, access in made:
        client.close()
        if access is not None:
            access.close()
        store.close()


@pytest.fixture
def client(make_client):
    return make_client()


def submit(client, headers=ADMIN, **fields):
    return client.post("/api/v1/workloads", json={**TASK, **fields}, headers=headers)


def assert_error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    assert "Traceback" not in r.text
    return body["error"]


# -- auth ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "admin-key"},
        {"Authorization": "Basic admin-key"},
    ],
)
def test_unauthorized(client, headers):
    assert_error(client.post("/api/v1/workloads", json=TASK, headers=headers), 401, "unauthorized")
    assert_error(client.get("/api/v1/workloads", headers=headers), 401, "unauthorized")
    assert_error(client.get("/api/v1/workloads/wl-x", headers=headers), 401, "unauthorized")
    assert_error(client.delete("/api/v1/workloads/wl-x", headers=headers), 401, "unauthorized")


def test_open_routes_need_no_key(client):
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/health").status_code == 503  # answered, not 401


# -- submit and read -----------------------------------------------------------------------------
def test_submit_answers_202_with_ack(client):
    r = submit(client)
    assert r.status_code == 202
    ack = r.json()
    assert ack["workload_id"].startswith("wl-")
    assert ack["status"] == "queued" and ack["queue_position"] == 1
    assert set(ack) >= {"workload_id", "status", "queue_position", "estimated_start", "estimated_completion"}


def test_queue_position_follows_priority(client):
    submit(client, priority="low")
    submit(client)
    assert submit(client, priority="critical").json()["queue_position"] == 1
    assert submit(client, priority="best_effort").json()["queue_position"] == 4


def test_get_one_workload_with_history(client):
    wid = submit(client, priority="high", metadata={"labels": {"p": "x"}}).json()["workload_id"]
    r = client.get(f"/api/v1/workloads/{wid}", headers=ADMIN)
    assert r.status_code == 200
    w = r.json()
    for key in (
        "workload_id",
        "status",
        "workload_type",
        "tenant_id",
        "priority",
        "attempt",
        "submitted_at",
        "started_at",
        "finished_at",
        "execution_time_ms",
        "worker_id",
        "placement",
        "result",
        "error",
    ):
        assert key in w, key
    assert (w["workload_id"], w["status"], w["workload_type"]) == (wid, "queued", "task")
    assert (w["tenant_id"], w["priority"], w["attempt"]) == ("default", "high", 1)
    assert w["submitted_at"].endswith("Z") and w["started_at"] is None
    assert w["labels"] == {"p": "x"}
    assert [h["status"] for h in w["history"]] == ["submitted", "queued"]


def test_admin_may_submit_for_a_tenant(client):
    wid = submit(client, metadata={"tenant_id": "acme"}).json()["workload_id"]
    assert client.get(f"/api/v1/workloads/{wid}", headers=ADMIN).json()["tenant_id"] == "acme"


def test_tenant_key_owns_its_workloads(client):
    mine = submit(client, headers=ACME).json()["workload_id"]
    other = submit(client).json()["workload_id"]
    assert client.get(f"/api/v1/workloads/{mine}", headers=ACME).json()["tenant_id"] == "acme"
    # another tenant's workload does not exist for this key
    assert_error(client.get(f"/api/v1/workloads/{other}", headers=ACME), 404, "not_found")
    assert_error(client.delete(f"/api/v1/workloads/{other}", headers=ACME), 404, "not_found")
    items = client.get("/api/v1/workloads?tenant_id=default", headers=ACME).json()["items"]
    assert [w["workload_id"] for w in items] == [mine]


def test_tenant_key_cannot_submit_for_another_tenant(client):
    assert_error(submit(client, headers=ACME, metadata={"tenant_id": "other"}), 403, "forbidden")
    assert submit(client, headers=ACME, metadata={"tenant_id": "acme"}).status_code == 202


def test_unknown_workload_is_404(client):
    assert_error(client.get("/api/v1/workloads/wl-nope", headers=ADMIN), 404, "not_found")
    assert_error(client.delete("/api/v1/workloads/wl-nope", headers=ADMIN), 404, "not_found")
    assert_error(client.get("/api/v1/workloads/wl-nope/logs", headers=ADMIN), 404, "not_found")


def test_logs_of_a_queued_workload_are_empty_text(client):
    wid = submit(client).json()["workload_id"]
    r = client.get(f"/api/v1/workloads/{wid}/logs", headers=ADMIN)
    assert r.status_code == 200 and r.text == ""
    assert r.headers["content-type"].startswith("text/plain")


# -- list ----------------------------------------------------------------------------------------
def test_list_newest_first_with_cursor(client):
    ids = [submit(client).json()["workload_id"] for _ in range(5)]
    seen, cursor = [], None
    for _ in range(3):
        params = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        page = client.get("/api/v1/workloads", params=params, headers=ADMIN).json()
        seen.append([w["workload_id"] for w in page["items"]])
        cursor = page["next_cursor"]
    assert seen == [ids[4:2:-1], ids[2:0:-1], ids[:1]]
    assert cursor is None


def test_list_filters_by_status(client):
    a, b = (submit(client).json()["workload_id"] for _ in range(2))
    client.delete(f"/api/v1/workloads/{a}", headers=ADMIN)
    page = client.get("/api/v1/workloads?status=cancelled", headers=ADMIN).json()
    assert [w["workload_id"] for w in page["items"]] == [a]
    page = client.get("/api/v1/workloads?status=queued", headers=ADMIN).json()
    assert [w["workload_id"] for w in page["items"]] == [b]


@pytest.mark.parametrize(
    "query, field",
    [("status=sleeping", "status"), ("limit=0", "limit"), ("limit=abc", "limit"), ("cursor=-1", "cursor")],
)
def test_list_bad_query_is_422(client, query, field):
    err = assert_error(client.get(f"/api/v1/workloads?{query}", headers=ADMIN), 422, "validation_error")
    assert [d["field"] for d in err["details"]] == [field]


# -- cancel --------------------------------------------------------------------------------------
def test_cancel_queued_then_again_is_idempotent(client):
    wid = submit(client).json()["workload_id"]
    r = client.delete(f"/api/v1/workloads/{wid}", headers=ADMIN)
    assert r.status_code == 202
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"] is not None
    r2 = client.delete(f"/api/v1/workloads/{wid}", headers=ADMIN)
    assert r2.status_code == 202 and r2.json()["status"] == "cancelled"
    w = client.get(f"/api/v1/workloads/{wid}", headers=ADMIN).json()
    assert [h["status"] for h in w["history"]] == ["submitted", "queued", "cancelled"]
    assert w["queue_position"] is None


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, path",
    [
        ({"resources": {"gpu": 1.5}}, "resources.gpu"),
        ({"resources": {"cpu": -1}}, "resources.cpu"),
        ({"resources": {"memory": "lots"}}, "resources.memory"),
        ({"bogus": 1}, "bogus"),
        ({"resources": {"cpus": 2}}, "resources.cpus"),
        ({"bundles": [{"cpu": 1}, {"gpu": 2.5}]}, "bundles.1.gpu"),
        ({"workload_type": "workflow"}, "workload_type"),
        ({"priority": "urgent"}, "priority"),
        ({"deadline": "2001-01-01T00:00:00Z"}, ""),
    ],
)
def test_invalid_spec_is_422_with_field_paths(client, fields, path):
    err = assert_error(submit(client, **fields), 422, "validation_error")
    assert path in [d["field"] for d in err["details"]]
    assert all(set(d) == {"field", "problem"} for d in err["details"])


def test_missing_body_is_422(client):
    assert_error(client.post("/api/v1/workloads", headers=ADMIN), 422, "validation_error")


@pytest.mark.parametrize("body", [b"{not json", b'{"workload_type": "task",', b"\xff\xfe"])
def test_malformed_json_is_400(client, body):
    r = client.post("/api/v1/workloads", content=body, headers={**ADMIN, "Content-Type": "application/json"})
    assert_error(r, 400, "malformed_json")


# -- size limit ----------------------------------------------------------------------------------
def big_spec():
    return json.dumps({**TASK, "kwargs": {"pad": "x" * MAX_BODY}}).encode()


def test_body_over_limit_with_content_length_is_413(client):
    r = client.post(
        "/api/v1/workloads", content=big_spec(), headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert_error(r, 413, "payload_too_large")


def test_streamed_body_over_limit_is_413(client):
    body = big_spec()

    def chunks():  # no Content-Length: the limit must count the bytes actually read
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    r = client.post(
        "/api/v1/workloads", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413, "payload_too_large")


def test_body_over_limit_in_many_messages_is_413(client):
    """At the ASGI level: a chunked body arrives as several messages, none over the limit alone."""
    body, sent = big_spec(), []
    messages = [
        {"type": "http.request", "body": body[i : i + 1000], "more_body": True}
        for i in range(0, len(body), 1000)
    ] + [{"type": "http.request", "body": b""}]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/workloads",
        "raw_path": b"/api/v1/workloads",
        "root_path": "",
        "query_string": b"",
        "server": ("testserver", 80),
        "client": ("testclient", 1),
        "headers": [(b"authorization", b"Bearer admin-key"), (b"content-type", b"application/json")],
    }
    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"


def test_body_under_limit_is_accepted(client):
    body = json.dumps({**TASK, "kwargs": {"pad": "x" * (MAX_BODY // 2)}}).encode()
    r = client.post("/api/v1/workloads", content=body, headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == 202


# -- idempotency and admission -------------------------------------------------------------------
def test_request_id_makes_submit_idempotent(client):
    meta = {"request_id": "req-1"}
    first = submit(client, metadata=meta).json()
    again = submit(client, metadata=meta).json()
    assert again["workload_id"] == first["workload_id"]
    items = client.get("/api/v1/workloads", headers=ADMIN).json()["items"]
    assert len(items) == 1
    # the same request_id under another tenant is a different workload
    other = submit(client, metadata={"request_id": "req-1", "tenant_id": "acme"}).json()
    assert other["workload_id"] != first["workload_id"]


def test_request_id_reused_with_another_spec_is_409(client):
    submit(client, metadata={"request_id": "req-1"})
    err = assert_error(submit(client, priority="high", metadata={"request_id": "req-1"}), 409, "conflict")
    assert err["details"][0]["field"] == "metadata.request_id"


def test_request_id_of_a_cancelled_workload_still_answers_it(client):
    wid = submit(client, metadata={"request_id": "req-1"}).json()["workload_id"]
    client.delete(f"/api/v1/workloads/{wid}", headers=ADMIN)
    again = submit(client, metadata={"request_id": "req-1"})
    assert again.status_code == 202
    assert again.json()["workload_id"] == wid and again.json()["status"] == "cancelled"


def test_queue_full_is_429_with_retry_after(make_client):
    client = make_client(max_queue_size=2)
    assert submit(client).status_code == 202
    wid = submit(client).json()["workload_id"]
    r = submit(client)
    assert_error(r, 429, "queue_full")
    assert int(r.headers["Retry-After"]) >= 1
    client.delete(f"/api/v1/workloads/{wid}", headers=ADMIN)  # a finished workload frees a slot
    assert submit(client).status_code == 202


# -- operations ----------------------------------------------------------------------------------
def test_health_of_an_unstarted_scheduler_is_503(client):
    r = client.get("/health")
    assert r.status_code == 503
    body = r.json()
    assert body["api"] == "ok" and body["scheduler"] == "down" and body["store"] == "ok"


def test_health_without_a_backend_is_503():
    with TestClient(build_app(KeyRing([hash_key("admin-key")]), backend=None)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["scheduler"] == "down"
        assert_error(c.get("/api/v1/workloads", headers=ADMIN), 503, "scheduler_unavailable")


def test_unknown_route_and_method_use_the_error_body(client):
    assert_error(client.get("/api/v1/nothing", headers=ADMIN), 404, "not_found")
    assert_error(client.put("/api/v1/workloads", headers=ADMIN), 405, "method_not_allowed")


def test_openapi_lists_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/workloads"]) >= {"post", "get"}
    assert set(paths["/api/v1/workloads/{workload_id}"]) >= {"get", "delete"}
    assert "get" in paths["/api/v1/workloads/{workload_id}/logs"]
    assert "get" in paths["/health"]
    assert "202" in paths["/api/v1/workloads"]["post"]["responses"]
    assert "429" in paths["/api/v1/workloads"]["post"]["responses"]


def test_unexpected_backend_error_is_a_500_body_without_trace():
    class Broken:
        async def get(self, workload_id, tenant_id=None):
            raise RuntimeError("secret internals")

    app = build_app(KeyRing([hash_key("admin-key")]), backend=Broken())
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/v1/workloads/wl-1", headers=ADMIN)
    assert_error(r, 500, "internal_error")
    assert "secret internals" not in r.text


def test_metrics_endpoint_merges_api_and_scheduler(client):
    from prometheus_client.parser import text_string_to_metric_families

    wid = submit(client).json()["workload_id"]
    client.get(f"/api/v1/workloads/{wid}", headers=ADMIN)
    r = client.get("/metrics")  # no key needed
    assert r.status_code == 200
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    routes = {s.labels.get("route") for s in fams["orion_api_request_seconds"].samples}
    assert "/api/v1/workloads/{workload_id}" in routes
    queued = [s for s in fams["orion_queue_depth"].samples if s.labels.get("tenant") == "default"]
    assert queued and queued[0].value == 1
    transitions = {
        s.labels["status"]: s.value
        for s in fams["orion_workload_transitions"].samples
        if s.name.endswith("_total")
    }
    assert transitions == {"submitted": 1, "queued": 1}


def test_non_importable_function_is_422_unless_runtime_env_brings_code(client):
    r = submit(client, function="no_such_pkg_xyz.mod:fn")
    err = assert_error(r, 422, "validation_error")
    assert err["details"][0]["field"] == "function"
    shipped = submit(client, function="no_such_pkg_xyz.mod:fn", runtime_env={"working_dir": "/tmp/code"})
    assert shipped.status_code == 202
