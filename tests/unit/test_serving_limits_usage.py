"""Serving usage for cost: the meter's replica-hours and tokens, the manager's records (on a period,
at scale and undeploy, across a restart), their storage (a resend never counts twice) and their
price, tokens included (docs/serving-limits.md)."""

from __future__ import annotations

import pytest

from orion_ray.config import CostConfig
from orion_ray.cost.allocation import aggregate, allocate, record_cost
from orion_ray.cost.prices import PriceBook, PriceError, PriceTable
from orion_ray.cost.serving_rows import add_replica_records, parse_records
from orion_ray.cost.store_rows import price_book, record_prices, stored_records
from orion_ray.cost.usage import UsageRecord
from orion_ray.errors import ValidationError
from orion_ray.serving.manager import DeploymentManager, MemoryDeployer, MemoryKv
from orion_ray.serving.usage_meter import SHARED, UsageMeter
from orion_ray.serving_specs import DeploymentSpec, ScaleRequest
from orion_ray.store import SQLiteStore


# == the meter ======================================================================================
def test_replica_time_is_integrated_tick_by_tick_at_the_count_seen():
    m = UsageMeter(period_s=60)
    kw = dict(tenant="acme", gpus=0.5, cpus=2.0)
    m.observe("chat--v1", 0.0, replicas=1, **kw)
    m.observe("chat--v1", 30.0, replicas=3, **kw)  # 1 replica for 30 s, then 3
    assert not m.due(59.0) and m.due(60.0)
    (rec,) = m.cut(60.0)  # 30 + 90 = 120 replica-seconds over 60 s: 2 replicas on average
    assert rec["kind"] == "replica" and rec["ref"] == "chat--v1" and rec["tenant"] == "acme"
    assert (rec["start"], rec["end"]) == (0.0, 60.0)
    assert rec["gpus"] == pytest.approx(1.0) and rec["cpus"] == pytest.approx(4.0)
    (nxt,) = m.cut(120.0)  # 3 replicas all along
    assert (nxt["start"], nxt["end"], nxt["cpus"]) == (60.0, 120.0, pytest.approx(6.0))


def test_tokens_are_records_of_the_calling_tenant_and_a_shared_models_hours_are_shared():
    m = UsageMeter()
    m.observe("pub--v1", 0.0, replicas=1, tenant=None, gpus=0, cpus=1)
    m.add_tokens("pub--v1", "acme", 120, 10.0)
    m.add_tokens("pub--v1", "acme", 30, 20.0)
    m.add_tokens("pub--v1", "other", 7, 20.0)
    recs = {(r["tenant"], r["tokens"]) for r in m.cut(60.0)}
    assert recs == {(SHARED, 0), ("acme", 150), ("other", 7)}
    assert m.cut(120.0) and not m.tokens  # tokens are cut once


def test_pending_records_are_bounded_and_survive_a_restart_through_the_saved_state():
    m = UsageMeter()
    m.observe("a--v1", 0.0, replicas=2, tenant="t", gpus=0, cpus=1)
    m.cut(60.0)
    saved = m.state()
    again = UsageMeter()
    again.load(saved)
    assert again.pending == m.pending and again.open["a--v1"]["replicas"] == 2
    # down from 60 to 90 s: the restarted meter counts that time at the count it last saw
    again.observe("a--v1", 90.0, replicas=2, tenant="t", gpus=0, cpus=1)
    recs = again.cut(90.0)
    assert recs[0]["start"] == 60.0 and recs[0]["cpus"] == pytest.approx(2.0)


# == the manager ====================================================================================
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def manager(kv=None, sink=None, clock=None):
    deployer = MemoryDeployer()
    return DeploymentManager(deployer, kv or MemoryKv(), clock=clock or Clock(), usage_sink=sink), deployer


def running(deployer, n=1):
    for st in deployer.statuses_by_app.values():
        st.update(status="RUNNING", running=n)


def test_the_manager_writes_records_each_period_and_at_scale_and_undeploy():
    sent: list = []
    clock = Clock()
    mgr, dep = manager(sink=sent.extend, clock=clock)
    mgr.create(
        DeploymentSpec(model_id="chat", version="v1", engine="test", tenant_id="acme", cpus_per_replica=0.5)
    )
    running(dep, 2)
    mgr.tick()
    clock.t += 30
    mgr.report_usage([("acme", "chat", "v1", 10, 20), ("bob", "chat", "v1", 1, 2)])
    mgr.tick()
    clock.t += 30
    mgr.tick()  # a period has passed
    assert {(r["tenant"], r["tokens"]) for r in sent} == {("acme", 0), ("acme", 30), ("bob", 3)}
    hours = next(r for r in sent if r["tokens"] == 0)
    assert hours["cpus"] == pytest.approx(1.0) and hours["end"] - hours["start"] == pytest.approx(60)
    sent.clear()
    clock.t += 10
    mgr.scale("chat", ScaleRequest(replicas=1))  # the old count's time is recorded first
    assert len(sent) == 1 and sent[0]["cpus"] == pytest.approx(1.0) and sent[0]["end"] == clock.t
    sent.clear()
    running(dep, 1)
    mgr.tick()  # Serve's count falls; seen at this tick
    clock.t += 20
    mgr.delete("chat--v1")
    assert len(sent) == 1 and sent[0]["cpus"] == pytest.approx(0.5)
    assert "chat--v1" not in mgr.meter.open


