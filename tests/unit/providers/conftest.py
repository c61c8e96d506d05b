"""A real moto EC2 server on loopback (one per test module), and per-zone error injection on the
client through botocore's ``before-call.ec2.RunInstances`` event."""

import contextlib
import logging
import os
import socket
import threading
import time

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
AMI = "ami-0123456789abcdef0"


@pytest.fixture(scope="session")
def moto_url():
    # moto's server logs every request through werkzeug: keep test output readable
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_client(url):
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def ec2(moto_url):
    """A fresh client on a server with no live instance: whatever an earlier test launched on
    purpose is terminated first (cheaper than resetting moto, which rebuilds its AMI catalogue)."""
    client = make_client(moto_url)
    left = [i["InstanceId"] for i in live_instances(client)]
    if left:
        client.terminate_instances(InstanceIds=left)
    yield client
    client.close()


@pytest.fixture
def subnets(ec2):
    """``{zone: subnet_id}`` of three zones of moto's default VPC."""
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    return {z: by_zone[z] for z in ("us-east-1a", "us-east-1b", "us-east-1c")}


def live_instances(ec2, **tag_filters):
    """Instances that are pending or running (what a leak would be)."""
    filters = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in tag_filters.items()]
    out = []
    for r in ec2.describe_instances(Filters=filters)["Reservations"]:
        out.extend(r["Instances"])
    return out


class Injector:
    """Fails ``RunInstances`` by (market, zone) with an EC2 error code, as EC2 would answer; records
    every call's parameters (the serialized request body) in ``calls``."""

    def __init__(self, client, subnet_zone):
        self.client = client
        self.subnet_zone = subnet_zone
        self.rules = []  # (predicate, code, status, times or None)
        self.calls = []
        client.meta.events.register("before-call.ec2.RunInstances", self._hook)

    def fail(self, code, zone=None, market=None, reservation=None, status=400, times=None):
        """Answer ``code`` to calls in ``zone`` (any when None) for ``market`` ("spot",
        "on_demand", "reservation"; any when None), ``times`` times (always when None)."""
        self.rules.append([dict(zone=zone, market=market, reservation=reservation), code, status, times])
        return self

    @staticmethod
    def market_of(body):
        if body.get("InstanceMarketOptions.MarketType") == "spot":
            return "spot"
        target = "CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"
        if target in body:
            return "reservation"
        return "on_demand"

    def _hook(self, params, **kwargs):
        body = params["body"]
        call = {
            "zone": self.subnet_zone.get(body.get("SubnetId")),
            "market": self.market_of(body),
            "body": dict(body),
        }
        self.calls.append(call)
        for rule in self.rules:
            match, code, status, times = rule
            if match["zone"] not in (None, call["zone"]) or match["market"] not in (None, call["market"]):
                continue
            if times is not None:
                if times <= 0:
                    continue
                rule[3] = times - 1
            call["answer"] = code
            response = AWSResponse("http://ec2", status, {}, None)
            return response, {
                "Error": {"Code": code, "Message": f"injected {code}"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
        call["answer"] = "ok"
        return None

    def answered(self):
        return [(c["market"], c["zone"], c["answer"]) for c in self.calls]


@pytest.fixture
def inject(ec2, subnets):
    return Injector(ec2, {v: k for k, v in subnets.items()})


class FakeClock:
    """Time that moves only when slept (or advanced): backoff and budgets without waiting."""

    def __init__(self, start=1000.0):
        self.now = start
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.slept.append(s)
        self.now += s

    def advance(self, s):
        self.now += s


@pytest.fixture
def clock():
    return FakeClock()


@contextlib.contextmanager
def serve_for_cli(app, monkeypatch, tmp_path):
    """Serve ``app`` with uvicorn on a free loopback port (stopped by its handle on exit); the CLI
    finds it through ORION_URL/ORION_API_KEY as a user's shell would."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    monkeypatch.setenv("ORION_HOME", str(tmp_path))
    monkeypatch.setenv("ORION_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("ORION_API_KEY", "admin-key")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
