"""Admission fit: can a gang be placed on the free capacity of a snapshot, and where.

All-or-nothing: either every bundle gets a node or the gang does not fit. Placement semantics follow
Ray's strategies (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD). The GPU packing issue replaces the simple
first-fit choice here with its fragmentation-aware engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

ACCELERATOR_LABEL = "ray.io/accelerator-type"
_EPS = 1e-9


@dataclass
class NodeView:
    node_id: str
    free: dict[str, float]
    total: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    schedulable: bool = True
    # What Ray reports free on the node (None: unknown); with Orion's own holds it tells what
    # others (Serve replicas, plain Ray work) use there.
    available: Optional[dict[str, float]] = None


def _fits(free: Mapping[str, float], bundle: Mapping[str, float]) -> bool:
    return all(free.get(k, 0.0) + _EPS >= v for k, v in bundle.items())


def _type_ok(node: NodeView, gpu_type: Optional[str]) -> bool:
    return gpu_type is None or node.labels.get(ACCELERATOR_LABEL) == gpu_type


def fit_gang(
    bundles: Sequence[Mapping[str, float]],
    strategy: str,
    nodes: Sequence[NodeView],
    gpu_types: Optional[Sequence[Optional[str]]] = None,
) -> Optional[list[str]]:
    """Node id for each bundle, or ``None`` if the gang cannot be placed now.

    ``nodes`` is not mutated. ``strategy`` is a Ray strategy name.
    """
    gpu_types = list(gpu_types or [None] * len(bundles))
    free = {n.node_id: dict(n.free) for n in nodes if n.schedulable}
    by_id = {n.node_id: n for n in nodes if n.schedulable}
    order = list(by_id)

    def take(node_id: str, bundle: Mapping[str, float]) -> None:
        for k, v in bundle.items():
            free[node_id][k] = free[node_id].get(k, 0.0) - v

    if strategy == "STRICT_PACK":
        total: dict[str, float] = {}
        for b in bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        for nid in order:
            if _fits(free[nid], total) and all(_type_ok(by_id[nid], t) for t in gpu_types):
                return [nid] * len(bundles)
        return None

    chosen: list[str] = []
    used: set[str] = set()
    for bundle, gpu_type in zip(bundles, gpu_types):
        candidates = [nid for nid in order if _type_ok(by_id[nid], gpu_type) and _fits(free[nid], bundle)]
        if strategy == "STRICT_SPREAD":
            candidates = [nid for nid in candidates if nid not in used]
        elif strategy == "SPREAD":
            candidates.sort(key=lambda nid: nid in used)
        else:  # PACK: prefer nodes the gang already uses
            candidates.sort(key=lambda nid: nid not in used)
        if not candidates:
            return None
        nid = candidates[0]
        take(nid, bundle)
        used.add(nid)
        chosen.append(nid)
    return chosen


def could_ever_fit(
    bundles: Sequence[Mapping[str, float]],
    strategy: str,
    nodes: Sequence[NodeView],
    gpu_types: Optional[Sequence[Optional[str]]] = None,
) -> bool:
    """Whether the gang fits the cluster's *total* capacity (else it waits for new nodes)."""
    empty = [NodeView(n.node_id, dict(n.total), n.total, n.labels) for n in nodes]
    return fit_gang(bundles, strategy, empty, gpu_types) is not None
