"""Cost rows in the store, ``GET /api/v1/costs`` and the chargeback, the CLI and the config."""

from __future__ import annotations

import csv
import io
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.config import OrionConfig, PolicyConfig, TenantConfig
from orion_ray.cost import cli as cost_cli
from orion_ray.cost import store_rows as cost_store
from orion_ray.cost.prices import PriceTable
from orion_ray.cost.report import QueryError, parse_query
from orion_ray.cost.usage import CapacityRecord, UsageRecord
from orion_ray.models import Workload, WorkloadSpec
from orion_ray.policy.admission import PolicySettings
from orion_ray.policy.budget import DAY_S, day_start
from orion_ray.scheduler.cost_host import budget_use, capacity_records
from orion_ray.scheduler.policy_bridge import settings_from
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
H = 3600.0
PRICES = {"gpu": {"default": {"on_demand": 3.0, "spot": 1.0}}, "cpu": {"on_demand": 0.5}}
TABLE = PriceTable.from_config(PRICES)


def workload(
    store, wid, tenant, history, *, gpus=1.0, market="on_demand", pool="od", status=Status.COMPLETED
):
    spec = WorkloadSpec.model_validate(
        {"workload_type": "task", "function": "math:factorial", "resources": {"cpu": 2, "gpu": gpus}}
    )
    w = Workload(
        workload_id=wid,
        tenant_id=tenant,
        spec=spec,
        status=status,
        submitted_at=history[0][1],
        placement=[{"bundle": 0, "node_id": "n1", "pool": pool, "market": market}],
    )
    store.insert(w, [(s, at, "") for s, at in history])


@pytest.fixture
def world(tmp_path):
    """Two tenants' work ending 1 h ago, a capacity record, the prices stored as the scheduler would."""
    now = time.time()
    path = str(tmp_path / "orion.db")
    store = SQLiteStore(path)
    t0 = now - 5 * H
    # acme: 1 GPU + 2 CPU on-demand for 2 h, preempted, then 1 h more = 3 h × (3 + 1) = 12.00
    workload(
        store,
        "w-acme",
        "acme",
        [
            ("queued", t0),
            ("starting", t0),
            ("running", t0 + 1),
            ("preempted", t0 + 2 * H),
            ("queued", t0 + 2 * H),
            ("starting", t0 + 3 * H),
            ("running", t0 + 3 * H),
            ("completed", t0 + 4 * H),
        ],
    )
    # beta: 0.5 GPU + 2 CPU on spot for 4 h = 4 × (0.5 + 0) ... cpu spot falls back to on-demand 0.5:
    # 4 × (0.5 × 1.0 + 2 × 0.5) = 6.00
    workload(
        store,
        "w-beta",
        "beta",
        [("queued", t0), ("starting", t0), ("completed", t0 + 4 * H)],
        gpus=0.5,
        market="spot",
        pool="sp",
    )
    cost_store.add_records(
        store,
        [
            CapacityRecord("od", "on_demand", t0, t0 + 4 * H, gpus=2, cpus=4),  # 4 × (6 + 2) = 32
            UsageRecord("replica", "llm/0", "acme", "od", "on_demand", t0, t0 + H, 0, 0, tokens=500),
        ],
    )
    cost_store.record_prices(store, TABLE, now=0.0)
    store.put_setting(cost_store.COST_SETTING, {"currency": "USD", "share_idle": "none"})
    keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme"})
    access = StoreAccess(path, max_queue_size=100)
    client = TestClient(build_app(keys, backend=None, access=access))
    yield SimpleNamespace(store=store, client=client, now=now, t0=t0)
    client.close()
    access.close()
    store.close()


def test_schema_9_tables_and_price_versions(world):
    names = {r[0] for r in world.store._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"usage_records", "price_tables"} <= names
    assert not cost_store.record_prices(world.store, TABLE, now=10.0)  # same version: not again
    cheaper = PriceTable.from_config({"gpu": {"default": {"on_demand": 1.0}}})
    assert cost_store.record_prices(world.store, cheaper, now=100.0)
    book = cost_store.price_book(world.store, TABLE)
    assert book.at(50.0).version == TABLE.version and book.at(150.0).version == cheaper.version


