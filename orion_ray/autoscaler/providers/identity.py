"""What a launched instance carries: its tags, and the user data that starts Ray with the identity
the Ray autoscaler v2 needs.

Autoscaler v2 matches a Ray node to its cloud instance through two variables set for ``ray start``:
``RAY_CLOUD_INSTANCE_ID`` (the EC2 instance id) and ``RAY_NODE_TYPE_NAME`` (the node type = pool).
Without them the instance runs Ray but the autoscaler counts it as an unknown node and may launch
another. Ray's node updater sets them itself when it runs ``ray start`` over SSH; a node that starts
Ray from its own user data must set them, reading the instance id from the metadata service.
"""

from __future__ import annotations

import shlex
from typing import Optional

from .pools import PoolConfig

TAG_CLUSTER = "orion-cluster"
TAG_POOL = "orion-pool"
TAG_LAUNCH_ID = "orion-launch-id"
TAG_SOURCE = "orion-capacity-source"
TAG_RESERVATION = "orion-capacity-reservation"
# Ray's own tag keys (ray.autoscaler.tags), repeated so this module does not import Ray.
RAY_TAG_CLUSTER_NAME = "ray-cluster-name"
RAY_TAG_USER_NODE_TYPE = "ray-user-node-type"
RAY_TAG_NODE_KIND = "ray-node-type"
# Every launch requires IMDSv2 (a session token, so an SSRF that can only send GETs cannot read
# the instance's role credentials) with a hop limit of 1 (a container on the node, one hop
# further, gets no token). Not configurable: Orion's own user data already speaks IMDSv2.
METADATA_OPTIONS = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}


def instance_tags(
    cluster: str,
    pool: PoolConfig,
    launch_id: str,
    source: str,
    reservation_id: Optional[str] = None,
    extra: Optional[dict[str, str]] = None,
) -> dict[str, str]:
    """The tags of every instance of one launch (Ray's tags included, so Ray's tools see them)."""
    tags = {
        "Name": f"{cluster}-{pool.name}",
        **pool.tags,
        RAY_TAG_CLUSTER_NAME: cluster,
        RAY_TAG_USER_NODE_TYPE: pool.name,
        RAY_TAG_NODE_KIND: "worker",
        **(extra or {}),
        # Orion's own keys last: a pool's or caller's tags cannot forge them.
        TAG_CLUSTER: cluster,
        TAG_POOL: pool.name,
        TAG_LAUNCH_ID: launch_id,
        TAG_SOURCE: source,
    }
    if reservation_id:
        tags[TAG_RESERVATION] = reservation_id
    return tags


def tag_specifications(tags: dict[str, str]) -> list[dict]:
    """``TagSpecifications`` for ``RunInstances``: tagged at creation, so no instance is ever
    untagged (an untagged instance is one a clean-up by tag could not find)."""
    pairs = [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    return [{"ResourceType": "instance", "Tags": pairs}, {"ResourceType": "volume", "Tags": pairs}]


IMDS = "http://169.254.169.254"


def ray_start_user_data(pool: PoolConfig) -> Optional[str]:
    """A boot script that joins the head with autoscaler v2's identity, or None when the pool has no
    ``ray_start`` (the cluster launcher's node updater starts Ray instead)."""
    rs = pool.ray_start
    if rs is None:
        return None
    args = ["ray", "start", f"--address={rs.head_address}", "--block"]
    if rs.resources:
        import json

        args.append("--resources=" + json.dumps(rs.resources, sort_keys=True))
    if rs.labels:
        args.append("--labels=" + ",".join(f"{k}={v}" for k, v in sorted(rs.labels.items())))
    args.extend(rs.extra_args)
    return "\n".join(
        [
            "#!/bin/bash",
            "set -euo pipefail",
            "# IMDSv2: a session token first, then the instance id this node is known by.",
            f'TOKEN=$(curl -sf -X PUT {IMDS}/latest/api/token '
            '-H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
            f'INSTANCE_ID=$(curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" '
            f'{IMDS}/latest/meta-data/instance-id)',
            'export RAY_CLOUD_INSTANCE_ID="$INSTANCE_ID"',
            f"export RAY_NODE_TYPE_NAME={shlex.quote(pool.name)}",
            f"export RAY_CLOUD_INSTANCE_TYPE_NAME={shlex.quote(pool.instance_type)}",
            "exec " + " ".join(shlex.quote(a) for a in args),
            "",
        ]
    )
