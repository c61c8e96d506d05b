"""The pure pieces: pool schema, error taxonomy, source order and attempt plan, blocklist expiry,
backoff with jitter, budget. No cloud, no Ray, no sleeping."""

import pytest

from orion_ray.autoscaler.providers.pools import parse_pool, parse_pools
from orion_ray.autoscaler.providers.retry import Blocklist, LaunchBudget, backoff_delay
from orion_ray.autoscaler.providers.sources import (
    Reservation,
    plan_attempts,
    source_order,
    split_blocked,
    usable_reservations,
)
from orion_ray.autoscaler.providers.taxonomy import ErrorKind, classify, error_code
from orion_ray.errors import ConfigError

from .conftest import FakeClock

AMI = "ami-0123456789abcdef0"
ZONES = {"subnet-a": "z-a", "subnet-b": "z-b", "subnet-b2": "z-b", "subnet-c": "z-c"}


def mk(**kw):
    raw = {
        "name": "gpu",
        "instance_type": "p4d.24xlarge",
        "image_id": AMI,
        "subnets": ["subnet-a", "subnet-b", "subnet-b2", "subnet-c"],
    }
    raw.update(kw)
    return parse_pool(raw)


# -- pools ---------------------------------------------------------------------------------------
def test_pool_defaults():
    p = mk()
    assert (p.market, p.fallback, p.launch_budget_s, p.min_size) == ("on_demand", "none", 900.0, 0)


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("market", "reserved", "market"),
        ("fallback", "spot", "fallback"),
        ("subnets", [], "subnets"),
        ("subnets", ["sn-1"], "subnets"),
        ("subnets", ["subnet-a", "subnet-a"], "subnets"),
        ("image_id", "ubuntu", "image_id"),
        ("instance_type", "P4D", "instance_type"),
        ("capacity_reservations", ["res-1"], "capacity_reservations"),
        ("launch_budget_s", 0, "launch_budget_s"),
        ("min_size", -1, "min_size"),
        ("surprise", 1, "surprise"),
    ],
)
def test_pool_field_errors_name_the_field(field, value, problem):
    with pytest.raises(ConfigError) as e:
        mk(**{field: value})
    assert e.value.status_code == 422
    assert any(d["field"] == f"worker_pool.{problem}" for d in e.value.details), e.value.details


def test_pool_cross_field_errors():
    with pytest.raises(ConfigError, match="invalid"):
        mk(min_size=5, max_size=2)
    with pytest.raises(ConfigError):
        mk(max_spot_price=1.0)  # on-demand pool


def test_parse_pools_reports_all_and_duplicates():
    with pytest.raises(ConfigError) as e:
        parse_pools([mk().model_dump(), mk().model_dump(), {"name": "x"}, "nope"])
    fields = [d["field"] for d in e.value.details]
    assert "orion.worker_pools[1].name" in fields  # duplicate
    assert "orion.worker_pools[2].instance_type" in fields  # missing
    assert "orion.worker_pools[3]" in fields  # not a mapping
    with pytest.raises(ConfigError):
        parse_pools({"gpu": {}})


# -- taxonomy ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "code, status, kind",
    [
        ("InsufficientInstanceCapacity", 500, ErrorKind.CAPACITY),
        ("ReservationCapacityExceeded", 400, ErrorKind.CAPACITY),
        ("UnfulfillableCapacity", 400, ErrorKind.CAPACITY),
        ("VcpuLimitExceeded", 400, ErrorKind.QUOTA),
        ("InstanceLimitExceeded", 400, ErrorKind.QUOTA),
        ("MaxSpotInstanceCountExceeded", 400, ErrorKind.QUOTA),
        ("RequestLimitExceeded", 503, ErrorKind.TRANSIENT),
        ("SomethingNew", 502, ErrorKind.TRANSIENT),
        ("InvalidAMIID.NotFound", 400, ErrorKind.INVALID),
        ("UnauthorizedOperation", 403, ErrorKind.INVALID),
    ],
)
def test_classify(code, status, kind):
    assert classify(code, status) is kind


