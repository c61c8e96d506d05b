"""EC2Provider against a real moto server on loopback, with capacity errors injected per zone."""

import base64
import json

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from orion_ray.autoscaler.providers import EC2Provider, ReservationManager
from orion_ray.autoscaler.providers.retry import LaunchBudget
from orion_ray.autoscaler.providers.taxonomy import InvalidLaunch, LaunchBudgetExceeded, QuotaExceeded
from orion_ray.errors import CapacityError, ConfigError, NotFound, ValidationError

from .conftest import AMI, REGION, live_instances


def pool(subnets, **kw):
    base = {
        "name": "gpu",
        "instance_type": "p4d.24xlarge",
        "image_id": AMI,
        "subnets": [subnets["us-east-1a"], subnets["us-east-1b"], subnets["us-east-1c"]],
        "max_size": 8,
    }
    base.update(kw)
    return base


def provider(ec2, pools, clock=None, **kw):
    if clock is not None:
        kw.update(clock=clock, sleep=clock.sleep)
    return EC2Provider(ec2_client=ec2, pools=pools, cluster="test", rand=lambda: 0.5, **kw)


def zone_of(ec2, ids):
    d = ec2.describe_instances(InstanceIds=ids)
    return {i["Placement"]["AvailabilityZone"] for r in d["Reservations"] for i in r["Instances"]}


# -- the happy path and what a launched instance carries ------------------------------------------
def test_launch_gang_all_or_nothing_tagged(ec2, subnets, inject):
    p = provider(ec2, [pool(subnets)])
    res = p.launch("gpu", 4)
    assert len(res.instance_ids) == 4 and res.source == "on_demand" and res.zone == "us-east-1a"
    body = inject.calls[0]["body"]
    assert body["MinCount"] == body["MaxCount"] == 4  # a gang never comes up in part
    live = live_instances(ec2, **{"orion-launch-id": res.launch_id})
    assert sorted(i["InstanceId"] for i in live) == sorted(res.instance_ids)
    tags = {t["Key"]: t["Value"] for t in live[0]["Tags"]}
    assert tags["orion-cluster"] == "test" and tags["orion-pool"] == "gpu"
    assert tags["orion-launch-id"] == res.launch_id and tags["orion-capacity-source"] == "on_demand"
    assert tags["ray-cluster-name"] == "test" and tags["ray-user-node-type"] == "gpu"
    assert p.terminate(res.instance_ids) == res.instance_ids
    assert live_instances(ec2) == []


def test_user_data_starts_ray_with_autoscaler_v2_identity(ec2, subnets, inject):
    p = provider(ec2, [pool(subnets, ray_start={"head_address": "10.0.0.5:6379", "resources": {"accel": 1}})])
    res = p.launch("gpu", 1)
    ud = ec2.describe_instance_attribute(InstanceId=res.instance_ids[0], Attribute="userData")
    script = base64.b64decode(ud["UserData"]["Value"]).decode()
    assert 'export RAY_CLOUD_INSTANCE_ID="$INSTANCE_ID"' in script
    assert "export RAY_NODE_TYPE_NAME=gpu" in script
    assert "meta-data/instance-id" in script and "api/token" in script  # IMDSv2
    assert "ray start --address=10.0.0.5:6379" in script
    p.terminate(res.instance_ids)


# -- source order, zone failover, fallback ---------------------------------------------------------
def test_zone_failover_on_capacity_error_and_blocklist(ec2, subnets, inject, clock):
    inject.fail("InsufficientInstanceCapacity", zone="us-east-1a")
    inject.fail("InsufficientInstanceCapacity", zone="us-east-1b")
    p = provider(ec2, [pool(subnets)], clock=clock, blocklist_ttl_s=60)
    res = p.launch("gpu", 2)
    assert res.zone == "us-east-1c" and zone_of(ec2, res.instance_ids) == {"us-east-1c"}
    assert inject.answered() == [
        ("on_demand", "us-east-1a", "InsufficientInstanceCapacity"),
        ("on_demand", "us-east-1b", "InsufficientInstanceCapacity"),
        ("on_demand", "us-east-1c", "ok"),
    ]
    assert [h["outcome"] for h in res.history] == ["error", "error", "launched"]
    # the failed zones are skipped by the next launch, until their entries expire
    inject.calls.clear()
    res2 = p.launch("gpu", 1)
    assert [c["zone"] for c in inject.calls] == ["us-east-1c"]
    assert [h["reason"] for h in res2.history if h["outcome"] == "skipped"] == ["blocklisted"] * 2
    clock.advance(61)
    inject.calls.clear()
    p.launch("gpu", 1)
    assert inject.answered() == [
        ("on_demand", "us-east-1a", "InsufficientInstanceCapacity"),
        ("on_demand", "us-east-1b", "InsufficientInstanceCapacity"),
        ("on_demand", "us-east-1c", "ok"),
    ]


