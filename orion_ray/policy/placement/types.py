"""Plain value types of the placement engine, and the pure ``apply`` that advances a snapshot.

Units are the caller's: CPU in cores, memory in any unit as long as nodes and requests agree, GPUs as
fractions of one device (0..1 per GPU). Snapshots are never mutated by the engine; ``apply`` returns a
new snapshot that shares the untouched nodes with the old one (copy-on-write).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

# Tolerance for float capacities: a free fraction of 0.29999999999 must still host a 0.3 request.
EPS = 1e-6
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass(frozen=True)
class NodeState:
    """Free capacity of one node: ``gpu_free[i]`` is the free fraction (0..1) of GPU ``i``."""

    node_id: str
    cpu_free: float
    mem_free: float
    gpu_type: Optional[str] = None
    gpu_free: tuple[float, ...] = ()
    labels: dict[str, Any] = field(default_factory=dict[str, Any], hash=False, compare=False)

    def __post_init__(self) -> None:
        # Accept lists for convenience but store a tuple so a snapshot can be shared safely.
        if not isinstance(self.gpu_free, tuple):
            object.__setattr__(self, "gpu_free", tuple(float(g) for g in self.gpu_free))


@dataclass(frozen=True)
class ClusterSnapshot:
    """The free capacity of the whole cluster at one instant."""

    nodes: tuple[NodeState, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.nodes, tuple):
            object.__setattr__(self, "nodes", tuple(self.nodes))

    def node(self, node_id: str) -> NodeState:
        """The node called ``node_id`` (KeyError if absent)."""
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)


@dataclass(frozen=True)
class BundleRequest:
    """One bundle of a workload: ``num_gpu`` GPUs each of ``gpu_fraction`` of a device.

    ``gpu_fraction < 1`` (a shared GPU) is only allowed with ``num_gpu == 1``. ``gpu_types`` lists the
    allowed GPU models (``None``: any); it is ignored for CPU-only bundles.
    """

    cpu: float
    mem: float = 0.0
    num_gpu: int = 0
    gpu_fraction: float = 1.0
    gpu_types: Optional[frozenset[str]] = None

    def __post_init__(self) -> None:
        if self.cpu < 0 or self.mem < 0 or self.num_gpu < 0:
            raise ValueError("cpu, mem and num_gpu must be non-negative")
        if self.num_gpu and not 0 < self.gpu_fraction <= 1:
            raise ValueError("gpu_fraction must be in (0, 1]")
        if self.num_gpu > 1 and self.gpu_fraction < 1:
            raise ValueError("a shared (fractional) GPU request takes exactly one GPU")
        if self.gpu_types is not None and not isinstance(self.gpu_types, frozenset):
            object.__setattr__(self, "gpu_types", frozenset(self.gpu_types))

    @property
    def gpus(self) -> float:
        """GPUs requested in all (fractions count as fractions)."""
        return self.num_gpu * self.gpu_fraction if self.num_gpu else 0.0


@dataclass(frozen=True)
class BundlePlacement:
    """Where one bundle goes: a node, the GPU indices it uses there, and the fraction of each."""

    node_id: str
    gpu_indices: tuple[int, ...] = ()
    gpu_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.gpu_indices, tuple):
            object.__setattr__(self, "gpu_indices", tuple(int(i) for i in self.gpu_indices))


def apply(
    snapshot: ClusterSnapshot, placements: Sequence[BundlePlacement], bundles: Sequence[BundleRequest]
) -> ClusterSnapshot:
    """A new snapshot with ``bundles`` taken from the nodes ``placements`` name.

    Pure: ``snapshot`` is unchanged and untouched nodes are shared. Raises ``ValueError`` if a
    placement does not fit (a caller committing a stale plan must find out, not over-allocate).
    """
    if len(placements) != len(bundles):
        raise ValueError("one placement per bundle")
    index = {n.node_id: i for i, n in enumerate(snapshot.nodes)}
    nodes = list(snapshot.nodes)
    for p, b in zip(placements, bundles):
        if p.node_id not in index:
            raise ValueError(f"unknown node {p.node_id!r}")
        i = index[p.node_id]
        n = nodes[i]
        if n.cpu_free + EPS < b.cpu or n.mem_free + EPS < b.mem:
            raise ValueError(f"bundle does not fit CPU/memory of {n.node_id}")
        if len(p.gpu_indices) != b.num_gpu or len(set(p.gpu_indices)) != b.num_gpu:
            raise ValueError("placement must name exactly num_gpu distinct GPUs")
        if b.num_gpu and b.gpu_types is not None and n.gpu_type not in b.gpu_types:
            raise ValueError(f"GPU type {n.gpu_type!r} not allowed")
        gpu = list(n.gpu_free)
        for g in p.gpu_indices:
            if not 0 <= g < len(gpu) or gpu[g] + EPS < b.gpu_fraction:
                raise ValueError(f"GPU {g} of {n.node_id} cannot host {b.gpu_fraction}")
            # Clamp float noise so a GPU never reads as slightly negative free capacity.
            gpu[g] = max(0.0, gpu[g] - b.gpu_fraction)
        nodes[i] = replace(
            n,
            cpu_free=max(0.0, n.cpu_free - b.cpu),
            mem_free=max(0.0, n.mem_free - b.mem),
            gpu_free=tuple(gpu),
        )
    return ClusterSnapshot(tuple(nodes))