def test_workload_usage_is_read_from_transitions(world):
    recs = cost_store.workload_usage(world.store, since=world.t0 - H, until=world.now, now=world.now)
    acme = sorted((r.start - world.t0, r.end - world.t0) for r in recs if r.tenant == "acme")
    assert acme == [(0.0, 2 * H), (3 * H, 4 * H)]
    (beta,) = [r for r in recs if r.tenant == "beta"]
    assert (beta.gpus, beta.cpus, beta.market, beta.pool) == (0.5, 2.0, "spot", "sp")


def test_a_tenant_sees_its_own_costs_at_the_configured_rate(world):
    r = world.client.get("/api/v1/costs?window=1d&aggregate=tenant,pool", headers=ACME)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {row["tenant"] for row in body["rows"]} == {"acme"}
    od = [row for row in body["rows"] if row["pool"] == "od"][0]
    assert od["usage_cost"] == 12.00 and od["gpu_hours"] == 3.0 and od["tokens"] == 500
    assert body["price_version"] == TABLE.version and body["currency"] == "USD"
    r = world.client.get("/api/v1/costs?window=1d&tenant=beta", headers=ACME)  # asks for another
    assert {row["tenant"] for row in r.json()["rows"]} == {"acme"}


def test_admin_sees_every_tenant_idle_and_spot_share(world):
    body = world.client.get("/api/v1/costs?window=1d&aggregate=tenant", headers=ADMIN).json()
    costs = {row["tenant"]: row["cost"] for row in body["rows"]}
    # od capacity 32.00 − acme's 12.00 (the replica asked for nothing) = 20.00 idle
    assert costs == {"acme": 12.00, "beta": 6.00, "(idle)": 20.00}
    assert body["spot_share"] == pytest.approx(2.0 / 5.0)  # beta's 2 spot GPU-h of 3 + 2
    weighted = world.client.get("/api/v1/costs?window=1d&share_idle=weighted", headers=ADMIN).json()
    assert {row["tenant"]: row["cost"] for row in weighted["rows"]} == {"acme": 32.00, "beta": 6.00}


