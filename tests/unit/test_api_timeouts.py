"""No call can hang: every call from the API to the scheduler actor has a timeout and becomes a
503 with Retry-After; a dead handle is resolved again; /health is not 200 while the scheduler's
recovery is stuck or its loop has stalled. Fakes only (no Ray cluster)."""

import asyncio

import pytest
import ray.exceptions
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.serve_app import ActorBackend
from orion_ray.config import SchedulerConfig
from orion_ray.scheduler import Scheduler
from orion_ray.scheduler.liveness import Liveness
from orion_ray.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}


class Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class Handle:
    """An actor handle: ``handle.name.remote(*args)`` is awaitable (the fn's coroutine)."""

    def __init__(self, **fns):
        self.fns = fns

    def __getattr__(self, name):
        return Method(self.fns[name])


async def never(*args):
    await asyncio.Event().wait()


async def answer_queue(tenant_id=None):
    return {"tenants": [], "total_queued": 0, "total_running": 0}


def client_over(backend):
    return TestClient(build_app(KeyRing([hash_key("admin-key")]), backend=backend))


def assert_503(r):
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "scheduler_unavailable"
    assert int(r.headers["Retry-After"]) >= 1


def test_a_silent_actor_is_a_503_with_retry_after_not_a_hang():
    backend = ActorBackend(Handle(queue=never), timeout_s=0.05)
    with client_over(backend) as c:
        assert_503(c.get("/api/v1/queue", headers=ADMIN))


def test_a_dead_handle_is_resolved_again_on_the_next_call():
    async def died(*args):
        raise ray.exceptions.RayActorError()

    handles = [Handle(queue=died), Handle(queue=answer_queue)]
    resolved = []

    def resolve():
        resolved.append(1)
        return handles[len(resolved) - 1]

    backend = ActorBackend(timeout_s=5, resolve=resolve)
    with client_over(backend) as c:
        assert_503(c.get("/api/v1/queue", headers=ADMIN))
        r = c.get("/api/v1/queue", headers=ADMIN)
    assert r.status_code == 200 and len(resolved) == 2


def test_a_restarting_actor_keeps_its_handle():
    async def restarting(*args):
        raise ray.exceptions.ActorUnavailableError("restarting", None)

    resolved = []

    def resolve():
        resolved.append(1)
        return Handle(queue=restarting)

    backend = ActorBackend(timeout_s=5, resolve=resolve)
    with client_over(backend) as c:
        for _ in range(2):
            assert_503(c.get("/api/v1/queue", headers=ADMIN))
    assert len(resolved) == 1


def test_no_actor_at_all_is_a_503():
    def resolve():
        raise ValueError("Failed to look up actor")

    with client_over(ActorBackend(resolve=resolve)) as c:
        assert_503(c.get("/api/v1/queue", headers=ADMIN))


def test_notify_never_waits_and_never_fails():
    sent = []

    class Ref:  # what .remote() returns: nobody awaits it
        def __await__(self):
            raise AssertionError("notify must not wait for the actor")

    handle = Handle(notify=lambda: sent.append(1) or Ref())
    asyncio.run(ActorBackend(handle).notify())

    def resolve():
        raise ValueError("no actor")

    asyncio.run(ActorBackend(resolve=resolve).notify())  # no actor: nothing raised
    assert sent == [1]


# -- /health ------------------------------------------------------------------------------------
def test_health_is_503_when_the_scheduler_does_not_answer():
    with client_over(ActorBackend(Handle(health=never), timeout_s=0.05)) as c:
        r = c.get("/health")
    assert r.status_code == 503 and r.json()["scheduler"] == "down"
    assert "did not answer" in r.json()["scheduler_error"]


@pytest.mark.parametrize("state", ["stalled", "recovery_stuck"])
def test_health_is_503_when_the_scheduler_reports_trouble(state):
    async def health():
        return {
            "scheduler": state,
            "store": "ok",
            "last_cycle_age_s": 99.0,
            "recovery": {"state": "recovered"},
        }

    with client_over(ActorBackend(Handle(health=health))) as c:
        r = c.get("/health")
    assert r.status_code == 503 and r.json()["scheduler"] == state


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_liveness_verdicts():
    clock = Clock()
    live = Liveness(clock)
    kw = {"stall_after_s": 30, "stuck_after_s": 60}
    live.recovering()
    assert live.report(None, **kw)["verdict"] == "recovering"
    live.failed(RuntimeError("executor restarting"))
    clock.t += 61
    got = live.report(None, **kw)
    assert got["verdict"] == "recovery_stuck" and got["recovery"]["attempts"] == 1
    assert "executor restarting" in got["recovery"]["last_error"]
    live.recovered()
    assert live.report(clock.t, **kw)["verdict"] == "ok"
    clock.t += 10
    assert live.report(clock.t - 1, **kw) == {
        "verdict": "ok",
        "last_cycle_age_s": 1.0,
        "recovery": {
            "state": "recovered",
            "attempts": 1,
            "last_error": got["recovery"]["last_error"],
            "took_s": 61.0,
            "for_s": 10.0,
        },
    }
    assert live.report(clock.t - 31, **kw)["verdict"] == "stalled"
    clock.t += 31
    assert live.report(None, **kw)["verdict"] == "stalled"  # no cycle since recovery ended


class BrokenRecoveryRuntime:
    async def task_runs(self):
        raise RuntimeError("the executor is restarting")

    def orion_pg_workloads(self):
        return []


def test_scheduler_health_reports_a_stuck_recovery_and_the_api_answers_503(tmp_path):
    store = SQLiteStore(str(tmp_path / "o.db"))
    s = Scheduler(store, BrokenRecoveryRuntime(), config=SchedulerConfig(recovery_stuck_after_s=0.001))

    async def main():
        starting = asyncio.create_task(s.start())
        while s.liveness.attempts < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        body = await s.health()
        starting.cancel()
        return body

    body = asyncio.run(main())
    assert body["scheduler"] == "recovery_stuck"
    assert body["recovery"]["state"] == "recovering" and body["recovery"]["attempts"] >= 1

    class Backend:
        async def health(self):
            return body

    with client_over(Backend()) as c:
        assert c.get("/health").status_code == 503
    store.close()


def test_scheduler_health_has_the_last_cycle_age_once_running(tmp_path):
    from tests.unit.test_store_intake import TickRuntime

    store = SQLiteStore(str(tmp_path / "o.db"))
    s = Scheduler(store, TickRuntime())

    async def main():
        await s.start()
        while s.ingest.cycle_done_at is None:
            await asyncio.sleep(0.01)
        body = await s.health()
        await s.stop()
        return body

    body = asyncio.run(main())
    assert body["scheduler"] == "ok" and body["recovery"]["state"] == "recovered"
    assert body["last_cycle_age_s"] >= 0
    store.close()
