"""Autoscaling end to end on a fake autoscaling Ray cluster (autoscaler v2) whose capacity comes
through EC2: Ray's autoscaler launches with Orion's own ``OrionEC2NodeProvider`` against a real moto
server on loopback (each instance gets a loopback Ray node standing in for it, with
``RAY_CLOUD_INSTANCE_ID`` = its instance id: ``tests/fake_ec2_autoscaling_provider.py``). Orion is
started as a user starts it (``orion up --address`` with a worker pool), joined as region ``r-ec2`` to
a real control-plane process.

1. Queued GPU gangs → Orion asks the Ray autoscaler for nodes → EC2 instances → they come up → the
   gangs run → one node dies under a gang, which is requeued and runs again on a replacement → idle →
   Orion releases the nodes and they go away (and their instances are terminated in EC2). Scaling
   events and node states are checked through the admin API.
2. A run submitted to the control plane goes to the region although it has no free GPU (its pool can
   launch) → the region's autoscaler launches one instance in moto with Orion's tags → the node that
   stands for it joins → the run runs there, and the control plane shows it running, then completed,
   with its region → idle → the instance is terminated in EC2.

One cluster, one moto server, one control plane and one ``orion up`` for both (module fixture)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from benchmarks.autoscale import NODE_TYPES, _gpu_nodes, _wait, orion_on, orion_round
from tests.fake_autoscaling import EC2_PROVIDER_MODULE, GCS_PORT, FakeAutoscalingCluster, port_open
from tests.live_orion import free_port
from tests.regions.live import ControlPlane, region_key, wait_for
from tests.security.kv_scan import scan_kv_for

pytestmark = pytest.mark.e2e

REGION = "r-ec2"
AWS_REGION = "us-east-1"
MOTO_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto's dummies
AMI = "ami-0123456789abcdef0"
INSTANCE_TYPE = "p4d.24xlarge"
CLUSTER_NAME = "fake-autoscaling"  # tests.fake_autoscaling's cluster_name: Orion's orion-cluster tag


@dataclass
class Setup:
    """What the tests share: the cluster, the regional Orion (client, env), the control plane,
    a boto3 client on the moto server and a scratch directory."""

    cluster: FakeAutoscalingCluster
    client: Any
    env: dict[str, str]
    cp: ControlPlane
    ec2: Any
    scratch: Path


def instances(ec2: Any, *states: str) -> list[dict]:
    """The cluster's instances in moto (in ``states``; every state when none is given)."""
    filters = [{"Name": "tag:orion-cluster", "Values": [CLUSTER_NAME]}]
    if states:
        filters.append({"Name": "instance-state-name", "Values": list(states)})
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def ids(found: list[dict]) -> set[str]:
    return {i["InstanceId"] for i in found}


@pytest.fixture(scope="module")
def autoscaling(tmp_path_factory) -> Iterator[Setup]:
    if port_open(GCS_PORT):
        pytest.skip(f"port {GCS_PORT} is taken: the fake autoscaler needs the GCS there")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    ec2 = boto3.client("ec2", region_name=AWS_REGION, endpoint_url=url, **MOTO_KEYS)
    zones = ("us-east-1a", "us-east-1b")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["AvailabilityZone"] in zones]
    pool = {"instance_type": INSTANCE_TYPE, "image_id": AMI, "subnets": subnets}
    cluster = FakeAutoscalingCluster(
        {name: {**t, "node_config": pool} for name, t in NODE_TYPES.items()},
        idle_timeout_minutes=0.1,
        head_resources={"CPU": 2},
        provider_module=EC2_PROVIDER_MODULE,
        provider_config={"endpoint_url": url, "region": AWS_REGION, **MOTO_KEYS},
    )
    root = tmp_path_factory.mktemp("autoscaling-region")
    cp = ControlPlane(root / "cp", free_port())
    cp.settings["region_lost_timeout_s"] = 60  # a loaded machine's agent must not look lost
    try:
        cluster.start()
        cp.up()
        join = ["--control-plane", cp.url, "--region", REGION, "--heartbeat-s", "1"]
        key = {"ORION_REGION_KEY": region_key(cp.home, REGION)}
        with orion_on(cluster, up_args=join, extra_env=key) as (client, env):
            yield Setup(cluster, client, env, cp, ec2, root)
    finally:
        cp.down()
        cluster.shutdown()
        ec2.close()
        moto.stop()
    assert not cluster.live_pids()


