"""The console's server side: the page and its files, whoami, and the change feed behind
``/api/v1/stream`` (which tenant's stream hears of which change, the bounds, no store)."""

import asyncio

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.console.feed import ChangeFeed
from orion_ray.errors import RateLimited
from orion_ray.models import WorkloadSpec
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler
from orion_ray.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
TASK = {"workload_type": "task", "function": "math:factorial", "args": [3]}


@pytest.fixture
def app(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    sched = Scheduler(store, runtime=FakeRuntime())
    keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme"})
    client = TestClient(build_app(keys, backend=sched))
    yield client
    client.close()
    store.close()


def test_the_page_is_served_with_a_strict_policy(app):
    r = app.get("/console")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    assert '<script type="module" src="/console/static/console.js">' in r.text
    js = app.get("/console/static/console.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    for view in ("queue", "workload", "gpus", "serving"):
        assert app.get(f"/console/static/views/{view}.js").status_code == 200, view
    assert app.get("/console/static/../../api/app.py").status_code == 404
    assert app.get("/console/", follow_redirects=False).headers["location"] == "/console"


def test_no_script_sets_html_from_data():
    # the views render data as text: nothing assigns innerHTML/outerHTML or writes markup
    from orion_ray.console import STATIC

    for path in STATIC.rglob("*.js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{path.name} uses {sink}"


def test_whoami_says_who_the_key_is(app):
    assert app.get("/api/v1/whoami", headers=ACME).json() | {"version": None} == {
        "tenant_id": "acme",
        "admin": False,
        "version": None,
    }
    assert app.get("/api/v1/whoami", headers=ADMIN).json()["admin"] is True
    assert app.get("/api/v1/whoami").status_code == 401


def test_a_stream_needs_a_key_and_is_bounded(app):
    assert app.get("/api/v1/stream").status_code == 401
    app.app.state.change_feed = ChangeFeed(lambda: None, max_per_tenant=0)
    r = app.get("/api/v1/stream", headers=ACME)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert "retry-after" in r.headers


# -- the feed over a real store ---------------------------------------------------------------------
def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def drain(stream) -> list[str]:
    out = []
    while not stream.queue.empty():
        out.append(stream.queue.get_nowait()[0])
    return out


def test_each_stream_hears_of_its_own_tenants_changes(tmp_path):
    path = str(tmp_path / "orion.db")
    store = SQLiteStore(path)
    access = StoreAccess(path, max_queue_size=100)

    async def scenario():
        clock = [0.0]
        feed = ChangeFeed(lambda: access, tick_s=5.0, clock=lambda: clock[0], run_loop=False)
        acme, beta, admin = feed.open("acme"), feed.open("beta"), feed.open(None)
        feed.poll_once()  # the first poll finds the cursor
        assert [drain(s) for s in (acme, beta, admin)] == [[], [], []]
        spec = WorkloadSpec.model_validate(TASK)
        await access.submit(spec, "beta", "beta")
        clock[0] = 1.0
        feed.poll_once()
        assert (drain(acme), drain(beta), drain(admin)) == ([], ["workloads"], ["workloads"])
        await access.submit(spec, "acme", "acme")
        await access.submit(spec, "acme", "acme")
        clock[0] = 6.0  # a change and a tick in the same poll
        feed.poll_once()
        assert (drain(acme), drain(beta), drain(admin)) == (
            ["workloads", "tick"],
            ["tick"],
            ["workloads", "tick"],
        )
        clock[0] = 7.0
        feed.poll_once()  # nothing new: nothing sent
        assert [drain(s) for s in (acme, beta, admin)] == [[], [], []]
        for s in (acme, beta, admin):
            feed.close(s)

    run(scenario())
    access.close()
    store.close()


def test_without_a_store_the_tick_refreshes_workloads():
    async def scenario():
        feed = ChangeFeed(lambda: None, clock=lambda: 100.0, run_loop=False)
        s = feed.open("acme")
        feed.poll_once()
        assert drain(s) == ["workloads", "tick"]

    run(scenario())


def test_bounds_per_tenant_and_per_replica():
    async def scenario():
        feed = ChangeFeed(lambda: None, max_streams=3, max_per_tenant=2, run_loop=False)
        a1, a2 = feed.open("acme"), feed.open("acme")
        with pytest.raises(RateLimited):
            feed.open("acme")
        feed.open(None)
        with pytest.raises(RateLimited):
            feed.open("beta")  # the replica's bound
        feed.close(a1)
        feed.open("beta")  # room again
        assert a2 in feed.streams

    run(scenario())


def test_a_slow_reader_loses_events_not_memory():
    async def scenario():
        feed = ChangeFeed(lambda: None, clock=lambda: 0.0, run_loop=False)
        s = feed.open("acme")
        for _ in range(100):
            s.put("workloads", {"seq": 1})
        assert s.queue.qsize() == s.queue.maxsize

    run(scenario())


def test_the_stream_sends_hello_then_events_and_unregisters():
    async def scenario():
        feed = ChangeFeed(lambda: None, clock=lambda: 0.0, run_loop=False)
        s = feed.open("acme")
        gen = feed.events(s, is_disconnected=lambda: asyncio.sleep(0, result=True))
        assert await gen.__anext__() == b"retry: 3000\n\n"
        assert (await gen.__anext__()).startswith(b"event: hello\ndata: {")
        s.put("workloads", {"seq": 7})
        assert await gen.__anext__() == b'event: workloads\ndata: {"seq":7}\n\n'
        await gen.aclose()
        assert s not in feed.streams

    run(scenario())
