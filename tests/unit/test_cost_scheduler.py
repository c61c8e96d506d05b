"""The scheduler's side of cost (docs/cost.md), over the in-memory ``FakeRuntime`` tick by tick: a
run's placement carries its pool and market, its usage is priced from the store, and a tenant past
its daily GPU-hour budget waits with the reason in explain."""

from __future__ import annotations

from orion_ray.config import PolicyConfig, TenantConfig
from orion_ray.cost import store_rows as cost_store
from orion_ray.cost.prices import PriceTable
from orion_ray.policy.markets import MARKET_LABEL
from orion_ray.runtime.fake import FakeRuntime, fake_node
from orion_ray.scheduler.cost_host import budget_use
from orion_ray.scheduler.policy_bridge import settings_from
from orion_ray.status import Status

from .test_pinned_tasks import clock, db, make  # noqa: F401  (fixtures)
from .test_scheduler_run import on_loop, running, settle, status, task


@on_loop
async def test_over_budget_waits_and_the_run_is_priced_on_its_market(db, clock):  # noqa: F811
    spot = fake_node("n1", gpus=4, pool="gpu-spot")
    spot.labels[MARKET_LABEL] = "spot"
    rt = FakeRuntime([spot])
    s = make(db, rt, clock)
    s.policy = settings_from(
        [TenantConfig.model_validate({"id": "alice", "budget": {"gpu_hours_per_day": 1.5}})], PolicyConfig()
    )
    first = (await s.submit(task(gpus=1), tenant_id="alice"))["workload_id"]
    assert s.run_cycle()["admitted"] == 1  # nothing used yet, its length unknown: admitted
    await running(s, rt, first)
    assert s.active[first].placement[0]["pool"] == "gpu-spot"
    assert s.active[first].placement[0]["market"] == "spot"
    clock.advance(7200)  # two hours on one GPU: past the 1.5 GPU-hour budget
    rt.complete(first, result=1)
    await settle(lambda: status(s, first) == Status.COMPLETED, "the first completed")

    second = (await s.submit(task(gpus=1), tenant_id="alice"))["workload_id"]
    other = (await s.submit(task(gpus=1), tenant_id="bob"))["workload_id"]  # bob has no budget
    clock.advance(2)
    s.run_cycle()
    assert status(s, second) == Status.QUEUED and status(s, other) != Status.QUEUED
    reasons = (await s.explain(second))["reasons"]
    assert reasons[0]["code"] == "budget"
    assert "tenant alice has used 2 of its daily budget of 1.5 GPU-hours" in reasons[0]["message"]

    now = clock()
    assert budget_use(s.store, now=now)["alice"].day == 2.0
    table = PriceTable.from_config({"gpu": {"default": {"on_demand": 3.0, "spot": 1.25}}})
    rows, _ = cost_store.cost_rows(s.store, start=now - 86400, end=now, now=now, step=None, share_idle="none")
    mine = [r for r in rows if r["tenant"] == "alice"]
    assert {r["market"] for r in mine} == {"spot"} and sum(r["gpu_hours"] for r in mine) == 2.0
    cost_store.record_prices(s.store, table, now=0.0)
    rows, _ = cost_store.cost_rows(s.store, start=now - 86400, end=now, now=now, step=None, share_idle="none")
    assert sum(r["usage_cost"] for r in rows if r["tenant"] == "alice") == 2.0 * 1.25


@on_loop
async def test_cost_tick_records_prices_capacity_and_gauges(db, clock):  # noqa: F811
    rt = FakeRuntime([fake_node("n1", gpus=4, pool="gpu")])
    s = make(db, rt, clock)
    s.cost.tick()  # the first tick: prices and defaults stored, capacity starts from here
    assert s.store.get_setting(cost_store.COST_SETTING) == {"currency": "USD", "share_idle": "none"}
    clock.advance(60)
    s.cost.tick()
    _usage, caps = cost_store.stored_records(s.store, since=0.0, until=clock())
    assert [(c.pool, c.nodes, c.gpus, c.end - c.start) for c in caps] == [("gpu", 1, 4.0, 60.0)]
    assert not s.cost.failing
