"""An EC2-backed node provider for :mod:`tests.fake_autoscaling` (imported inside Ray's monitor).

``EC2LoopbackNodeProvider`` is Orion's production ``OrionEC2NodeProvider`` pointed at a real moto
server on loopback: every launch goes through ``OrionEC2NodeProvider.create_node`` (the pool's
sources and zones, ``MinCount = MaxCount``, Orion's tags), node ids are the EC2 instance ids, and
what is running is read back from EC2. The only thing moto cannot do is boot the instance and
run ``ray start`` on it, so for each instance EC2 handed back this class starts a fake loopback Ray
node on this machine with ``RAY_CLOUD_INSTANCE_ID`` = the instance id (what autoscaler v2 matches
the node to its instance by), and stops that node when the instance is terminated.

Provider config (besides :mod:`tests.fake_autoscaling`'s): ``endpoint_url`` (the moto server),
``region``, ``aws_access_key_id`` / ``aws_secret_access_key`` (moto's dummy keys: the client is
built here, so no credential is put in the head's environment, which Ray's workers inherit).

The fake head is not an EC2 instance: it is listed here as the cluster's head node, as Ray's fake
provider lists it, so the autoscaler sees its head running.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Dict, List, Optional, Tuple

import boto3
from fake_autoscaling_provider import record_pids, start_loopback_node
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    STATUS_UP_TO_DATE,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from orion_ray.autoscaler.providers.node_provider import OrionEC2NodeProvider

HEAD_NODE_TYPE = "ray.head.default"


class EC2LoopbackNodeProvider(OrionEC2NodeProvider):
    def __init__(self, provider_config: Dict[str, Any], cluster_name: str) -> None:
        ec2 = boto3.client(
            "ec2",
            region_name=provider_config.get("region", "us-east-1"),
            endpoint_url=provider_config["endpoint_url"],
            aws_access_key_id=provider_config["aws_access_key_id"],
            aws_secret_access_key=provider_config["aws_secret_access_key"],
        )
        super().__init__(provider_config, cluster_name, ec2_client=ec2)
        self._gcs_address = provider_config["gcs_address"]
        self._node_ip = provider_config.get("node_ip_address", "127.0.0.1")
        self._pid_dir = provider_config.get("pid_dir")
        self._head_id = provider_config["head_node_id"]
        self._head_tags = {
            TAG_RAY_NODE_KIND: NODE_KIND_HEAD,
            TAG_RAY_USER_NODE_TYPE: HEAD_NODE_TYPE,
            TAG_RAY_NODE_NAME: self._head_id,
            TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE,
        }
        self._local = threading.Lock()
        self._starting = threading.Lock()
        self._fake: Dict[str, Tuple[str, Any]] = {}  # instance id → (Ray node id, Ray's Node)

    # -- the head, which is not in EC2 ------------------------------------------------------------
    def non_terminated_nodes(self, tag_filters: Dict[str, str]) -> List[str]:
        ids = super().non_terminated_nodes(tag_filters)
        if all(self._head_tags.get(k) == v for k, v in tag_filters.items()):
            ids.append(self._head_id)
        return ids

    def is_running(self, node_id: str) -> bool:
        return True if node_id == self._head_id else super().is_running(node_id)

    def is_terminated(self, node_id: str) -> bool:
        return False if node_id == self._head_id else super().is_terminated(node_id)

    def node_tags(self, node_id: str) -> Dict[str, str]:
        return dict(self._head_tags) if node_id == self._head_id else super().node_tags(node_id)

    def internal_ip(self, node_id: str) -> Optional[str]:
        return self._node_ip if node_id == self._head_id else super().internal_ip(node_id)

    def external_ip(self, node_id: str) -> Optional[str]:
        return self._node_ip if node_id == self._head_id else super().external_ip(node_id)

    # -- launch and terminate: EC2 first, then the stand-in Ray node ------------------------------
    def create_node_with_resources_and_labels(
        self,
        node_config: Dict[str, Any],
        tags: Dict[str, str],
        count: int,
        resources: Dict[str, float],
        labels: Dict[str, str],
    ) -> Optional[Dict[str, Any]]:
        created = self.create_node(node_config, tags, count) or {}  # EC2: all or none, tagged
        try:
            # one stand-in starting at a time, as Ray's fake provider does (under its lock): two
            # starting together on a loaded 2-core machine overran Ray's start-up bound
            with self._starting:
                self._start_stand_ins(created, tags, resources, labels)
        except Exception:
            # a stand-in that did not start (Ray's start-up bound overrun on a loaded machine) is an
            # instance that never boots: give the whole launch back, so Ray's autoscaler launches
            # again instead of waiting for a node that will not come
            self.terminate_nodes(list(created))
            for instance_id in created:
                _kill_stand_in(instance_id)
            raise
        return created

    def _start_stand_ins(
        self,
        created: Dict[str, Any],
        tags: Dict[str, str],
        resources: Dict[str, float],
        labels: Dict[str, str],
    ) -> None:
        for instance_id in created:
            ray_id = os.urandom(28).hex()
            node = start_loopback_node(
                gcs_address=self._gcs_address,
                node_ip=self._node_ip,
                node_id=ray_id,
                instance_id=instance_id,
                node_type=tags[TAG_RAY_USER_NODE_TYPE],
                resources=resources,
                labels=labels,
            )
            with self._local:
                self._fake[instance_id] = (ray_id, node)
            record_pids(self._pid_dir, ray_id, node)

    def terminate_nodes(self, node_ids: List[str]) -> Optional[Dict[str, Any]]:
        ids = [n for n in node_ids if n != self._head_id]
        if ids:
            super().terminate_nodes(ids)  # EC2 (moto) shows them terminated
        for instance_id in ids:
            with self._local:
                fake = self._fake.pop(instance_id, None)
            if fake is not None:
                fake[1].kill_all_processes(check_alive=False, allow_graceful=True)
        return None


def _kill_stand_in(instance_id: str) -> None:
    """SIGKILL what a failed start of ``instance_id``'s stand-in left running: the processes whose
    environment names that instance (Ray gives its node's processes ``RAY_CLOUD_INSTANCE_ID``)."""
    mark = f"RAY_CLOUD_INSTANCE_ID={instance_id}".encode() + b"\0"
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if mark not in f.read() + b"\0":
                    continue
            os.kill(int(d), signal.SIGKILL)
        except OSError:
            continue