def test_unsent_records_wait_in_the_saved_state_and_go_when_the_scheduler_answers():
    kv, clock = MemoryKv(), Clock()
    up = {"ok": False}
    sent: list = []

    def sink(records):
        if not up["ok"]:
            raise RuntimeError("no scheduler")
        sent.extend(records)

    mgr, dep = manager(kv, sink, clock)
    mgr.create(DeploymentSpec(model_id="chat", version="v1", engine="test", tenant_id="acme"))
    running(dep)
    mgr.tick()
    clock.t += 60
    mgr.tick()
    assert not sent and len(kv.state["usage"]["pending"]) == 1
    assert any(e["kind"] == "usage_unsent" for e in mgr.events)
    # the manager restarts: the pending record and the marks come back from the KV
    again, dep2 = manager(kv, sink, clock)
    dep2.statuses_by_app = dep.statuses_by_app
    up["ok"] = True
    clock.t += 60
    again.tick()
    again.tick()
    assert [(r["start"], r["end"]) for r in sent] == [(1000.0, 1060.0), (1060.0, 1120.0)]
    assert again.meter.pending == []


# == the store ======================================================================================
@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "orion.db"))
    yield s
    s.close()


def rec(**kw):
    base = {
        "kind": "replica", "ref": "chat--v1", "tenant": "acme", "pool": "unknown",
        "market": "on_demand", "start": 0.0, "end": 3600.0, "gpus": 0.0, "cpus": 2.0,
        "memory_gib": 0.0, "gpu_type": None, "tokens": 0,
    }  # fmt: skip
    return {**base, **kw}


def test_records_are_stored_once_even_when_resent(store):
    batch = [rec(), rec(tenant="bob", cpus=0.0, tokens=5000)]
    assert add_replica_records(store, batch) == 2
    assert add_replica_records(store, batch) == 0  # a resend after a lost answer
    usage, caps = stored_records(store, since=0, until=7200)
    assert sorted((u.tenant, u.cpus, u.tokens) for u in usage) == [("acme", 2.0, 0), ("bob", 0.0, 5000)]


@pytest.mark.parametrize(
    "bad, field",
    [
        (rec(kind="workload"), "records[0].kind"),
        (rec(start=-1.0), "records[0].start"),
        (rec(tokens=1.5), "records[0].tokens"),
        (rec(end=-0.0, start=5.0), "records[0].end"),
        (rec(tenant=""), "records[0].tenant"),
        (rec(cpus=float("nan")), "records[0].cpus"),
    ],
)
def test_bad_records_are_refused_naming_the_field(bad, field):
    with pytest.raises(ValidationError) as err:
        parse_records([bad])
    assert err.value.details[0]["field"] == field


# == prices =========================================================================================
def test_tokens_are_priced_per_thousand_per_model_and_never_offset_idle():
    table = PriceTable.from_config({"cpu": {"on_demand": 0.05}, "tokens": {"chat": 0.5, "default": 0.1}})
    book = PriceBook([(0.0, table)])
    hours = UsageRecord("replica", "chat--v1", "acme", "p", "on_demand", 0.0, 3600.0, cpus=2.0)
    chat = UsageRecord("replica", "chat--v1", "acme", "p", "on_demand", 0.0, 60.0, tokens=120_000)
    other = UsageRecord("replica", "embed--v3", "bob", "p", "on_demand", 0.0, 60.0, tokens=10_000)
    assert record_cost(hours, book) == pytest.approx(0.10)
    assert record_cost(chat, book) == pytest.approx(60.0)  # 120 × 0.5
    assert record_cost(other, book) == pytest.approx(1.0)  # the default rate
    rows = aggregate(
        allocate([hours, chat, other], [], book, start=0.0, end=3600.0), ["tenant", "kind"], per_bucket=False
    )
    by = {r["tenant"]: r for r in rows}
    assert by["acme"]["cost"] == pytest.approx(60.10) and by["acme"]["tokens"] == 120_000
    assert by["bob"]["cost"] == pytest.approx(1.0)


