"""Capacity reservations: the manager over a ``Stubber``'d client (moto has no reservation calls),
the admin API over that manager, and the CLI over HTTP to the API on 127.0.0.1."""

import datetime as dt

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fastapi.testclient import TestClient
from pydantic import ValidationError as PydanticValidationError

from orion_ray import cli
from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.autoscaler.providers.reservations import ReservationManager, ReservationRequest
from orion_ray.errors import CapacityError, NotFound, ValidationError

from .conftest import serve_for_cli

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}
CR = "cr-0123456789abcdef0"
END = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def ec2_cr(rid=CR, state="active", available=4, end=None):
    d = {
        "CapacityReservationId": rid,
        "InstanceType": "p4d.24xlarge",
        "AvailabilityZone": "us-east-1a",
        "AvailableInstanceCount": available,
        "TotalInstanceCount": 4,
        "State": state,
        "InstanceMatchCriteria": "targeted",
    }
    if end:
        d["EndDate"] = end
    return d


@pytest.fixture
def stubbed():
    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.activate()
    yield ReservationManager(client, cluster="prod"), stub
    stub.deactivate()


def expect_create(stub, count=4, end=None):
    params = {
        "InstanceType": "p4d.24xlarge",
        "InstancePlatform": "Linux/UNIX",
        "AvailabilityZone": "us-east-1a",
        "InstanceCount": count,
        "InstanceMatchCriteria": "targeted",
        "TagSpecifications": [
            {
                "ResourceType": "capacity-reservation",
                "Tags": [{"Key": "team", "Value": "llm"}, {"Key": "orion-cluster", "Value": "prod"}],
            }
        ],
        "EndDateType": "limited" if end else "unlimited",
    }
    if end:
        params["EndDate"] = ANY
    stub.add_response(
        "create_capacity_reservation", {"CapacityReservation": ec2_cr(available=count, end=end)}, params
    )


# -- the manager ---------------------------------------------------------------------------------
def test_create_list_release(stubbed):
    mgr, stub = stubbed
    expect_create(stub, end=END)
    r = mgr.create(
        ReservationRequest(
            instance_type="p4d.24xlarge",
            availability_zone="us-east-1a",
            count=4,
            end_date=END,
            tags={"team": "llm"},
        )
    )
    assert (r.reservation_id, r.available, r.end_date) == (CR, 4, END.isoformat())
    stub.add_response(
        "describe_capacity_reservations",
        {"CapacityReservations": [ec2_cr()], "NextToken": "p2"},
        {"Filters": [{"Name": "tag:orion-cluster", "Values": ["prod"]}]},
    )
    stub.add_response(
        "describe_capacity_reservations",
        {"CapacityReservations": [ec2_cr("cr-0000000000000000b")]},
        {"Filters": [{"Name": "tag:orion-cluster", "Values": ["prod"]}], "NextToken": "p2"},
    )
    assert [x.reservation_id for x in mgr.list()] == [CR, "cr-0000000000000000b"]
    stub.add_response("cancel_capacity_reservation", {"Return": True}, {"CapacityReservationId": CR})
    assert mgr.release(CR) == {"reservation_id": CR, "released": True, "state": "cancelled"}
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    "code, status, exc",
    [
        ("InvalidCapacityReservationId.NotFound", 400, NotFound),
        ("InvalidCapacityReservationId.Malformed", 400, ValidationError),
        ("InsufficientInstanceCapacity", 500, CapacityError),
    ],
)
def test_release_errors_map_to_orion_errors(stubbed, code, status, exc):
    mgr, stub = stubbed
    stub.add_client_error("cancel_capacity_reservation", code, "m", status)
    with pytest.raises(exc):
        mgr.release(CR)


def test_request_validation():
    for bad in (
        {"count": 0},
        {"availability_zone": "mars"},
        {"instance_type": "BIG"},
        {"end_date": "2001-01-01T00:00:00Z"},
        {"extra": 1},
    ):
        body = {"instance_type": "p4d.24xlarge", "availability_zone": "us-east-1a", "count": 1, **bad}
        with pytest.raises(PydanticValidationError):
            ReservationRequest.model_validate(body)


# -- the admin API -------------------------------------------------------------------------------
@pytest.fixture
def api(stubbed):
    mgr, stub = stubbed
    keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme"})
    with TestClient(build_app(keys, backend=None, capacity_backend=mgr)) as client:
        yield client, stub


