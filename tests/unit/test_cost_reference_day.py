"""A reference day reconciled by hand (issue 18, "Done means": the cost of a reference day).

Prices (USD per unit-hour)::

    A100 GPU   on_demand 4.00   spot 1.60
    vCPU       on_demand 0.05   spot 0.02

Capacity (node-hours; each node 4 × A100, 32 vCPUs)::

    pool od   (on_demand) 1 node, 00:00-24:00  24 h × (4 × 4.00 + 32 × 0.05) = 24 × 17.60 = 422.40
    pool spot (spot)      1 node, 00:00-12:00  12 h × (4 × 1.60 + 32 × 0.02) = 12 ×  7.04 =  84.48
                                                                               capacity  506.88

Usage::

    w1    alpha  od    2 GPU, 8 vCPU,   00:00-10:00  10 h × (2 × 4.00 + 8 × 0.05)  = 10 × 8.40 =  84.00
    w2    alpha  spot  4 GPU, 16 vCPU,  preempted: 00:00-03:00, requeued, 05:00-11:00 (9 h)
                                          9 h × (4 × 1.60 + 16 × 0.02) =  9 × 6.72 =  60.48
    w3    beta   od    0.5 GPU, 2 vCPU requested, 4 vCPU used (telemetry: max(requested, used)),
                       12:00-20:00         8 h × (0.5 × 4.00 + 4 × 0.05) =  8 × 2.20 =  17.60
    rep1  beta   od    serving replica 1 GPU, 4 vCPU, 00:00-24:00, 120 000 tokens
                                         24 h × (1 × 4.00 + 4 × 0.05)   = 24 × 4.20 = 100.80

    usage: alpha 84.00 + 60.48 = 144.48;  beta 17.60 + 100.80 = 118.40;  total 262.88
    idle:  od   422.40 - (84.00 + 118.40) = 220.00
           spot  84.48 - 60.48            =  24.00            total idle 244.00 (= 506.88 - 262.88)

Idle shared::

    none:     alpha 144.48   beta 118.40   (idle) 244.00
    weighted: od's 220.00 by od usage 84.00 : 118.40 (of 202.40)
                alpha 220 × 84.00 / 202.40 =  91.304347…   beta 220 × 118.40 / 202.40 = 128.695652…
              spot's 24.00 all to alpha (its only user)
              alpha 144.48 + 91.304347 + 24 = 259.784347 → 259.78
              beta  118.40 + 128.695652     = 247.095652 → 247.10        (sum 506.88)
    even:     od's 220.00 in halves, spot's 24.00 to alpha
              alpha 144.48 + 110 + 24 = 278.48;   beta 118.40 + 110 = 228.40  (sum 506.88)

GPU-hours: alpha 2×10 + 4×9 = 56; beta 0.5×8 + 1×24 = 28. Spot share of batch GPU-hours:
w2's 36 of (20 + 36 + 4) = 60 → 0.6.
"""

from __future__ import annotations

import pytest

from orion_ray.cost.allocation import aggregate, allocate, spot_share
from orion_ray.cost.prices import PriceBook, PriceTable
from orion_ray.cost.usage import CapacityRecord, UsageRecord, workload_records

D = 1_793_664_000.0  # 2026-11-03 00:00 UTC
H = 3600.0

TABLE = PriceTable.from_config(
    {"gpu": {"A100": {"on_demand": 4.0, "spot": 1.6}}, "cpu": {"on_demand": 0.05, "spot": 0.02}}
)
BOOK = PriceBook([(0.0, TABLE)])

W2_HISTORY = [
    ("queued", D - 100),
    ("starting", D),
    ("running", D + 60),
    ("preempted", D + 3 * H),
    ("queued", D + 3 * H + 1),
    ("starting", D + 5 * H),
    ("running", D + 5 * H + 30),
    ("completed", D + 11 * H),
]


