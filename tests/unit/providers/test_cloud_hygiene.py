"""Cloud hygiene (issue 14, item 7) and the cluster configs' trust boundaries: every EC2 launch
requires IMDSv2 with hop limit 1 (against moto, through each capacity source); the AWS config has
separate head and worker instance profiles, a pinned install, its dashboard on loopback and no
tenant work on the head; the KubeRay manifests run Ray's token auth, keep job drivers off the
head and name the image of this release."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml

from orion_ray import __version__
from orion_ray.autoscaler.providers import EC2Provider
from orion_ray.kuberay.manifests import load_manifests, validate_manifest
from orion_ray.runtime.conventions import JOB_DRIVER_RESOURCE

from .conftest import AMI, REGION
from .test_ec2_provider import cr, reservations_stub

ROOT = Path(__file__).resolve().parents[3]
AWS = yaml.safe_load((ROOT / "cluster_configs" / "aws" / "orion-aws.yaml").read_text())
KUBERAY = ROOT / "cluster_configs" / "kuberay"


def _pool(subnets, **kw):
    return {
        "name": "gpu",
        "instance_type": "p4d.24xlarge",
        "image_id": AMI,
        "subnets": [subnets["us-east-1a"], subnets["us-east-1b"]],
        "max_size": 8,
        **kw,
    }


# -- IMDSv2 on every launch -----------------------------------------------------------------------
@pytest.fixture
def worker_profile(moto_url):
    """The workers' instance profile, made in moto's IAM (EC2 refuses a profile that does not exist)."""
    iam = boto3.client(
        "iam",
        region_name=REGION,
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        return iam.create_instance_profile(InstanceProfileName="orion-ray-worker")["InstanceProfile"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_instance_profile(InstanceProfileName="orion-ray-worker")["InstanceProfile"]["Arn"]


@pytest.mark.parametrize("source", ["on_demand", "spot", "reservation"])
def test_every_launch_requires_imdsv2_with_hop_limit_1(ec2, subnets, inject, worker_profile, source):
    kw: dict = {"iam_instance_profile": worker_profile}
    extra: dict = {}
    if source == "spot":
        kw["market"] = "spot"
    if source == "reservation":  # moto has no reservations: the lookup is stubbed, the launch is real
        mgr, _ = reservations_stub([cr("cr-0000000000000000c", "us-east-1a", 4)])
        kw["capacity_reservations"] = ["cr-0000000000000000c"]
        extra["reservations"] = mgr
    p = EC2Provider(ec2_client=ec2, pools=[_pool(subnets, **kw)], cluster="test", rand=lambda: 0.5, **extra)
    res = p.launch("gpu", 2)
    assert res.source == source and inject.calls
    for call in inject.calls:
        body = call["body"]
        assert body["MetadataOptions.HttpTokens"] == "required"
        assert str(body["MetadataOptions.HttpPutResponseHopLimit"]) == "1"
        assert body["IamInstanceProfile.Arn"] == worker_profile
    described = ec2.describe_instances(InstanceIds=res.instance_ids)["Reservations"][0]["Instances"][0]
    if "MetadataOptions" in described:  # moto keeps what it was given
        assert described["MetadataOptions"]["HttpTokens"] == "required"
    p.terminate(res.instance_ids)


# -- the AWS cluster config -----------------------------------------------------------------------
def test_head_and_workers_have_separate_instance_profiles():
    types = AWS["available_node_types"]
    head = types[AWS["head_node_type"]]["node_config"]["iam_instance_profile"]
    workers = {
        t["node_config"]["iam_instance_profile"] for n, t in types.items() if n != AWS["head_node_type"]
    }
    assert head and workers and all(workers)
    assert head not in workers  # tenants' code on a worker never holds the head's EC2 rights


def test_orion_is_installed_pinned_to_this_release_on_every_node():
    commands = AWS["setup_commands"] + AWS["head_setup_commands"] + AWS["worker_setup_commands"]
    installs = [c for c in commands if "pip install" in c and "orion-ray" in c]
    assert installs and all(f'"orion-ray[aws]=={__version__}"' in c for c in installs), installs


def test_the_dashboard_is_on_the_heads_loopback_and_no_tenant_work_runs_there():
    start = " ".join(AWS["head_start_ray_commands"])
    assert "0.0.0.0" not in start and "--dashboard-host=127.0.0.1" in start
    types = AWS["available_node_types"]
    head = types[AWS["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and JOB_DRIVER_RESOURCE not in head["resources"]
    for name, t in types.items():
        if name != AWS["head_node_type"]:
            assert t["resources"].get(JOB_DRIVER_RESOURCE, 0) > 0, name


# -- the KubeRay manifests ------------------------------------------------------------------------
def _clusters():
    """``(file, RayCluster spec)`` of every manifest that defines a cluster."""
    out = []
    for f in ("raycluster.yaml", "rayservice.yaml"):
        for m in load_manifests(KUBERAY / f):
            assert validate_manifest(m) == []  # still valid against the CRDs
            spec = m["spec"]["rayClusterConfig"] if m["kind"] == "RayService" else m["spec"]
            out.append((f, spec))
    return out


def _containers(group):
    return group["template"]["spec"]["containers"]


@pytest.mark.parametrize("i", [0, 1])
def test_kuberay_clusters_run_token_auth_and_keep_tenant_work_off_the_head(i):
    f, spec = _clusters()[i]
    assert spec["authOptions"]["mode"] == "token", f
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and JOB_DRIVER_RESOURCE not in head.get("resources", {})
    groups = [head, *spec["workerGroupSpecs"]]
    for g in groups:
        for c in _containers(g):
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env.get("RAY_AUTH_MODE") != "disabled", f
            assert c["image"].split(":")[1].startswith(__version__), c["image"]  # this release's image
    for g in spec["workerGroupSpecs"]:
        assert float(g["resources"][JOB_DRIVER_RESOURCE]) > 0, (f, g["groupName"])


def test_the_example_rayjob_driver_needs_a_worker():
    (job,) = load_manifests(KUBERAY / "rayjob.yaml")
    assert job["spec"]["entrypointNumCpus"] > 0  # the head has no CPUs: the driver lands on a worker