def test_error_code_of_client_error_and_other():
    from botocore.exceptions import ClientError

    exc = ClientError(
        {"Error": {"Code": "VcpuLimitExceeded", "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "RunInstances",
    )
    assert error_code(exc) == ("VcpuLimitExceeded", 400, "m")
    assert error_code(ValueError("x")) == ("ValueError", None, "x")


# -- sources -------------------------------------------------------------------------------------
def test_source_order():
    assert source_order(mk()) == ["on_demand"]
    assert source_order(mk(market="spot")) == ["spot"]
    assert source_order(mk(market="spot", fallback="on_demand")) == ["spot", "on_demand"]
    assert source_order(mk(capacity_reservations=["cr-1"], market="spot", fallback="on_demand")) == [
        "reservation",
        "spot",
        "on_demand",
    ]


def test_plan_one_attempt_per_zone_per_source():
    plan = plan_attempts(mk(market="spot", fallback="on_demand"), ZONES, [], 2)
    assert [(a.source, a.zone, a.subnet_id) for a in plan] == [
        ("spot", "z-a", "subnet-a"),
        ("spot", "z-b", "subnet-b"),
        ("spot", "z-c", "subnet-c"),
        ("on_demand", "z-a", "subnet-a"),
        ("on_demand", "z-b", "subnet-b"),
        ("on_demand", "z-c", "subnet-c"),
    ]


def test_reservations_match_type_zone_state_and_room_in_pool_order():
    rs = [
        Reservation("cr-2", "p4d.24xlarge", "z-c", 8),
        Reservation("cr-1", "p4d.24xlarge", "z-b", 2),
        Reservation("cr-3", "p5.48xlarge", "z-a", 8),
        Reservation("cr-4", "p4d.24xlarge", "z-a", 8, state="expired"),
        Reservation("cr-5", "p4d.24xlarge", "z-x", 8),
    ]  # zone without a pool subnet
    pool = mk(capacity_reservations=["cr-1", "cr-2", "cr-3", "cr-4", "cr-5", "cr-9"])
    assert [r.reservation_id for r in usable_reservations(pool, rs, 2)] == ["cr-1", "cr-2", "cr-5"]
    assert [r.reservation_id for r in usable_reservations(pool, rs, 3)] == ["cr-2", "cr-5"]
    plan = plan_attempts(pool, ZONES, rs, 2)
    assert [(a.source, a.zone, a.reservation_id) for a in plan[:2]] == [
        ("reservation", "z-b", "cr-1"),
        ("reservation", "z-c", "cr-2"),
    ]
    assert [a.source for a in plan[2:]] == ["on_demand"] * 3


def test_split_blocked_and_quota_buckets():
    plan = plan_attempts(mk(market="spot", fallback="on_demand"), ZONES, [], 1)
    blocked = {("spot", "p4d.24xlarge", "z-b"): 42.0}
    to_try, skipped = split_blocked(plan, "p4d.24xlarge", blocked.get)
    assert [(a.source, a.zone) for a, _ in skipped] == [("spot", "z-b")] and skipped[0][1] == 42.0
    assert len(to_try) == 5
    assert {a.quota_bucket for a in plan} == {"spot", "on_demand"}


# -- blocklist, backoff, budget ------------------------------------------------------------------
def test_blocklist_expires():
    clock = FakeClock()
    bl = Blocklist(ttl_s=60, clock=clock)
    bl.add("k")
    assert bl.is_blocked("k") and bl.snapshot() == {"k": 60}
    clock.advance(59.9)
    assert bl.is_blocked("k")
    clock.advance(0.2)
    assert not bl.is_blocked("k") and bl.snapshot() == {}
    bl.add("k", ttl_s=5)
    bl.add("k", ttl_s=1)  # a shorter entry does not shorten a longer one
    assert bl.blocked_until("k") == clock() + 5


def test_backoff_grows_caps_and_jitters():
    assert [backoff_delay(n, 1, 30, rand=lambda: 1.0) for n in (1, 2, 3, 6, 7)] == [1, 2, 4, 30, 30]
    assert backoff_delay(3, 1, 30, rand=lambda: 0.0) == 0
    assert backoff_delay(3, 1, 30, rand=lambda: 0.25) == 1.0
    assert backoff_delay(0, 2, 30, rand=lambda: 1.0) == 2  # attempt below 1 is the first
    assert backoff_delay(500, 1, 30, rand=lambda: 1.0) == 30  # no overflow
    import random

    rng = random.Random(7)
    draws = {backoff_delay(4, 1, 30, rand=rng.random) for _ in range(20)}
    assert len(draws) > 1 and all(0 <= d <= 8 for d in draws)


def test_budget():
    clock = FakeClock()
    b = LaunchBudget(10, clock)
    assert b.remaining() == 10 and not b.expired() and b.allows_wait(9.9)
    clock.advance(4)
    assert b.elapsed() == 4 and not b.allows_wait(6) and b.allows_wait(5.9)
    clock.advance(7)
    assert b.expired() and b.remaining() == 0


def test_provider_package_imports_neither_boto3_nor_ray():
    """The policy and provider modules load where neither is installed (the plugin module aside):
    checked in a fresh interpreter, since this one has both loaded already."""
    import subprocess
    import sys

    code = (
        "import sys, orion_ray.autoscaler.providers, orion_ray.autoscaler.launcher, "
        "orion_ray.api.capacity, orion_ray.kuberay.client; "
        "print(sorted(m for m in ('boto3', 'botocore', 'ray', 'kubernetes') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