def test_spot_first_then_on_demand_fallback(ec2, subnets, inject):
    inject.fail("InsufficientInstanceCapacity", market="spot")
    p = provider(ec2, [pool(subnets, market="spot", fallback="on_demand")])
    res = p.launch("gpu", 2)
    assert [(m, z) for m, z, _ in inject.answered()] == [
        ("spot", "us-east-1a"),
        ("spot", "us-east-1b"),
        ("spot", "us-east-1c"),
        ("on_demand", "us-east-1a"),
    ]
    assert res.source == "on_demand"
    live = live_instances(ec2)
    assert len(live) == 2 and all(i.get("InstanceLifecycle") != "spot" for i in live)


def test_spot_success_is_spot(ec2, subnets, inject):
    p = provider(ec2, [pool(subnets, market="spot", max_spot_price=12.5)])
    res = p.launch("gpu", 1)
    assert res.source == "spot"
    assert inject.calls[0]["body"]["InstanceMarketOptions.SpotOptions.MaxPrice"] == "12.5000"
    assert live_instances(ec2)[0]["InstanceLifecycle"] == "spot"


def test_spot_without_fallback_fails_with_history_and_no_leak(ec2, subnets, inject):
    inject.fail("InsufficientInstanceCapacity", market="spot")
    p = provider(ec2, [pool(subnets, market="spot", fallback="none")])
    with pytest.raises(CapacityError) as e:
        p.launch("gpu", 2)
    assert type(e.value) is CapacityError and e.value.status_code == 503
    assert [(h["source"], h["zone"], h["error"]) for h in e.value.history] == [
        ("spot", z, "InsufficientInstanceCapacity") for z in ("us-east-1a", "us-east-1b", "us-east-1c")
    ]
    assert e.value.retry_after is not None  # when the first blocklisted zone comes back
    assert live_instances(ec2) == []


def reservations_stub(entries):
    """A ReservationManager over a Stubber'd client: moto has no capacity reservations."""
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_response(
        "describe_capacity_reservations",
        {"CapacityReservations": entries},
        {"CapacityReservationIds": [e["CapacityReservationId"] for e in entries]},
    )
    stub.activate()
    return ReservationManager(client, "test"), stub


def cr(rid, zone, available, itype="p4d.24xlarge", state="active"):
    return {
        "CapacityReservationId": rid,
        "InstanceType": itype,
        "AvailabilityZone": zone,
        "AvailableInstanceCount": available,
        "TotalInstanceCount": 4,
        "State": state,
        "InstanceMatchCriteria": "targeted",
    }


def test_reservations_first_matching_type_zone_and_room(ec2, subnets, inject):
    entries = [
        cr("cr-0000000000000000a", "us-east-1b", 1),  # too small for 2
        cr("cr-0000000000000000b", "us-east-1a", 4, itype="p5.48xlarge"),  # other type
        cr("cr-0000000000000000c", "us-east-1c", 4),
    ]  # fits
    mgr, stub = reservations_stub(entries)
    p = provider(
        ec2,
        [pool(subnets, capacity_reservations=[e["CapacityReservationId"] for e in entries])],
        reservations=mgr,
    )
    res = p.launch("gpu", 2)
    stub.assert_no_pending_responses()
    assert (res.source, res.zone, res.reservation_id) == ("reservation", "us-east-1c", "cr-0000000000000000c")
    body = inject.calls[0]["body"]
    assert (
        body["CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"]
        == "cr-0000000000000000c"
    )
    assert body["SubnetId"] == subnets["us-east-1c"]
    tags = {t["Key"]: t["Value"] for t in live_instances(ec2)[0]["Tags"]}
    assert tags["orion-capacity-reservation"] == "cr-0000000000000000c"