def test_api_create_list_release(api):
    client, stub = api
    expect_create(stub, count=2)
    r = client.post(
        "/admin/v1/capacity/reservations",
        headers=ADMIN,
        json={
            "instance_type": "p4d.24xlarge",
            "availability_zone": "us-east-1a",
            "count": 2,
            "tags": {"team": "llm"},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["reservation_id"] == CR and r.json()["available"] == 2
    stub.add_response("describe_capacity_reservations", {"CapacityReservations": [ec2_cr()]})
    r = client.get("/admin/v1/capacity/reservations", headers=ADMIN)
    assert r.status_code == 200 and [x["reservation_id"] for x in r.json()["items"]] == [CR]
    stub.add_response("cancel_capacity_reservation", {"Return": True})
    r = client.delete(f"/admin/v1/capacity/reservations/{CR}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    stub.assert_no_pending_responses()


def test_api_needs_an_admin_key(api):
    client, _ = api
    assert client.get("/admin/v1/capacity/reservations").status_code == 401
    assert client.get("/admin/v1/capacity/reservations", headers=ACME).status_code == 403
    assert client.delete(f"/admin/v1/capacity/reservations/{CR}", headers=ACME).status_code == 403


def test_api_bad_requests_are_4xx_with_the_field(api):
    client, _ = api  # no stubbed response: a bad request never reaches EC2
    r = client.post(
        "/admin/v1/capacity/reservations",
        headers=ADMIN,
        json={"instance_type": "p4d.24xlarge", "availability_zone": "us-east-1a", "count": -3},
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "count"
    r = client.post(
        "/admin/v1/capacity/reservations",
        content=b"{not json",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    r = client.delete("/admin/v1/capacity/reservations/not-an-id", headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "reservation_id"


def test_api_ec2_errors_are_not_500(api):
    client, stub = api
    stub.add_client_error("cancel_capacity_reservation", "InvalidCapacityReservationId.NotFound", "gone", 400)
    r = client.delete(f"/admin/v1/capacity/reservations/{CR}", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    stub.add_client_error("create_capacity_reservation", "InsufficientInstanceCapacity", "none left", 500)
    r = client.post(
        "/admin/v1/capacity/reservations",
        headers=ADMIN,
        json={"instance_type": "p4d.24xlarge", "availability_zone": "us-east-1a", "count": 64},
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "capacity_error"
    stub.add_client_error("describe_capacity_reservations", "UnauthorizedOperation", "no", 403)
    r = client.get("/admin/v1/capacity/reservations", headers=ADMIN)
    assert r.status_code == 502 and r.json()["error"]["code"] == "cloud_error"


def test_app_without_capacity_backend_has_no_routes():
    app = build_app(KeyRing([hash_key("admin-key")]), backend=None)
    with TestClient(app) as client:
        assert client.get("/admin/v1/capacity/reservations", headers=ADMIN).status_code == 404


# -- the CLI over HTTP ---------------------------------------------------------------------------
@pytest.fixture
def served(stubbed, monkeypatch, tmp_path):
    """The admin API over the stubbed manager, served on loopback for the CLI."""
    mgr, stub = stubbed
    app = build_app(KeyRing([hash_key("admin-key")]), backend=None, capacity_backend=mgr)
    with serve_for_cli(app, monkeypatch, tmp_path):
        yield stub


def test_cli_create_list_release(served, capsys):
    stub = served
    expect_create(stub, count=4)
    assert (
        cli.main(
            [
                "capacity",
                "reservations",
                "create",
                "--instance-type",
                "p4d.24xlarge",
                "--zone",
                "us-east-1a",
                "--count",
                "4",
                "--tag",
                "team=llm",
                "-o",
                "json",
            ]
        )
        == 0
    )
    assert f'"reservation_id": "{CR}"' in capsys.readouterr().out
    stub.add_response("describe_capacity_reservations", {"CapacityReservations": [ec2_cr()]})
    assert cli.main(["capacity", "reservations", "list"]) == 0
    out = capsys.readouterr().out
    assert "RESERVATION" in out and CR in out and "us-east-1a" in out
    stub.add_response("cancel_capacity_reservation", {"Return": True})
    assert cli.main(["capacity", "reservations", "release", CR]) == 0
    assert "cancelled" in capsys.readouterr().out
    stub.assert_no_pending_responses()


def test_cli_reports_api_errors_with_exit_2(served, capsys):
    assert (
        cli.main(
            [
                "capacity",
                "reservations",
                "create",
                "--instance-type",
                "p4d.24xlarge",
                "--zone",
                "nowhere",
                "--count",
                "1",
            ]
        )
        == 2
    )
    assert "availability_zone" in capsys.readouterr().err


def test_cli_parses_and_refuses_bad_flags():
    p = cli.build_parser()
    a = p.parse_args(
        [
            "capacity",
            "reservations",
            "create",
            "--instance-type",
            "t3.large",
            "--zone",
            "us-east-1b",
            "--count",
            "2",
            "--tag",
            "a=b",
            "--match",
            "open",
        ]
    )
    assert (a.fn.__name__, a.action, a.count, a.tag, a.match) == (
        "cmd_reservations",
        "create",
        2,
        [("a", "b")],
        "open",
    )
    for argv in (
        ["capacity"],
        ["capacity", "reservations"],
        ["capacity", "reservations", "create", "--zone", "z"],
        [
            "capacity",
            "reservations",
            "create",
            "--instance-type",
            "t",
            "--zone",
            "z",
            "--count",
            "1",
            "--tag",
            "novalue",
        ],
    ):
        with pytest.raises(SystemExit):
            p.parse_args(argv)