def test_a_table_without_token_prices_keeps_its_version_and_token_prices_round_trip(store):
    plain = {"gpu": {"default": {"on_demand": 3.0}}}
    assert "tokens" not in PriceTable.from_config(plain).as_json()
    priced = PriceTable.from_config({**plain, "tokens": {"default": 0.002}})
    assert priced.version != PriceTable.from_config(plain).version
    record_prices(store, priced, now=10.0)
    assert price_book(store, PriceTable()).current.tokens == {"default": 0.002}


@pytest.mark.parametrize("bad", [{"chat": -1}, {"chat": "cheap"}, {"chat": True}, [1, 2]])
def test_bad_token_prices_are_refused_naming_the_field(bad):
    with pytest.raises(PriceError, match="cost.prices.tokens"):
        PriceTable.from_config({"tokens": bad})
    with pytest.raises(Exception, match="cost.prices.tokens"):
        CostConfig.model_validate({"prices": {"tokens": bad}})


# == where replicas run: the pool and market of their nodes =========================================
def test_replica_time_is_split_by_the_pool_and_market_its_replicas_run_on():
    m = UsageMeter(period_s=60)
    kw = dict(tenant="acme", gpus=1.0, cpus=2.0)
    m.observe("chat--v1", 0.0, replicas=2, **kw)  # where not read yet: pool unknown
    m.observe("chat--v1", 10.0, replicas=2, where={("gpu-a", "on_demand"): 1, ("gpu-s", "spot"): 1}, **kw)
    m.observe("chat--v1", 40.0, replicas=1, where={("gpu-s", "spot"): 1}, **kw)
    m.observe("chat--v1", 50.0, replicas=1, **kw)  # no new read: the last proportions hold
    recs = {(r["pool"], r["market"]): r for r in m.cut(60.0)}
    # unknown 2 × 10 s; 30 s × 2 split half and half; then 20 s × 1 on spot
    assert recs[("unknown", "on_demand")]["gpus"] == pytest.approx(20 / 60)
    assert recs[("gpu-a", "on_demand")]["gpus"] == pytest.approx(30 / 60)
    assert recs[("gpu-s", "spot")]["gpus"] == pytest.approx((30 + 20) / 60)
    assert sum(r["gpus"] for r in recs.values()) == pytest.approx((20 + 60 + 20) / 60)
    assert all((r["start"], r["end"]) == (0.0, 60.0) for r in recs.values())
    (nxt,) = m.cut(120.0)  # the next span: all on spot, the proportions kept
    assert (nxt["pool"], nxt["market"], nxt["gpus"]) == ("gpu-s", "spot", pytest.approx(1.0))
    saved = m.state()  # a restart keeps the proportions with the marks
    again = UsageMeter(period_s=60)
    again.load(saved)
    again.observe("chat--v1", 180.0, replicas=1, **kw)
    (r,) = again.cut(180.0)
    assert (r["pool"], r["market"]) == ("gpu-s", "spot")


class PlacedDeployer(MemoryDeployer):
    """Serve's placement of each app's running replicas, as a test sets it."""

    def __init__(self):
        super().__init__()
        self.where: dict = {}
        self.reads = 0

    def placements(self):
        self.reads += 1
        return self.where


def test_the_manager_prices_each_replica_on_its_nodes_pool_and_market(store):
    sent: list = []
    clock, dep = Clock(), PlacedDeployer()
    mgr = DeploymentManager(dep, kv=MemoryKv(), clock=clock, usage_sink=sent.extend)
    mgr.create(DeploymentSpec(model_id="chat", version="v1", engine="test", tenant_id="acme"))
    dep.where = {"orion-llm-chat--v1": {("cpu-spot", "spot"): 2}}
    running(dep, 2)
    mgr.tick()
    for _ in range(60):  # read every PLACEMENT_EVERY_S (2 s), not every tick
        clock.t += 1
        mgr.tick()
    assert dep.reads == 31
    (hours,) = [r for r in sent if r["tokens"] == 0]
    assert (hours["pool"], hours["market"]) == ("cpu-spot", "spot")
    assert add_replica_records(store, sent) == len(sent)
    table = PriceTable.from_config({"cpu": {"on_demand": 0.10, "spot": 0.03}})
    (u,) = [u for u in stored_records(store, since=0, until=1e9)[0] if u.tokens == 0]
    spot = record_cost(u, PriceBook([(0.0, table)]))
    assert spot == pytest.approx(u.cpus * (u.end - u.start) / 3600 * 0.03)  # at the spot rate


def test_one_span_on_two_pools_is_two_records_and_a_resend_still_counts_once(store):
    batch = [rec(pool="a"), rec(pool="b", market="spot")]
    assert add_replica_records(store, batch) == 2
    assert add_replica_records(store, batch) == 0
