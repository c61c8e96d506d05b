"""The Ray autoscaler plugin driven method by method against moto (``ray up`` needs the cloud), and
the AWS cluster configs: they load, Ray's own schema accepts them, and every pool validates."""

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from orion_ray.autoscaler.providers.node_provider import OrionEC2NodeProvider, pool_from_node_config
from orion_ray.autoscaler.providers.pools import parse_pools
from orion_ray.config import load_config
from orion_ray.errors import ConfigError

from .conftest import AMI, REGION, Injector, live_instances

ROOT = Path(__file__).resolve().parents[3]
AWS_CONFIG = ROOT / "cluster_configs" / "aws" / "orion-aws.yaml"
MODULE = "orion_ray.autoscaler.providers.node_provider.OrionEC2NodeProvider"


def node_config(subnets, **kw):
    return {
        "instance_type": "g6.12xlarge",
        "image_id": AMI,
        "subnets": [subnets["us-east-1a"], subnets["us-east-1b"]],
        **kw,
    }


def worker_tags(node_type="gpu_spot"):
    return {
        TAG_RAY_NODE_KIND: NODE_KIND_WORKER,
        TAG_RAY_USER_NODE_TYPE: node_type,
        TAG_RAY_NODE_NAME: f"ray-orion-{node_type}",
        TAG_RAY_NODE_STATUS: "uninitialized",
    }


@pytest.fixture
def plugin(ec2, moto_url):
    """The plugin as Ray builds it: through Ray's own loader of ``type: external`` providers."""
    from ray.autoscaler._private.providers import _get_node_provider

    p = _get_node_provider(
        {"type": "external", "module": MODULE, "region": REGION, "endpoint_url": moto_url},
        "orion-test",
        use_cache=False,
    )
    assert isinstance(p, OrionEC2NodeProvider) and isinstance(p, NodeProvider)
    return p


@pytest.fixture
def inject(plugin, subnets):
    """Errors injected on the client the plugin made for itself (as Ray would make it)."""
    return Injector(plugin.ec2, {v: k for k, v in subnets.items()})


def test_create_list_tag_terminate(plugin, ec2, subnets, inject):
    created = plugin.create_node(node_config(subnets, market="spot", fallback="on_demand"), worker_tags(), 2)
    ids = sorted(created)
    assert len(ids) == 2 and all(i.startswith("i-") for i in ids)
    assert inject.calls[0]["market"] == "spot" and inject.calls[0]["body"]["MinCount"] == 2
    workers = plugin.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
    assert sorted(workers) == ids
    assert plugin.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_HEAD}) == []
    tags = plugin.node_tags(ids[0])
    assert tags[TAG_RAY_USER_NODE_TYPE] == "gpu_spot" and tags["ray-cluster-name"] == "orion-test"
    assert tags[TAG_RAY_NODE_STATUS] == "uninitialized" and tags["orion-pool"] == "gpu_spot"
    assert plugin.is_running(ids[0]) and not plugin.is_terminated(ids[0])
    assert plugin.internal_ip(ids[0]).count(".") == 3
    plugin.set_node_tags(ids[0], {TAG_RAY_NODE_STATUS: "up-to-date"})
    assert plugin.node_tags(ids[0])[TAG_RAY_NODE_STATUS] == "up-to-date"
    plugin.non_terminated_nodes({})  # a re-read from EC2 shows the tag too
    assert plugin.node_tags(ids[0])[TAG_RAY_NODE_STATUS] == "up-to-date"
    assert plugin.non_terminated_nodes({TAG_RAY_NODE_STATUS: "up-to-date"}) == [ids[0]]
    plugin.terminate_nodes(ids)
    assert plugin.non_terminated_nodes({}) == [] and live_instances(ec2) == []
    assert plugin.is_terminated(ids[0])


def test_head_and_workers_are_told_apart(plugin, subnets):
    head = plugin.create_node(
        node_config(subnets), {**worker_tags("head"), TAG_RAY_NODE_KIND: NODE_KIND_HEAD}, 1
    )
    worker = plugin.create_node(node_config(subnets), worker_tags("cpu"), 1)
    assert plugin.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_HEAD}) == list(head)
    assert plugin.non_terminated_nodes({TAG_RAY_USER_NODE_TYPE: "cpu"}) == list(worker)
    plugin.terminate_node(list(head)[0])
    assert plugin.non_terminated_nodes({}) == list(worker)