def test_reservation_full_falls_to_on_demand(ec2, subnets, inject):
    mgr, _ = reservations_stub([cr("cr-0000000000000000c", "us-east-1c", 4)])
    inject.fail("ReservationCapacityExceeded", market="reservation")
    p = provider(ec2, [pool(subnets, capacity_reservations=["cr-0000000000000000c"])], reservations=mgr)
    res = p.launch("gpu", 2)
    assert [(m, z) for m, z, _ in inject.answered()] == [
        ("reservation", "us-east-1c"),
        ("on_demand", "us-east-1a"),
    ]
    assert res.source == "on_demand"
    assert p.blocklist.is_blocked(("reservation", "cr-0000000000000000c"))


def test_reservations_looked_up_only_for_pools_that_list_them(ec2, subnets, inject):
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client):  # no responses queued: any reservation call would fail the launch
        p = provider(ec2, [pool(subnets)], reservations=ReservationManager(client))
        res = p.launch("gpu", 1)
    assert res.source == "on_demand"


# -- taxonomy: quota, transient, invalid -----------------------------------------------------
def test_quota_error_does_not_hop_zones(ec2, subnets, inject):
    inject.fail("VcpuLimitExceeded", zone="us-east-1a")
    p = provider(ec2, [pool(subnets)])
    with pytest.raises(QuotaExceeded) as e:
        p.launch("gpu", 2)
    assert inject.answered() == [("on_demand", "us-east-1a", "VcpuLimitExceeded")]
    assert [h["outcome"] for h in e.value.history] == ["error", "skipped", "skipped"]
    assert not p.blocklist.snapshot()  # a quota is not the zone's fault
    assert live_instances(ec2) == []


def test_spot_quota_still_falls_back_to_on_demand(ec2, subnets, inject):
    inject.fail("MaxSpotInstanceCountExceeded", market="spot")
    p = provider(ec2, [pool(subnets, market="spot", fallback="on_demand")])
    res = p.launch("gpu", 1)
    assert inject.answered() == [
        ("spot", "us-east-1a", "MaxSpotInstanceCountExceeded"),
        ("on_demand", "us-east-1a", "ok"),
    ]
    assert res.source == "on_demand"


def test_throttling_retried_with_backoff_same_zone(ec2, subnets, inject, clock):
    inject.fail("RequestLimitExceeded", zone="us-east-1a", times=2)
    p = provider(ec2, [pool(subnets)], clock=clock, backoff_base_s=1.0, backoff_cap_s=30.0)
    res = p.launch("gpu", 1)
    assert res.zone == "us-east-1a"
    assert [a for _, _, a in inject.answered()] == ["RequestLimitExceeded"] * 2 + ["ok"]
    assert clock.slept == [0.5, 1.0]  # full jitter at rand=0.5: 0.5 * 1, 0.5 * 2
    # the same ClientToken on every retry of one attempt: a lost answer cannot launch twice
    assert len({c["body"]["ClientToken"] for c in inject.calls}) == 1


def test_5xx_retries_run_out_then_next_zone(ec2, subnets, inject, clock):
    inject.fail("InternalError", zone="us-east-1a", status=500)
    p = provider(ec2, [pool(subnets)], clock=clock, transient_retries=2)
    res = p.launch("gpu", 1)
    assert [z for _, z, _ in inject.answered()] == ["us-east-1a"] * 3 + ["us-east-1b"]
    assert res.zone == "us-east-1b" and len(clock.slept) == 2


def test_invalid_request_stops_at_once(ec2, subnets, inject):
    inject.fail("InvalidAMIID.NotFound")
    p = provider(ec2, [pool(subnets)])
    with pytest.raises(InvalidLaunch) as e:
        p.launch("gpu", 1)
    assert e.value.status_code == 422 and len(inject.calls) == 1
    assert live_instances(ec2) == []


