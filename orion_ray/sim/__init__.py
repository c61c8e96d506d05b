"""Trace simulator: replay an Alibaba openb pod list through a placement policy (pure, no Ray).

``orion simulate`` is ``orion_ray.sim.cli.simulate_main``.
"""

from .replay import ReplayResult, replay, report_points, unallocated_at, workload
from .trace import NodeRow, PodRow, cluster_arrays, read_nodes, read_pods

__all__ = [
    "replay",
    "ReplayResult",
    "report_points",
    "unallocated_at",
    "workload",
    "read_nodes",
    "read_pods",
    "cluster_arrays",
    "NodeRow",
    "PodRow",
]
