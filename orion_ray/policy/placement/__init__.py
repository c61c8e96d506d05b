"""Pure GPU placement engine: choose nodes (and GPUs) for a workload's bundles on a snapshot.

    from orion_ray.policy.placement import (BundleRequest, ClusterSnapshot, NodeState, apply,
                                            get_policy)
    policy = get_policy("orion")
    plan = policy.place(snapshot, [BundleRequest(cpu=4, mem=16, num_gpu=1, gpu_fraction=0.5)])
    if plan is not None:
        snapshot = apply(snapshot, plan, bundles)

No ``ray``/``boto3``/``kubernetes``/``fastapi`` here: the live scheduler, the trace simulator and the
benchmarks all run this same code.
"""

from .arrays import ClusterArrays, Req
from .engine import PlacementSession, Policy, place_gang
from .registry import DEFAULT_POLICY, POLICY_NAMES, get_policy
from .types import STRATEGIES, BundlePlacement, BundleRequest, ClusterSnapshot, NodeState, apply

__all__ = [
    "NodeState",
    "ClusterSnapshot",
    "BundleRequest",
    "BundlePlacement",
    "apply",
    "get_policy",
    "Policy",
    "PlacementSession",
    "place_gang",
    "ClusterArrays",
    "Req",
    "DEFAULT_POLICY",
    "POLICY_NAMES",
    "STRATEGIES",
]