# -- budget --------------------------------------------------------------------------------------
def test_budget_expiring_mid_pass_fails_with_history(ec2, subnets, inject, clock):
    inject.fail("InsufficientInstanceCapacity", zone="us-east-1a")
    inject.fail("RequestLimitExceeded", zone="us-east-1b")
    p = provider(ec2, [pool(subnets, launch_budget_s=10)], clock=clock, backoff_base_s=8.0)
    with pytest.raises(LaunchBudgetExceeded) as e:
        p.launch("gpu", 1)
    # 1a: capacity; 1b: throttled, backoff 4 s, throttled again; the next wait (8 s) would overrun
    assert [(h["zone"], h["error"]) for h in e.value.history] == [
        ("us-east-1a", "InsufficientInstanceCapacity"),
        ("us-east-1b", "RequestLimitExceeded"),
        ("us-east-1b", "RequestLimitExceeded"),
    ]
    assert "budget of 10s" in e.value.message
    assert [c["zone"] for c in inject.calls].count("us-east-1c") == 0
    assert live_instances(ec2) == []


def test_spent_budget_makes_no_call(ec2, subnets, inject, clock):
    p = provider(ec2, [pool(subnets, launch_budget_s=5)], clock=clock)
    budget = LaunchBudget(5, clock)
    clock.advance(6)
    with pytest.raises(LaunchBudgetExceeded):
        p.launch("gpu", 1, budget=budget)
    assert inject.calls == []


# -- never leak ----------------------------------------------------------------------------------
def test_lost_answer_after_launch_is_cleaned_up(ec2, subnets, inject):
    """EC2 launched the gang but the answer never arrived (a connection error after the call):
    the retries and the final clean-up leave nothing running."""

    def drop_answer(**kwargs):
        raise EndpointConnectionError(endpoint_url="http://ec2")

    ec2.meta.events.register("after-call.ec2.RunInstances", drop_answer)
    p = provider(ec2, [pool(subnets)], transient_retries=1, sleep=lambda s: None)
    with pytest.raises(CapacityError) as e:
        p.launch("gpu", 3)
    assert len([c for c in inject.calls if c["answer"] == "ok"]) >= 1  # moto did launch
    cleaned = [h for h in e.value.history if h.get("outcome") == "cleaned_up"]
    assert cleaned and len(cleaned[0]["terminated"]) >= 3
    assert live_instances(ec2) == []


def test_lost_answer_then_success_keeps_only_the_gang(ec2, subnets, inject):
    """The first call launched but its answer was lost; a later call succeeded. The instances of
    the lost call must not outlive the launch, and the gang handed back must stay."""
    lost = []

    def drop_first_answer(parsed, **kwargs):
        if not lost:
            lost.extend(i["InstanceId"] for i in parsed.get("Instances", []))
            raise EndpointConnectionError(endpoint_url="http://ec2")

    ec2.meta.events.register("after-call.ec2.RunInstances", drop_first_answer)
    p = provider(ec2, [pool(subnets)], sleep=lambda s: None)
    res = p.launch("gpu", 2)
    assert len(lost) == 2 and not set(lost) & set(res.instance_ids)
    assert sorted(i["InstanceId"] for i in live_instances(ec2)) == sorted(res.instance_ids)
    assert [h for h in res.history if h.get("outcome") == "cleaned_up"][0]["terminated"] == lost


def test_interrupted_launch_is_cleaned_up(ec2, subnets, inject):
    """A launch abandoned by an exception that is not EC2's (here, an interrupt) still terminates
    what it started."""

    def interrupt(**kwargs):
        raise KeyboardInterrupt

    ec2.meta.events.register("after-call.ec2.RunInstances", interrupt)
    p = provider(ec2, [pool(subnets)])
    with pytest.raises(KeyboardInterrupt):
        p.launch("gpu", 2)
    assert live_instances(ec2) == []


def test_abandon_terminates_a_launch(ec2, subnets, inject):
    p = provider(ec2, [pool(subnets)])
    res = p.launch("gpu", 2)
    other = p.launch("gpu", 1)
    assert sorted(p.abandon(res.launch_id)) == sorted(res.instance_ids)
    assert [i["InstanceId"] for i in live_instances(ec2)] == other.instance_ids


def test_every_failure_path_leaves_nothing(ec2, subnets, inject):
    for code in (
        "InsufficientInstanceCapacity",
        "UnfulfillableCapacity",
        "InstanceLimitExceeded",
        "Unsupported",
    ):
        inject.rules.clear()
        inject.fail(code)
        p = provider(ec2, [pool(subnets, market="spot", fallback="on_demand")])
        with pytest.raises(CapacityError):
            p.launch("gpu", 2)
        assert live_instances(ec2) == [], code


