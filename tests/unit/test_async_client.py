"""The SDK against the in-process REST app: ``AsyncOrionClient`` over ``httpx.ASGITransport`` and
``OrionClient`` over a sync transport into the same app. The scheduler is never started: workloads
stay queued, and cancelling one makes it terminal. Waits between retries are recorded, not slept."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from orion_ray import (
    AsyncOrionClient,
    NotFound,
    OrionClient,
    QueueFull,
    SchedulerUnavailable,
    Unauthorized,
    ValidationError,
    WorkloadResult,
)
from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.config import SchedulerConfig
from orion_ray.errors import Forbidden
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

URL = "http://orion.test"
TASK = {"workload_type": "task", "function": "math:factorial"}


@pytest.fixture
def make_app(tmp_path):
    """``make_app(max_queue_size)`` → ``(app, scheduler)``."""
    stores = []

    def make(max_queue_size: int = 10_000):
        store = SQLiteStore(str(tmp_path / f"orion-{len(stores)}.db"))
        stores.append(store)
        sched = Scheduler(store, runtime=FakeRuntime(), config=SchedulerConfig(max_queue_size=max_queue_size))
        keys = KeyRing([hash_key("admin-key")], {hash_key("t-key"): "t"})
        return build_app(keys, backend=sched), sched

    yield make
    for s in stores:
        s.close()


class Waits(list):
    """Every wait a client would sleep, recorded instead of slept: pass ``sleep=waits.sleep``
    (async client) or ``sleep=waits.append`` (sync client)."""

    async def sleep(self, s: float) -> None:
        self.append(s)


@pytest.fixture
def sleeps() -> Waits:
    return Waits()


def aclient(app, key="admin-key", **kw) -> AsyncOrionClient:
    kw.setdefault("sleep", Waits().sleep)  # never really sleep in a unit test
    return AsyncOrionClient(URL, key, transport=httpx.ASGITransport(app=app), **kw)


class Answer429First(httpx.AsyncBaseTransport):
    """Answers the first ``n`` requests ``status`` (``Retry-After: 3``), then passes through."""

    def __init__(self, app, n=1, status=429):
        self.inner, self.left, self.status, self.seen = httpx.ASGITransport(app=app), n, status, 0

    async def handle_async_request(self, request):
        self.seen += 1
        if self.left:
            self.left -= 1
            code = "queue_full" if self.status == 429 else "scheduler_unavailable"
            body = {"error": {"code": code, "message": "busy", "details": []}}
            return httpx.Response(self.status, json=body, headers={"Retry-After": "3"})
        return await self.inner.handle_async_request(request)


# -- AsyncOrionClient ----------------------------------------------------------------------------
def test_async_round_trip(make_app):
    app, _ = make_app()

    async def scenario():
        async with aclient(app) as c:
            h = await c.submit_workload(TASK, priority="high")
            assert h.workload_id.startswith("wl-") and h.ack["status"] == "queued"
            got = await c.get_workload(h.workload_id)
            assert got["status"] == "queued" and got["priority"] == "high"
            assert await h.status() == "queued"
            listed = await c.list_workloads(status="queued")
            assert [w["workload_id"] for w in listed["items"]] == [h.workload_id]
            why = await c.explain(h.workload_id)
            assert why["workload_id"] == h.workload_id and why["position"]["overall"] == 1
            assert (await c.queue())["tenants"]
            assert (await h.cancel())["status"] == "cancelled"
            result = await h.wait_for_completion(timeout=5)
            assert isinstance(result, WorkloadResult)
            assert result.status == "cancelled" and result.output is None
            assert await c.logs(h.workload_id) == ""
            done = await c.reload([{"id": "research", "weight": 2}], {hash_key("r-key"): "research"})
            assert done["tenants"] == ["research"]
            assert [t["tenant_id"] for t in (await c.tenants())["items"]] == ["research"]
            actions = [e["action"] for e in (await c.audit())["items"]]
            assert "submit" in actions and "cancel" in actions
            assert (await c.health())["api"] == "ok"
        async with aclient(app, key="r-key") as c:  # the reloaded key works at once
            assert (await c.list_workloads())["items"] == []

    asyncio.run(scenario())


def test_async_typed_errors(make_app):
    app, _ = make_app(max_queue_size=1)

    async def scenario():
        async with aclient(app, max_retries=0) as c:
            with pytest.raises(NotFound):
                await c.get_workload("wl-nope")
            with pytest.raises(ValidationError) as bad:
                await c.submit_workload(workload_type="task")  # no function
            assert bad.value.http_status == 422 and bad.value.details
            await c.submit_workload(TASK)
            with pytest.raises(QueueFull):
                await c.submit_workload(TASK)
        async with aclient(app, key="wrong-key") as c:
            with pytest.raises(Unauthorized):
                await c.list_workloads()
        async with aclient(app, key="t-key") as c:
            with pytest.raises(Forbidden):
                await c.tenants()

    asyncio.run(scenario())


def test_async_wait_times_out_on_a_queued_workload(make_app, sleeps):
    app, _ = make_app()

    async def scenario():
        async with aclient(app, sleep=sleeps.sleep) as c:
            h = await c.submit_workload(TASK)
            with pytest.raises(TimeoutError):
                await h.wait_for_completion(timeout=0)

    asyncio.run(scenario())


def test_async_retries_429_honouring_retry_after(make_app, sleeps):
    app, _ = make_app()
    transport = Answer429First(app, n=2)

    async def scenario():
        async with AsyncOrionClient(URL, "admin-key", transport=transport, sleep=sleeps.sleep) as c:
            h = await c.submit_workload(TASK)
            assert (await c.get_workload(h.workload_id))["status"] == "queued"

    asyncio.run(scenario())
    assert sleeps == [3.0, 3.0] and transport.seen == 4  # 2 refused, the 3rd POST, then the GET


def test_async_retries_503_and_gives_up_with_a_typed_error(make_app, sleeps):
    app, _ = make_app()
    transport = Answer429First(app, n=5, status=503)

    async def scenario():
        async with AsyncOrionClient(
            URL, "admin-key", transport=transport, max_retries=2, sleep=sleeps.sleep
        ) as c:
            with pytest.raises(SchedulerUnavailable):  # the last answer, typed
                await c.queue()

    asyncio.run(scenario())
    assert sleeps == [3.0, 3.0] and transport.seen == 3


def test_async_retry_succeeds_once_the_real_queue_frees_a_slot(make_app):
    """A real 429 from a full queue (max 1); during the wait the first workload is cancelled."""
    app, sched = make_app(max_queue_size=1)
    waited = []

    async def free_a_slot(s):
        waited.append(s)
        for wid in list(sched.active):
            await sched.cancel(wid)

    async def scenario():
        async with aclient(app, sleep=free_a_slot) as c:
            first = await c.submit_workload(TASK)
            second = await c.submit_workload(TASK)
            assert second.workload_id != first.workload_id
            assert (await c.get_workload(first.workload_id))["status"] == "cancelled"

    asyncio.run(scenario())
    assert waited == [5.0]  # the scheduler's Retry-After


def test_async_credentials_resolve_like_the_sync_client(monkeypatch, tmp_path):
    monkeypatch.setenv("ORION_HOME", str(tmp_path))
    monkeypatch.delenv("ORION_URL", raising=False)
    monkeypatch.delenv("ORION_API_KEY", raising=False)
    (tmp_path / "credentials").write_text(json.dumps({"url": "http://h:1/", "api_key": "k1"}))
    c = AsyncOrionClient()
    assert (c.url, c.api_key) == ("http://h:1", "k1") == (OrionClient().url, OrionClient().api_key)
    monkeypatch.setenv("ORION_URL", "http://env:2")
    monkeypatch.setenv("ORION_API_KEY", "k2")
    c2 = AsyncOrionClient()
    assert (c2.url, c2.api_key) == ("http://env:2", "k2")
    assert c2._http.headers["Authorization"] == "Bearer k2"
    asyncio.run(c.aclose())
    asyncio.run(c2.aclose())


# -- OrionClient over a sync transport into the same app -------------------------------------------
def sync_transport(app) -> httpx.MockTransport:
    tc = TestClient(app)

    def forward(request: httpx.Request) -> httpx.Response:
        r = tc.request(
            request.method,
            request.url.raw_path.decode(),
            headers=dict(request.headers),
            content=request.read(),
        )
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    return httpx.MockTransport(forward)


def test_sync_client_in_process(make_app, sleeps):
    app, _ = make_app(max_queue_size=1)
    with OrionClient(
        URL, "admin-key", transport=sync_transport(app), max_retries=1, sleep=sleeps.append
    ) as c:
        h = c.submit_workload(TASK)
        assert c.get_workload(h.workload_id)["status"] == "queued"
        assert c.explain(h.workload_id)["position"]["overall"] == 1
        with pytest.raises(QueueFull):
            c.submit_workload(TASK)
        assert sleeps == [5.0]  # one retry, after the scheduler's Retry-After
        with pytest.raises(NotFound):
            c.cancel("wl-nope")
        assert c.cancel(h.workload_id)["status"] == "cancelled"
        assert h.wait_for_completion(timeout=5).status == "cancelled"
        assert [w["status"] for w in c.list_workloads()["items"]] == ["cancelled"]
    with OrionClient(URL, "nope", transport=sync_transport(app)) as c:
        with pytest.raises(Unauthorized):
            c.queue()


# -- the infrastructure calls: the async client answers what the sync one answers -------------------
def test_async_infrastructure_calls_answer_like_the_sync_client(tmp_path):
    from .test_node_lifecycle import NodesRuntime, node, running

    store = SQLiteStore(str(tmp_path / "orion.db"))
    sched = Scheduler(store, NodesRuntime([node("n1"), node("n2")]))
    app = build_app(KeyRing([hash_key("admin-key")], {}), backend=sched)
    running(sched, "w1", "n1", gpus=2.0)
    reads = ("nodes", "resources_available", "fragmentation", "gpu_utilization")

    async def async_side() -> dict:
        async with aclient(app) as c:
            out = {
                "cordon": (await c.cordon("n2", reason="maintenance"))["status"],
                "uncordon": (await c.uncordon("n2"))["status"],
                "drain": (await c.drain("n2", deadline_s=600))["status"],
            }
            out["events"] = [e["kind"] for e in (await c.scaling_events(kind="node"))["items"]]
            out["health"] = sorted(await c.infrastructure_health())
            out.update({name: await getattr(c, name)() for name in reads})
            return out

    got = asyncio.run(async_side())
    # n2 runs nothing, so its drain ends at once
    assert (got["cordon"], got["uncordon"], got["drain"]) == ("cordoned", "ready", "drained")
    assert got["events"] and set(got["events"]) == {"node"}

    def states(nodes: dict) -> list:  # without the ages, which move between the two reads
        return [(n["node_id"], n["status"], n["workloads"]) for n in nodes["items"]]

    assert states(got["nodes"]) == [("n1", "ready", ["w1"]), ("n2", "drained", [])]
    with OrionClient(URL, "admin-key", transport=sync_transport(app)) as c:
        assert states(c.nodes()) == states(got["nodes"])
        for name in reads[1:]:  # the same state read through the sync client answers the same
            assert getattr(c, name)() == got[name], name
        assert sorted(c.infrastructure_health()) == got["health"]
    store.close()


class FakeReservations:
    """The capacity backend's surface (``create``/``list``/``release``/``status``) in memory."""

    class Made:
        def __init__(self, rid: str, body):
            self.rid, self.body = rid, body

        def to_dict(self) -> dict:
            return {
                "reservation_id": self.rid,
                "instance_type": self.body.instance_type,
                "count": self.body.count,
                "tags": self.body.tags,
            }

    def __init__(self):
        self.made: dict = {}

    def create(self, body):
        rid = f"cr-{len(self.made) + 1:017x}"
        self.made[rid] = self.Made(rid, body)
        return self.made[rid]

    def list(self):
        return list(self.made.values())

    def release(self, rid):
        self.made.pop(rid)
        return {"reservation_id": rid, "released": True}

    def status(self):
        return {"pools": {}}


def test_capacity_calls_in_both_clients():
    capacity = FakeReservations()
    app = build_app(KeyRing([hash_key("admin-key")]), backend=None, capacity_backend=capacity)

    async def async_side() -> tuple:
        async with aclient(app) as c:
            made = await c.create_reservation("p4d.24xlarge", "us-east-1a", 2, tags={"team": "a"})
            listed = await c.capacity_reservations()
            return made, listed, await c.capacity_status()

    made, listed, status = asyncio.run(async_side())
    assert made["count"] == 2 and made["tags"] == {"team": "a"}
    assert listed == {"items": [made]} and status == {"pools": {}}
    with OrionClient(URL, "admin-key", transport=sync_transport(app)) as c:
        assert c.capacity_reservations() == listed
        assert c.release_reservation(made["reservation_id"])["released"] is True
        assert c.capacity_reservations() == {"items": []}
        with pytest.raises(ValidationError):  # the route's validation, typed
            c.create_reservation("p4d.24xlarge", "nowhere", 1)
