"""Launch retries over time (the autoscaler's side): passes with backoff until the budget is spent,
blocklisted zones tried again once they expire; on moto with injected errors and a fake clock."""

import pytest

from orion_ray.autoscaler.launcher import launch_with_retries
from orion_ray.autoscaler.providers import EC2Provider
from orion_ray.autoscaler.providers.taxonomy import LaunchBudgetExceeded, QuotaExceeded

from .conftest import AMI, live_instances


def make(ec2, subnets, clock, **pool):
    p = {
        "name": "gpu",
        "instance_type": "p4d.24xlarge",
        "image_id": AMI,
        "subnets": [subnets["us-east-1a"], subnets["us-east-1b"]],
        "max_size": 4,
        **pool,
    }
    return EC2Provider(
        ec2_client=ec2,
        pools=[p],
        cluster="test",
        clock=clock,
        sleep=clock.sleep,
        rand=lambda: 1.0,
        blocklist_ttl_s=60,
    )


def test_capacity_comes_back_after_blocklist_expiry(ec2, subnets, inject, clock):
    # both zones full for the first pass only
    inject.fail("InsufficientInstanceCapacity", times=2)
    p = make(ec2, subnets, clock)
    res = launch_with_retries(p, "gpu", 2, backoff_base_s=5)
    assert res.zone == "us-east-1a"
    assert clock.slept == [60]  # waited for the blocklist to expire (longer than the 5 s backoff)
    outcomes = [h.get("outcome") for h in res.history]
    assert outcomes == [None, "error", "error", "waiting", "launched"]  # None: the pass marker
    assert len(live_instances(ec2)) == 2


def test_budget_expires_with_every_pass_in_history(ec2, subnets, inject, clock):
    inject.fail("InsufficientInstanceCapacity")
    p = make(ec2, subnets, clock, launch_budget_s=150)
    with pytest.raises(LaunchBudgetExceeded) as e:
        launch_with_retries(p, "gpu", 2, backoff_base_s=5)
    passes = [h["pass"] for h in e.value.history if "pass" in h]
    assert passes == [1, 2, 3]  # t=0, 60, 120; a 4th would start at 180 > 150
    errors = [h for h in e.value.history if h.get("outcome") == "error"]
    assert len(errors) == 6 and {h["zone"] for h in errors} == {"us-east-1a", "us-east-1b"}
    assert e.value.retry_after is not None and e.value.status_code == 503
    assert live_instances(ec2) == []


def test_quota_is_reported_at_once_not_retried(ec2, subnets, inject, clock):
    inject.fail("VcpuLimitExceeded")
    p = make(ec2, subnets, clock)
    with pytest.raises(QuotaExceeded):
        launch_with_retries(p, "gpu", 2)
    assert len(inject.calls) == 1 and clock.slept == []
    assert live_instances(ec2) == []
