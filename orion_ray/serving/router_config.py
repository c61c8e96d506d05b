"""Serve's ``request_router_config`` of a deployment's ``load_balancing`` block. No Ray import
here (the deployer's options are unit-tested without Ray); the routers are in ``routers.py``."""

from __future__ import annotations

from typing import Any, Optional

from ..serving_options import LoadBalancing

# strategy → the router class in orion_ray/serving/routers.py
ROUTER_CLASSES = {
    "round_robin": "RoundRobinRouter",
    "least_connections": "LeastConnectionsRouter",
    "weighted": "WeightedRouter",
    "prefix_affinity": "PrefixAffinityRouter",
}
ROUTERS_MODULE = "orion_ray.serving.routers"


def balancing_config(lb: Optional[LoadBalancing]) -> Optional[dict]:
    """``request_router_config`` for Serve (None: Serve's default router, power of two choices)."""
    if lb is None or lb.strategy == "power_of_two":
        return None
    if lb.strategy == "custom":
        return {"request_router_class": lb.router_class, "request_router_kwargs": dict(lb.router_kwargs)}
    kwargs: dict[str, Any] = {}
    if lb.strategy == "weighted":
        kwargs = {"weights": list(lb.weights or [])}
    elif lb.strategy == "prefix_affinity":
        kwargs = {"prefix_chars": lb.prefix_chars, "imbalance_threshold": lb.imbalance_threshold}
    return {
        "request_router_class": f"{ROUTERS_MODULE}:{ROUTER_CLASSES[lb.strategy]}",
        "request_router_kwargs": kwargs,
    }
