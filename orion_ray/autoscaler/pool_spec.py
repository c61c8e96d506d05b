"""``orion.worker_pools`` + ``orion.autoscaling`` → the autoscaler's pools (``policy.autoscaling``).

The pools are typed and validated in the model layer (``orion_ray.worker_pools.WorkerPool``);
this module only turns each one into the policy's ``PoolSpec``: its node shape (``resources``, or
a known ``instance_type``'s), the labels its nodes carry (``orion.io/pool: <name>`` always;
``gpu_type`` adds ``ray.io/accelerator-type``) so the bundles Orion asks the Ray autoscaler for
land on that pool's node type, its bounds, its scaling parameters over the defaults, and its
schedule windows. The EC2 fields belong to the EC2 provider and are not read here.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

from ..errors import ConfigError
from ..policy.autoscaling import PoolSpec, params_from_config, parse_window
from ..policy.markets import MARKET_LABEL
from ..policy.node_lifecycle import POOL_LABEL
from ..worker_pools import INSTANCE_SHAPES, POLICIES, WorkerPool, parse_worker_pools

__all__ = ["INSTANCE_SHAPES", "POLICIES", "parse_autoscale_pools", "pool_spec", "node_type_of"]


def pool_spec(pool: WorkerPool, params_defaults: Optional[dict] = None) -> PoolSpec:
    """The policy's view of one validated pool."""
    resources, gpu_type = pool.node_shape()
    labels = dict(pool.labels)
    labels.setdefault(POOL_LABEL, pool.name)
    if pool.market == "spot":  # cost-aware placement (policy/markets.py); unlabelled: on-demand
        labels.setdefault(MARKET_LABEL, pool.market)
    if gpu_type:
        labels.setdefault("ray.io/accelerator-type", str(gpu_type))
    return PoolSpec(
        name=pool.name,
        node_resources=resources,
        labels=labels,
        min_size=pool.min_size,
        max_size=pool.max_size,
        policy=pool.scaling_policy or "reactive",
        params=params_from_config(params_defaults or {}, pool.autoscaling),
        schedule=tuple(parse_window(w) for w in pool.schedule),
    )


def parse_autoscale_pools(
    pools: Iterable[Union[WorkerPool, dict]], defaults: Optional[dict] = None
) -> list[PoolSpec]:
    """Every pool of ``orion.yaml`` (typed, or raw dicts validated here) as a ``PoolSpec``;
    ``ConfigError`` naming each bad field (``orion.worker_pools.0.resources``,
    ``orion.autoscaling``)."""
    defaults = dict(defaults or {})
    problems: list[dict[str, str]] = []
    try:
        params_from_config(defaults, {})
    except ValueError as exc:
        problems.append({"field": "orion.autoscaling", "problem": str(exc)})
    try:
        typed = parse_worker_pools(pools)
    except ConfigError as exc:
        problems += exc.details
        typed = []
    if problems:
        raise ConfigError("invalid worker pools for autoscaling", problems)
    return [pool_spec(p, defaults) for p in typed]


def node_type_of(pools: Iterable[Union[WorkerPool, dict]]) -> dict[str, str]:
    """Pool name → the Ray node type that launches it (``ray_node_type``, default the name)."""
    out = {}
    for p in pools or []:
        if isinstance(p, WorkerPool):
            out[p.name] = p.node_type
        elif isinstance(p, dict) and p.get("name"):
            out[p["name"]] = str(p.get("ray_node_type") or p["name"])
    return out
