"""``OrionEC2NodeProvider``: Orion's EC2 capacity logic as a Ray autoscaler node-provider plugin.

In a cluster-launcher config::

    provider:
      type: external
      module: orion_ray.autoscaler.providers.node_provider.OrionEC2NodeProvider
      region: us-east-1
    available_node_types:
      gpu_spot:
        node_config: {instance_type: p4d.24xlarge, image_id: ami-..., subnets: [...],
                      market: spot, fallback: on_demand}

Each node type's ``node_config`` is an Orion pool (``orion.yaml``'s ``worker_pools`` entry without
its name: the node type names it). Node ids are EC2 instance ids, which is also the
``RAY_CLOUD_INSTANCE_ID`` Ray's node updater gives ``ray start`` — the identity autoscaler v2
needs.
One ``create_node`` is one pass over the pool's sources and zones, all or nothing; the Ray
autoscaler retries failed launches, and the provider's zone blocklist persists between its calls.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Dict, List, Optional

from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME, TAG_RAY_USER_NODE_TYPE

from ...errors import CapacityError
from .ec2 import EC2Provider
from .pools import PoolConfig, parse_pool

log = logging.getLogger("orion.autoscaler.node_provider")

RUNNING_STATES = ["pending", "running"]
# Ray wants a short (<20 chars) category per launch failure: one per kind of Orion capacity error.
CATEGORIES = {
    "capacity_error": "capacity",
    "capacity_quota_exceeded": "quota",
    "launch_budget_exceeded": "budget",
    "invalid_launch": "invalid",
}
# A node_config's own max_size would cap one create_node call; Ray's max_workers already bounds it.
UNBOUNDED = 100_000


def pool_from_node_config(node_type: str, node_config: Dict[str, Any]) -> PoolConfig:
    """The Orion pool a node type describes (``ConfigError`` naming the field if it is invalid)."""
    raw = {"max_size": UNBOUNDED, **node_config, "name": node_type}
    return parse_pool(raw, where=f"available_node_types.{node_type}.node_config")


class OrionEC2NodeProvider(NodeProvider):
    """A ``ray.autoscaler.node_provider.NodeProvider`` over ``EC2Provider``."""

    def __init__(self, provider_config: Dict[str, Any], cluster_name: str, ec2_client: Any = None) -> None:
        super().__init__(provider_config, cluster_name)
        if ec2_client is None:
            import boto3

            ec2_client = boto3.client(
                "ec2",
                region_name=provider_config.get("region"),
                endpoint_url=provider_config.get("endpoint_url"),
            )
        self.ec2 = ec2_client
        self.orion = EC2Provider(
            ec2_client,
            cluster=cluster_name,
            blocklist_ttl_s=float(provider_config.get("blocklist_ttl_s", 300)),
        )
        self._lock = threading.RLock()
        self._nodes: Dict[str, dict] = {}  # last seen EC2 description of each node

    # -- config ---------------------------------------------------------------------------------
    @staticmethod
    def bootstrap_config(cluster_config: Dict[str, Any]) -> Dict[str, Any]:
        """Validate every node type's pool before anything is launched (``ray up`` fails fast)."""
        for node_type, spec in (cluster_config.get("available_node_types") or {}).items():
            pool_from_node_config(node_type, spec.get("node_config") or {})
        return cluster_config

    # -- reading --------------------------------------------------------------------------------
    def _describe(self, tag_filters: Dict[str, str]) -> List[dict]:
        filters = {TAG_RAY_CLUSTER_NAME: self.cluster_name, **tag_filters}
        instances = self.orion.instances(states=RUNNING_STATES, tag_filters=filters)
        with self._lock:
            for i in instances:
                self._nodes[i["InstanceId"]] = i
        return instances

    def _node(self, node_id: str) -> dict:
        with self._lock:
            cached = self._nodes.get(node_id)
        if cached is not None:
            return cached
        d = self.ec2.describe_instances(InstanceIds=[node_id])
        for r in d.get("Reservations", []):
            for i in r.get("Instances", []):
                with self._lock:
                    self._nodes[node_id] = i
                return i
        raise KeyError(f"unknown node {node_id}")

    def non_terminated_nodes(self, tag_filters: Dict[str, str]) -> List[str]:
        """Pending and running instances of this cluster with these tags (re-read from EC2)."""
        return [i["InstanceId"] for i in self._describe(tag_filters)]

    def is_running(self, node_id: str) -> bool:
        return self._node(node_id)["State"]["Name"] == "running"

    def is_terminated(self, node_id: str) -> bool:
        return self._node(node_id)["State"]["Name"] not in RUNNING_STATES

    def node_tags(self, node_id: str) -> Dict[str, str]:
        return {t["Key"]: t["Value"] for t in self._node(node_id).get("Tags", [])}

    def external_ip(self, node_id: str) -> Optional[str]:
        return self._node(node_id).get("PublicIpAddress")

    def internal_ip(self, node_id: str) -> Optional[str]:
        return self._node(node_id).get("PrivateIpAddress")

    # -- writing --------------------------------------------------------------------------------
    def create_node(
        self, node_config: Dict[str, Any], tags: Dict[str, str], count: int
    ) -> Optional[Dict[str, Any]]:
        """Launch ``count`` nodes of the node type named in ``tags``, all or none.

        A failure is raised as Ray's ``NodeLaunchException`` (its category is Orion's error code;
        the history of attempts is in the description) and leaves no instance behind."""
        node_type = tags.get(TAG_RAY_USER_NODE_TYPE)
        if not node_type:
            raise NodeLaunchException("config", f"no {TAG_RAY_USER_NODE_TYPE} tag", None)
        with self._lock:
            pool = self.orion.pools.get(node_type)
            if pool is None or pool != pool_from_node_config(node_type, node_config):
                pool = self.orion.add_pool(pool_from_node_config(node_type, node_config))
        try:
            result = self.orion.launch(pool.name, count, extra_tags=dict(tags))
        except CapacityError as exc:
            tried = "; ".join(
                f"{h.get('source')}/{h.get('zone')}: {h.get('error') or h.get('reason') or h.get('outcome')}"
                for h in exc.history
                if h.get("source")
            )
            raise NodeLaunchException(
                CATEGORIES.get(exc.code, "capacity"), f"{exc.message} [{tried}]", sys.exc_info()
            ) from exc
        created = {i: {} for i in result.instance_ids}
        self._describe({"orion-launch-id": result.launch_id})
        return created

    def set_node_tags(self, node_id: str, tags: Dict[str, str]) -> None:
        self.ec2.create_tags(Resources=[node_id], Tags=[{"Key": k, "Value": str(v)} for k, v in tags.items()])
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None:
                merged = {**{t["Key"]: t["Value"] for t in node.get("Tags", [])}, **tags}
                node["Tags"] = [{"Key": k, "Value": v} for k, v in merged.items()]

    def terminate_node(self, node_id: str) -> Optional[Dict[str, Any]]:
        return self.terminate_nodes([node_id])

    def terminate_nodes(self, node_ids: List[str]) -> Optional[Dict[str, Any]]:
        self.orion.terminate(node_ids)
        with self._lock:
            for n in node_ids:
                self._nodes.pop(n, None)
        return None

    @property
    def max_terminate_nodes(self) -> Optional[int]:
        return 1000