def test_capacity_failure_is_a_node_launch_exception_and_leaks_nothing(plugin, ec2, subnets, inject):
    inject.fail("InsufficientInstanceCapacity", market="spot")
    inject.fail("InsufficientInstanceCapacity", market="on_demand", zone="us-east-1a")
    inject.fail("VcpuLimitExceeded", market="on_demand", zone="us-east-1b")
    with pytest.raises(NodeLaunchException) as e:
        plugin.create_node(node_config(subnets, market="spot", fallback="on_demand"), worker_tags(), 3)
    assert e.value.category == "quota"  # every source failed, and one on a quota
    assert "spot/us-east-1a: InsufficientInstanceCapacity" in e.value.description
    assert "on_demand/us-east-1b: VcpuLimitExceeded" in e.value.description
    assert live_instances(ec2) == []
    # the blocklist persists between the autoscaler's calls: full zones are not hit again at once
    inject.calls.clear()
    with pytest.raises(NodeLaunchException):
        plugin.create_node(node_config(subnets, market="spot", fallback="on_demand"), worker_tags(), 3)
    assert [(c["market"], c["zone"]) for c in inject.calls] == [("on_demand", "us-east-1b")]


def test_invalid_node_config_names_the_field(plugin, subnets):
    with pytest.raises(ConfigError) as e:
        plugin.create_node(node_config(subnets, market="cheap"), worker_tags(), 1)
    assert e.value.details[0]["field"] == "available_node_types.gpu_spot.node_config.market"
    with pytest.raises(NodeLaunchException):
        plugin.create_node(node_config(subnets), {TAG_RAY_NODE_KIND: NODE_KIND_WORKER}, 1)


# -- the configs ---------------------------------------------------------------------------------
def aws_config():
    return yaml.safe_load(AWS_CONFIG.read_text())


def test_aws_launcher_config_passes_rays_schema_and_uses_the_plugin():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = aws_config()
    assert cfg["provider"]["type"] == "external" and cfg["provider"]["module"] == MODULE
    validate_config(prepare_config(copy.deepcopy(cfg)))
    assert OrionEC2NodeProvider.bootstrap_config(cfg) is cfg


def test_aws_launcher_pools_cpu_gpu_spot_validate():
    types = aws_config()["available_node_types"]
    pools = {name: pool_from_node_config(name, t["node_config"]) for name, t in types.items()}
    assert pools["cpu"].market == "on_demand" and types["cpu"]["resources"].get("GPU") is None
    assert pools["gpu"].capacity_reservations and types["gpu"]["resources"]["GPU"] == 8
    assert (pools["gpu_spot"].market, pools["gpu_spot"].fallback) == ("spot", "on_demand")
    assert all(len(p.subnets) >= 2 for p in pools.values())  # zones to fail over to


def test_aws_launcher_config_with_a_bad_pool_is_refused():
    cfg = aws_config()
    cfg["available_node_types"]["gpu"]["node_config"]["subnets"] = []
    with pytest.raises(ConfigError) as e:
        OrionEC2NodeProvider.bootstrap_config(cfg)
    assert e.value.details[0]["field"] == "available_node_types.gpu.node_config.subnets"


def test_aws_orion_yaml_pools_match_the_launcher():
    cfg = load_config(str(ROOT / "cluster_configs" / "aws" / "orion.yaml"))
    pools = parse_pools(cfg.orion.worker_pools)
    types = aws_config()["available_node_types"]
    for name, pool in pools.items():
        nc = pool_from_node_config(name, types[name]["node_config"])
        assert (pool.instance_type, pool.market, pool.fallback, pool.subnets, pool.capacity_reservations) == (
            nc.instance_type,
            nc.market,
            nc.fallback,
            nc.subnets,
            nc.capacity_reservations,
        ), name
        assert pool.max_size == types[name]["max_workers"], name


def test_local_orion_yaml_still_loads():
    load_config(str(ROOT / "cluster_configs" / "orion.yaml"))