# -- bad input -----------------------------------------------------------------------------------
def test_bad_pools_and_counts_are_4xx(ec2, subnets):
    with pytest.raises(ConfigError) as e:
        provider(ec2, [pool(subnets, market="reserved", max_size=-1)])
    fields = {d["field"] for d in e.value.details}
    assert {"orion.worker_pools[0].market", "orion.worker_pools[0].max_size"} <= fields
    assert e.value.status_code == 422
    p = provider(ec2, [pool(subnets)])
    with pytest.raises(NotFound):
        p.launch("cpu", 1)
    for count in (0, 9, "2", True):
        with pytest.raises(ValidationError) as e:
            p.launch("gpu", count)
        assert e.value.details[0]["field"] == "count"


def test_unknown_subnet_is_a_config_error(ec2, subnets):
    p = provider(ec2, [{**pool(subnets), "subnets": ["subnet-0000000000deadbee"]}])
    with pytest.raises(ConfigError) as e:
        p.launch("gpu", 1)
    assert e.value.details[0]["field"] == "worker_pools.gpu.subnets"


# -- what an operator sees -----------------------------------------------------------------------
def test_status_reports_blocked_zones_and_the_last_failure(ec2, subnets, inject, clock):
    inject.fail("InsufficientInstanceCapacity", market="spot", times=3)
    p = provider(ec2, [pool(subnets, market="spot")], clock=clock, blocklist_ttl_s=120)
    with pytest.raises(CapacityError):
        p.launch("gpu", 2)
    st = p.status()["pools"]["gpu"]
    assert st["sources"] == ["spot"]
    assert sorted(b["zone"] for b in st["blocked"]) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert all(b["seconds_left"] == 120 for b in st["blocked"])
    failure = st["last_failure"]
    assert failure["code"] == "capacity_error" and failure["count"] == 2
    assert [h["error"] for h in failure["history"]] == ["InsufficientInstanceCapacity"] * 3
    clock.advance(121)
    p.launch("gpu", 1)
    st = p.status()["pools"]["gpu"]
    assert st["last_failure"] is None and st["blocked"] == []


def test_status_route_over_http(ec2, subnets, inject):
    from fastapi.testclient import TestClient

    from orion_ray.api.app import build_app
    from orion_ray.api.auth import KeyRing, hash_key
    from orion_ray.autoscaler.capacity_service import CapacityService

    inject.fail("VcpuLimitExceeded")
    p = provider(ec2, [pool(subnets)])
    with pytest.raises(QuotaExceeded):
        p.launch("gpu", 2)
    app = build_app(
        KeyRing([hash_key("admin-key")]),
        backend=None,
        capacity_backend=CapacityService(ReservationManager(ec2, "test"), p),
    )
    with TestClient(app) as client:
        assert client.get("/admin/v1/capacity/status").status_code == 401
        r = client.get("/admin/v1/capacity/status", headers={"Authorization": "Bearer admin-key"})
    assert r.status_code == 200
    failure = r.json()["pools"]["gpu"]["last_failure"]
    assert failure["code"] == "capacity_quota_exceeded"
    assert failure["history"][0]["error"] == "VcpuLimitExceeded"


def test_cli_capacity_status(ec2, subnets, inject, monkeypatch, tmp_path, capsys):
    from orion_ray import cli
    from orion_ray.api.app import build_app
    from orion_ray.api.auth import KeyRing, hash_key
    from orion_ray.autoscaler.capacity_service import CapacityService

    from .conftest import serve_for_cli

    inject.fail("InsufficientInstanceCapacity", zone="us-east-1a")
    inject.fail("InsufficientInstanceCapacity", zone="us-east-1b")
    inject.fail("InsufficientInstanceCapacity", zone="us-east-1c")
    p = provider(ec2, [pool(subnets)])
    with pytest.raises(CapacityError):
        p.launch("gpu", 2)
    app = build_app(
        KeyRing([hash_key("admin-key")]),
        backend=None,
        capacity_backend=CapacityService(ReservationManager(ec2, "test"), p),
    )
    with serve_for_cli(app, monkeypatch, tmp_path):
        assert cli.main(["capacity", "status"]) == 0
        out = capsys.readouterr().out
        assert "gpu" in out and "on_demand/us-east-1a" in out and "capacity_error" in out
        assert cli.main(["capacity", "status", "-o", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["pools"]["gpu"]["blocked"]) == 3
