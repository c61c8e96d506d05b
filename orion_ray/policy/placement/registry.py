"""Placement policies by name (the names ``orion.yaml`` and ``orion simulate --policy`` accept)."""

from __future__ import annotations

from typing import Any, Callable

from .baselines import BestFitPolicy, DotProductPolicy, GpuClusteringPolicy, GpuPackingPolicy, RandomPolicy
from .engine import Policy
from .fgd import FGDPolicy
from .orion import OrionPolicy

DEFAULT_POLICY = "orion"

_FACTORIES: dict[str, Callable[..., Policy]] = {
    "random": RandomPolicy,
    "best_fit": BestFitPolicy,
    "gpu_packing": GpuPackingPolicy,
    "dot_product": DotProductPolicy,
    "gpu_clustering": GpuClusteringPolicy,
    "fgd": FGDPolicy,
    "orion": OrionPolicy,
}
POLICY_NAMES = tuple(_FACTORIES)


def get_policy(name: str = DEFAULT_POLICY, **opts: Any) -> Policy:
    """A fresh policy object by name; ``opts`` go to its constructor (all accept ``seed``, the
    seed of the tie-break node order; ``fgd`` and ``orion`` also accept ``typical``, a request list
    whose shapes make a fixed typical mix instead of one learnt online)."""
    key = name.lower().replace("-", "_")
    if key not in _FACTORIES:
        raise ValueError(f"unknown placement policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    factory = _FACTORIES[key]
    if key not in ("fgd", "orion"):
        opts.pop("typical", None)  # only the fragmentation policies use a request mix
    return factory(**opts)