@pytest.mark.timeout(900)
def test_gangs_scale_the_pool_up_survive_a_lost_node_and_the_pool_scales_down(autoscaling: Setup):
    cluster, client, env, ec2 = autoscaling.cluster, autoscaling.client, autoscaling.env, autoscaling.ec2
    killed = {}
    assert not _gpu_nodes(cluster) and not instances(ec2)  # no GPU node until Orion asks
    # attached from the head's machine: the API replica reads the control credential from
    # orion up's file, so it is not among Serve's arguments in Ray's internal KV
    got = scan_kv_for(Path(env["ORION_HOME"], "control_token"), cluster.address, env)
    assert got["scanned"] > 0 and got["found"] == [], got

    def kill_one(running):
        # the first gang's first bundle: its node dies under it
        node = running[0]["placement"][0]["node_id"]
        killed.update(node=node, workload=running[0]["workload_id"])
        cluster.kill_node(node)

    r = orion_round(cluster, client, gangs=2, size=2, hold_s=25, on_running=kill_one)
    assert r["request_s"] < 60 and r["nodes_requested"] == 4
    assert all(w.status == "completed" for w in r["workloads"]), r["workloads"]
    lost = next(w for w in r["workloads"] if w.workload_id == killed["workload"])
    assert lost.record["attempt"] == 2  # requeued as a new attempt, not failed
    other = next(w for w in r["workloads"] if w.workload_id != killed["workload"])
    assert other.record["attempt"] == 1
    history = [h["reason"] or "" for h in lost.record["history"]]
    assert any("lost" in h for h in history), history

    # the burst may be seen in one step (0 → 4) or two (0 → 2 → 4), newest first
    ups = client.scaling_events(kind="scale_up")["items"]
    first = ups[-1]
    top = max(ups, key=lambda e: e["after"])
    assert first["before"] == 0 and top["after"] == 4
    assert top["outcome"] in ("fulfilled", "superseded")
    assert all(e["trigger"] == "queue" and "pending gang" in e["reason"] for e in (first, top))
    downs = _wait(lambda: client.scaling_events(kind="scale_down")["items"], 60, "a scale-down event")
    assert downs[0]["after"] == 0 and downs[0]["details"]["release"]

    def gpu_nodes_ended():  # Orion sees Ray's membership within a second or two
        gpu = [n for n in client.nodes()["items"] if n["gpu_type"] == "A100"]
        return all(n["status"] in ("terminated", "lost") for n in gpu) and gpu

    gpu = _wait(gpu_nodes_ended, 30, "Orion to see the GPU nodes gone")
    assert len(gpu) >= 5  # 4 requested + the replacement
    assert {n["node_id"]: n["status"] for n in gpu}[killed["node"]] == "lost"
    health = client.infrastructure_health()
    assert health["autoscaler"]["status"] == "ok"
    assert killed["node"] in [n["node_id"] for n in health["lost_last_hour"]]
    node_events = client.scaling_events(kind="node", limit=200)["items"]
    assert {"registered", "ready", "drained", "terminated", "lost"} <= {e["outcome"] for e in node_events}
    # every node was an EC2 instance (the dead one's too), and each was given back to EC2
    wait_for(lambda: not instances(ec2, "pending", "running"), within_s=60, about="every instance terminated")
    assert len(instances(ec2, "terminated")) >= 5


@pytest.mark.timeout(600)
def test_a_region_without_a_free_gpu_launches_through_ec2_and_gives_the_instance_back(autoscaling: Setup):
    a, cp = autoscaling, autoscaling.cp
    marker, release = a.scratch / "ec2-run.ran", a.scratch / "ec2-run.release"
    # no GPU node in the region now, but its pool can launch: the control plane sees A100 offered
    wait_for(lambda: not _gpu_nodes(a.cluster) and not instances(a.ec2, "pending", "running"), about="idle")

    def offered() -> bool:  # A100 offered by the pool, none free (the last heartbeat may lag)
        x = cp.region(REGION)
        return x["state"] == "active" and "A100" in x["gpu_types"] and x["free_gpus"].get("A100", 0) == 0

    wait_for(offered, about="A100 offered with none free")
    before = {i["InstanceId"] for i in instances(a.ec2)}
    # a job that records it ran, then holds its node until the test has looked (bounded: 120 s)
    hold = f"i=0; while [ ! -e {release} ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done"
    r = cp.submit(
        {
            "workload_type": "job",
            "entrypoint": f"sh -c 'echo ran >> {marker}; {hold}'",
            "resources": {"cpu": 1, "gpu": 4, "gpu_type": "A100"},
        }
    )
    assert r.status_code == 202 and r.json()["region"] == REGION, r.text
    rid = r.json()["workload_id"]

    # the region's autoscaler launched one instance through Orion's EC2 provider, with its tags
    (inst,) = wait_for(
        lambda: [i for i in instances(a.ec2, "pending", "running") if i["InstanceId"] not in before],
        about="an instance launched in moto",
    )
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert inst["InstanceType"] == INSTANCE_TYPE and inst["ImageId"] == AMI
    assert (tags["orion-cluster"], tags["orion-pool"], tags["ray-user-node-type"]) == (
        CLUSTER_NAME,
        "gpu_a100",
        "gpu_a100",
    )
    assert tags["orion-capacity-source"] == "on_demand" and tags["orion-launch-id"].startswith("ol-")

    # the node standing for the instance joined, and the run runs there: the control plane sees it
    run = wait_for(lambda: (x := cp.run(rid))["status"] == "running" and x, within_s=240, about="running")
    assert run["region"] == REGION and run["generation"] == 1
    wid = run["region_workload_id"]
    on = [n for n in a.client.nodes(include_ended=False)["items"] if wid in n["workloads"]]
    assert [n["gpu_type"] for n in on] == ["A100"], on
    ray_node = {n["node_id"]: n for n in a.cluster.all_nodes()}[on[0]["node_id"]]
    assert ray_node["instance_id"] == inst["InstanceId"] and ray_node["node_type"] == "gpu_a100"
    release.touch()

    done = wait_for(lambda: (x := cp.run(rid))["status"] == "completed" and x, about="completed at the CP")
    assert (done["region"], done["generation"]) == (REGION, 1)
    listed = {i["workload_id"]: i for i in cp.listing()}[rid]
    assert (listed["region"], listed["status"], listed["origin"]) == (REGION, "completed", "control_plane")
    assert len(marker.read_text().splitlines()) == 1  # it ran once

    # idle: Orion releases the node, Ray's autoscaler terminates it through the provider in EC2
    wait_for(
        lambda: (
            a.ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"][0][
                "State"
            ]["Name"]
            == "terminated"
        ),
        about="the instance terminated in moto",
    )
    wait_for(lambda: not _gpu_nodes(a.cluster), about="the node gone from Ray")
    assert [i["InstanceId"] for i in instances(a.ec2) if i["InstanceId"] not in before] == [
        inst["InstanceId"]
    ]
