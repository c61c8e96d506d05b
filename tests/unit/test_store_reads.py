"""Reads never touch the scheduler: the API replica answers them from the store, with the same
JSON the scheduler gives, and queue positions from an index that agree with the scheduler's."""

import asyncio
import random
import time

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.models import WorkloadSpec
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.scheduler import Scheduler, intake, views
from orion_ray.scheduler.ingest import new_workload
from orion_ray.store import SQLiteStore
from tests.pg_server import pg_server, sqlite_only, store_backend  # noqa: F401 (each test on both backends)

pytestmark = pytest.mark.usefixtures("store_backend")

ADMIN = {"Authorization": "Bearer admin-key"}
TASK = {"workload_type": "task", "function": "math:factorial", "resources": {"cpu": 1}}
PRIORITIES = ["critical", "high", "normal", "low", "best_effort"]


@pytest.fixture
def world(tmp_path):
    path = str(tmp_path / "orion.db")
    store = SQLiteStore(path)
    sched = Scheduler(store, runtime=FakeRuntime())
    access = StoreAccess(path, max_queue_size=100_000)
    yield store, sched, access
    access.close()
    store.close()


def fill(store, n, seed=7, tenants=("default", "acme", "beta")):
    rnd = random.Random(seed)
    for _ in range(n):
        spec = WorkloadSpec.model_validate({**TASK, "priority": rnd.choice(PRIORITIES)})
        store.submit(new_workload(spec, rnd.choice(tenants), time.time()), who="t", max_queue_size=100_000)


def run(coro):
    return asyncio.run(coro)


def test_deep_queue_positions_come_from_the_index_and_match_the_scheduler(world):
    store, sched, access = world
    fill(store, 180)
    sched.ingest.pull()
    for w in list(sched.active.values()):
        overall, mine = access.positions(w)
        assert overall == intake.position(sched, w) == access.position(w)
        same_tenant = [x for x in sched.active.values() if x.tenant_id == w.tenant_id]
        assert mine == 1 + sum(1 for x in same_tenant if (x.priority.rank, x.seq) < (w.priority.rank, w.seq))


def test_shallow_queue_positions_follow_the_policy_order_the_scheduler_stored(world):
    store, sched, access = world
    fill(store, 40)
    sched.ingest.pull()
    sched.run_cycle()
    sched.ingest.after_cycle()
    for w in list(sched.active.values()):
        assert access.position(w) == intake.position(sched, w)
        stored = access.explain(w.workload_id, None)
        live = views.explain(sched, w, sched.clock())
        assert stored["position"] == live["position"]


def test_get_list_and_audit_are_the_scheduler_s_json(world):
    store, sched, access = world
    fill(store, 12)
    sched.ingest.pull()
    sched.run_cycle()
    sched.ingest.after_cycle()  # the cycle's wait reasons reach the store
    some = list(sched.active)[:3]
    run(sched.cancel(some[0], None, "admin"))
    for wid in some:
        live = run(sched.get(wid))
        assert access.get(wid, None) == live
    assert run(sched.get(some[1]))["reason"]  # the cycle gave one, and the store has it
    for status in (None, "queued", "cancelled"):
        for tenant in (None, "acme"):
            assert access.list(status, tenant, 5, None) == run(sched.list(status, tenant, 5))
    assert access.audit_log(4, None) == run(sched.audit_log(4))


def test_wait_reasons_are_stored_when_they_change_and_explain_reads_them(world):
    store, sched, access = world
    fill(store, 3)
    sched.ingest.pull()
    sched.run_cycle()
    sched.ingest.after_cycle()
    w = next(iter(sched.active.values()))
    live = views.explain(sched, w, sched.clock())
    stored = access.explain(w.workload_id, None)
    live_codes = {r["code"] for r in live["reasons"]} - {"no_estimate"}
    assert live_codes and live_codes <= {r["code"] for r in stored["reasons"]}
    assert store.wait_of(w.workload_id) == sched.book.wait_reasons[w.workload_id]


def test_another_tenant_s_workload_is_404_from_the_store(world):
    store, _sched, access = world
    fill(store, 1, tenants=("acme",))
    wid = store.list(limit=1)[0].workload_id
    from orion_ray.errors import NotFound

    with pytest.raises(NotFound):
        access.get(wid, "other")
    assert access.get(wid, "acme")["tenant_id"] == "acme"


class Tripwire:
    """A scheduler backend that records every call; only ``notify`` is allowed."""

    def __init__(self):
        self.calls: list[str] = []

    def __getattr__(self, name):
        async def call(*args, **kwargs):
            self.calls.append(name)
            if name != "notify":
                raise AssertionError(f"the scheduler was asked: {name}")

        return call


def test_reads_and_deep_queue_submissions_never_call_the_scheduler(world):
    store, _sched, access = world
    fill(store, 120)  # deep: the ack needs no forecast
    backend = Tripwire()
    app = build_app(KeyRing([hash_key("admin-key")]), backend=backend, access=access)
    with TestClient(app) as c:
        r = c.post("/api/v1/workloads", json=TASK, headers=ADMIN)
        assert r.status_code == 202, r.text
        ack = r.json()
        assert ack["queue_position"] is not None and ack["estimated_start"] is None
        wid = ack["workload_id"]
        got = c.get(f"/api/v1/workloads/{wid}", headers=ADMIN).json()
        assert got["queue_position"] == ack["queue_position"]
        assert [h["status"] for h in got["history"]] == ["submitted", "queued"]
        assert len(c.get("/api/v1/workloads?limit=7", headers=ADMIN).json()["items"]) == 7
        assert c.get(f"/api/v1/workloads/{wid}/logs", headers=ADMIN).text == ""
        assert c.get("/admin/v1/audit?limit=1", headers=ADMIN).json()["items"][0]["target"] == wid
    assert backend.calls == ["notify"]


def test_explain_falls_back_to_the_stored_parts_when_the_scheduler_cannot_answer(world):
    from orion_ray.errors import SchedulerUnavailable

    store, _sched, access = world
    fill(store, 2)

    class Silent:
        async def explain(self, workload_id, tenant_id=None):
            raise SchedulerUnavailable("the scheduler did not answer explain within 3s", retry_after=2)

    wid = store.list(limit=1)[0].workload_id
    app = build_app(KeyRing([hash_key("admin-key")]), backend=Silent(), access=access)
    with TestClient(app) as c:
        r = c.get(f"/api/v1/workloads/{wid}/explain", headers=ADMIN)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "workload_id",
        "status",
        "position",
        "reasons",
        "attempt",
        "estimated_start",
        "estimated_completion",
    }
    assert body["position"]["overall"] >= 1 and body["reasons"][-1]["code"] == "no_estimate"


def test_a_busy_store_is_a_503_with_retry_after_not_a_500(world):
    import sqlite3

    class Busy:
        def writes_here(self, spec):
            return True

        async def submit(self, spec, tenant_id, who):
            raise sqlite3.OperationalError("database is locked")

        def get(self, workload_id, tenant_id):
            raise sqlite3.OperationalError("unable to open database file")

    app = build_app(KeyRing([hash_key("admin-key")]), backend=Tripwire(), access=Busy())
    with TestClient(app) as c:
        for r in (
            c.post("/api/v1/workloads", json=TASK, headers=ADMIN),
            c.get("/api/v1/workloads/wl-1", headers=ADMIN),
        ):
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
            assert r.headers["Retry-After"] == "1"
