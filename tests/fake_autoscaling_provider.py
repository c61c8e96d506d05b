"""Node provider used by :mod:`tests.fake_autoscaling` (imported inside Ray's autoscaler/monitor process).

Ray 2.60's ``FakeMultiNodeProvider`` starts every fake worker node in-process (``ray._private.node.Node``)
with ``node_ip_address`` resolved by ``ray.util.get_node_ip_address()`` — the machine's outgoing address
(e.g. 192.0.2.2), not loopback. This subclass starts the same nodes but pinned to ``127.0.0.1`` (taken from
``provider.node_ip_address``) and records each node's PIDs in ``provider.pid_dir/<node_id>.json`` so a test
can SIGKILL one node abruptly.

Everything else (ids ``fff...00001``, ``RAY_OVERRIDE_NODE_ID_FOR_TESTING``, labels, terminate) is Ray's.
"""

from __future__ import annotations

import copy
import json
import os

import ray
import ray._private.ray_constants as ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_WORKER,
    STATUS_UP_TO_DATE,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)


def start_loopback_node(
    *,
    gcs_address: str,
    node_ip: str,
    node_id: str,
    instance_id: str,
    node_type: str,
    resources: dict,
    labels: dict,
):
    """Start one fake worker node (a raylet and its agents, in this process's group) pinned to
    ``node_ip``, with Ray node id ``node_id`` and cloud instance id ``instance_id`` (what autoscaler
    v2 matches a node to its instance by). Returns Ray's ``Node``."""
    resources = copy.deepcopy(resources)
    ray_params = ray._private.parameter.RayParams(
        node_ip_address=node_ip,
        min_worker_port=0,
        max_worker_port=0,
        dashboard_port=None,
        dashboard_agent_listen_port=0,
        num_cpus=resources.pop("CPU", 0),
        num_gpus=resources.pop("GPU", 0),
        object_store_memory=resources.pop("object_store_memory", None),
        resources=resources,
        labels=labels,
        redis_address=gcs_address,
        gcs_address=gcs_address,
        env_vars={
            "RAY_OVERRIDE_NODE_ID_FOR_TESTING": node_id,
            "RAY_CLOUD_INSTANCE_ID": instance_id,
            "RAY_NODE_TYPE_NAME": node_type,
            ray_constants.RESOURCES_ENVIRONMENT_VARIABLE: json.dumps(resources),
            ray_constants.LABELS_ENVIRONMENT_VARIABLE: json.dumps(labels),
        },
    )
    return ray._private.node.Node(ray_params, head=False, shutdown_at_exit=False, spawn_reaper=False)


def record_pids(pid_dir, node_id, node):
    """Write ``<pid_dir>/<node_id>.json``: the node's pids by process kind (for ``kill_node``)."""
    if not pid_dir:
        return
    pids = {}
    for kind, infos in node.all_processes.items():
        pids[kind] = [i.process.pid for i in infos if i.process is not None]
    path = os.path.join(pid_dir, f"{node_id}.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"node_id": node_id, "pids": pids}, f)
    os.replace(path + ".tmp", path)


class LoopbackFakeMultiNodeProvider(FakeMultiNodeProvider):
    def __init__(self, provider_config, cluster_name):
        super().__init__(provider_config, cluster_name)
        self._node_ip = provider_config.get("node_ip_address", "127.0.0.1")
        self._pid_dir = provider_config.get("pid_dir")

    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        with self.lock:
            node_type = tags[TAG_RAY_USER_NODE_TYPE]
            next_id = self._next_hex_node_id()
            node = start_loopback_node(
                gcs_address=self._gcs_address,
                node_ip=self._node_ip,
                node_id=next_id,
                instance_id=next_id,
                node_type=node_type,
                resources=resources,
                labels=labels,
            )
            all_tags = {
                TAG_RAY_NODE_KIND: NODE_KIND_WORKER,
                TAG_RAY_USER_NODE_TYPE: node_type,
                TAG_RAY_NODE_NAME: next_id,
                TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE,
            }
            all_tags.update(tags)
            self._nodes[next_id] = {"tags": all_tags, "node": node}
            record_pids(self._pid_dir, next_id, node)