def test_steps_and_csv(world):
    r = world.client.get("/api/v1/costs?window=1d&step=1h&aggregate=tenant&format=csv", headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows and {"start", "end", "tenant", "cost"} <= set(rows[0])
    assert sum(float(x["usage_cost"]) for x in rows if x["tenant"] == "acme") == pytest.approx(12.0)


@pytest.mark.parametrize(
    "query, field",
    [
        ("window=7x", "window"),
        ("window=999d", "window"),
        ("aggregate=tenant,region", "aggregate"),
        ("step=1m", "step"),
        ("share_idle=fair", "share_idle"),
        ("format=xml", "format"),
        ("month=2026-13", "month"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(world, query, field):
    r = world.client.get(f"/api/v1/costs?{query}", headers=ACME)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == field


def test_chargeback_export_per_tenant(world, tmp_path):
    month = time.strftime("%Y-%m", time.gmtime(world.t0))
    r = world.client.get(f"/api/v1/costs/chargeback?month={month}", headers=ADMIN)
    assert r.status_code == 200, r.text
    rows = {x["tenant"]: x for x in csv.DictReader(io.StringIO(r.text))}
    if time.strftime("%Y-%m", time.gmtime(world.now)) != month:
        pytest.skip("the fixture's work straddles a month boundary")
    assert float(rows["acme"]["cost_on_demand"]) == 12.0 and float(rows["beta"]["cost_spot"]) == 6.0
    assert float(rows["beta"]["gpu_hours"]) == 2.0 and int(rows["acme"]["tokens"]) == 500
    assert float(rows["(idle)"]["cost_idle"]) == 20.0
    mine = world.client.get(f"/api/v1/costs/chargeback?month={month}&format=json", headers=ACME).json()
    assert [t["tenant"] for t in mine["tenants"]] == ["acme"]
    assert world.client.get("/api/v1/costs/chargeback?month=11-2026", headers=ACME).status_code == 422


def test_cli_report_and_export(tmp_path, capsys):
    class Fake:
        def __init__(self):
            self.calls = []

        def report(self, **kw):
            self.calls.append(kw)
            return {
                "aggregate": ["tenant"],
                "step_s": None,
                "currency": "USD",
                "price_version": "v1",
                "spot_share": 0.75,
                "rows": [
                    {
                        "tenant": "acme",
                        "gpu_hours": 3.0,
                        "cpu_hours": 6.0,
                        "usage_cost": 12.0,
                        "idle_cost": 0.0,
                        "cost": 12.0,
                        "tokens": 5,
                    }
                ],
                "totals": {
                    "gpu_hours": 3.0,
                    "cpu_hours": 6.0,
                    "tokens": 5,
                    "usage_cost": 12.0,
                    "idle_cost": 0.0,
                    "cost": 12.0,
                },
            }

        def chargeback(self, **kw):
            self.calls.append(kw)
            return "tenant,cost_total\nacme,12.0\n"

    from orion_ray.cli import build_parser

    fake = Fake()
    args = build_parser().parse_args(
        ["cost", "report", "--window", "7d", "--aggregate", "tenant,pool", "--step", "1d"]
    )
    assert cost_cli.cmd_report(args, fake) == 0
    assert fake.calls[0]["aggregate"] == "tenant,pool" and fake.calls[0]["step"] == "1d"
    assert "spot share of batch GPU-hours 75%" in capsys.readouterr().out
    out = tmp_path / "cb.csv"
    args = build_parser().parse_args(["cost", "export", "--month", "2026-11", "--to", str(out)])
    assert cost_cli.cmd_export(args, fake) == 0
    assert out.read_text() == "tenant,cost_total\nacme,12.0\n" and fake.calls[1]["month"] == "2026-11"


def test_query_defaults_and_month_window():
    q = parse_query(now=1_793_664_000.0, month="2026-11", aggregate="tenant,pool", default_share_idle="even")
    assert (q.end - q.start) == 30 * DAY_S and q.share_idle == "even" and q.aggregate == ("tenant", "pool")
    with pytest.raises(QueryError):
        parse_query(now=0.0, aggregate="tenant,tenant")


def test_config_cost_block_and_tenant_budget():
    cfg = OrionConfig.model_validate(
        {
            "orion": {
                "cost": {"currency": "EUR", "share_idle": "weighted", "prices": PRICES},
                "tenants": [{"id": "acme", "budget": {"gpu_hours_per_day": 8, "per_month": 100}}],
            }
        }
    )
    assert cfg.orion.cost.share_idle == "weighted"
    settings = settings_from(cfg.orion.tenants, PolicyConfig())
    assert isinstance(settings, PolicySettings) and settings.budgets is not None
    assert settings.budgets.limits["acme"].gpu_hours_per_day == 8
    assert settings_from([TenantConfig(id="x")], PolicyConfig()).budgets is None
    with pytest.raises(ValueError, match="cost.prices.gpu.H100.preemptible"):
        OrionConfig.model_validate({"orion": {"cost": {"prices": {"gpu": {"H100": {"preemptible": 1}}}}}})
    with pytest.raises(ValueError, match="spot_ok|standard"):
        WorkloadSpec.model_validate({"workload_type": "task", "function": "m:f", "qos": "cheap"})


def test_budget_use_and_capacity_records(world):
    use = budget_use(world.store, now=world.now)
    day = day_start(world.now)
    if world.t0 >= day:  # all of it today
        assert use["acme"].day == pytest.approx(3.0) and use["beta"].day == pytest.approx(2.0)
    assert use["acme"].month >= use["acme"].day
    nodes = [
        SimpleNamespace(
            total={"GPU": 4.0, "CPU": 8.0}, labels={"orion.io/pool": "sp", "orion.io/market": "spot"}
        ),
        SimpleNamespace(
            total={"GPU": 4.0, "CPU": 8.0}, labels={"orion.io/pool": "sp", "orion.io/market": "spot"}
        ),
        SimpleNamespace(total={"CPU": 2.0}, labels={}),
    ]
    recs = capacity_records(nodes, 0.0, 60.0)
    assert {(r.pool, r.market, r.nodes, r.gpus) for r in recs} == {
        ("sp", "spot", 2, 4.0),
        ("unknown", "on_demand", 1, 0.0),
    }