def records() -> list[UsageRecord]:
    w1 = UsageRecord("workload", "w1", "alpha", "od", "on_demand", D, D + 10 * H, 2, 8, gpu_type="A100")
    w2 = workload_records(
        workload_id="w2",
        tenant="alpha",
        history=W2_HISTORY,
        bundles=[{"GPU": 4.0, "CPU": 16.0}],
        gpu_type="A100",
        pool="spot",
        market="spot",
        now=D + 24 * H,
    )
    w3 = UsageRecord(
        "workload",
        "w3",
        "beta",
        "od",
        "on_demand",
        D + 12 * H,
        D + 20 * H,
        0.5,
        2,
        gpu_type="A100",
        used_cpus=4,
    )
    rep = UsageRecord(
        "replica", "llm/rep1", "beta", "od", "on_demand", D, D + 24 * H, 1, 4, gpu_type="A100", tokens=120_000
    )
    return [w1, *w2, w3, rep]


CAPACITY = [
    CapacityRecord("od", "on_demand", D, D + 24 * H, gpus=4, cpus=32, gpu_type="A100"),
    CapacityRecord("spot", "spot", D, D + 12 * H, gpus=4, cpus=32, gpu_type="A100"),
]


def by_tenant(share_idle: str) -> dict[str, dict]:
    rows = allocate(records(), CAPACITY, BOOK, start=D, end=D + 24 * H, share_idle=share_idle)
    return {r["tenant"]: r for r in aggregate(rows, ["tenant"], per_bucket=False)}


def test_preempted_workload_is_two_segments_of_nine_hours():
    (w2a, w2b) = [r for r in records() if r.ref == "w2"]
    assert (w2a.start, w2a.end, w2b.start, w2b.end) == (D, D + 3 * H, D + 5 * H, D + 11 * H)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("none", {"alpha": 144.48, "beta": 118.40, "(idle)": 244.00}),
        ("weighted", {"alpha": 259.78, "beta": 247.10}),
        ("even", {"alpha": 278.48, "beta": 228.40}),
    ],
)
def test_reference_day_costs_per_share_mode(mode, expected):
    got = by_tenant(mode)
    assert {t: r["cost"] for t, r in got.items()} == expected


def test_reference_day_usage_idle_hours_and_tokens():
    got = by_tenant("weighted")
    assert got["alpha"]["usage_cost"] == 144.48 and got["alpha"]["idle_cost"] == 115.30
    assert got["beta"]["usage_cost"] == 118.40 and got["beta"]["idle_cost"] == 128.70
    assert got["alpha"]["gpu_hours"] == 56.0 and got["beta"]["gpu_hours"] == 28.0
    assert got["alpha"]["cpu_hours"] == 8 * 10 + 16 * 9 and got["beta"]["cpu_hours"] == 4 * 8 + 4 * 24
    assert got["beta"]["tokens"] == 120_000 and got["alpha"]["tokens"] == 0


def test_reference_day_per_pool_and_spot_share():
    rows = allocate(records(), CAPACITY, BOOK, start=D, end=D + 24 * H, share_idle="none")
    pools = {r["pool"]: r for r in aggregate(rows, ["pool"], per_bucket=False)}
    assert pools["od"]["cost"] == 422.40 and pools["spot"]["cost"] == 84.48
    assert pools["spot"]["spot_gpu_hours"] == 36.0
    assert spot_share(rows) == pytest.approx(0.6)


def test_buckets_add_up_to_the_day():
    rows = allocate(records(), CAPACITY, BOOK, start=D, end=D + 24 * H, step=12 * H, share_idle="none")
    per = aggregate(rows, ["tenant"])
    assert {r["start"] for r in per} == {D, D + 12 * H}
    alpha = [r for r in per if r["tenant"] == "alpha"]
    assert sum(r["usage_cost"] for r in alpha) == pytest.approx(144.48)
    idle = sum(r["cost"] for r in per if r["tenant"] == "(idle)")
    assert idle == pytest.approx(244.00)
