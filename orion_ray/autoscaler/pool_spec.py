"""``orion.worker_pools`` + ``orion.autoscaling`` → the autoscaler's pools (``policy.autoscaling``).

A pool needs, for scaling, its node shape (``resources``, e.g. ``{CPU: 96, GPU: 8}``) and the labels
its nodes carry (``orion.io/pool: <name>`` is always one; ``gpu_type`` adds
``ray.io/accelerator-type``), so that the bundles Orion asks the Ray autoscaler for land on that pool's
node type. Everything else (``instance_type``, ``subnets``, ``market``…) belongs to the EC2 provider
and is ignored here. Problems are reported all at once, with the field path.
"""
from __future__ import annotations

from typing import Any, Optional

from ..errors import ConfigError
from ..policy.autoscaling import PoolSpec, params_from_config, parse_window
from ..policy.node_lifecycle import POOL_LABEL

POLICIES = ("reactive", "predictive", "schedule", "hybrid")

# Node shapes of common GPU instance types, so a pool of orion.yaml need not repeat them
# (``resources`` overrides). CPU is vCPUs; memory is left to Ray.
INSTANCE_SHAPES: dict[str, tuple[dict[str, float], Optional[str]]] = {
    "p4d.24xlarge": ({"CPU": 96, "GPU": 8}, "A100"),
    "p4de.24xlarge": ({"CPU": 96, "GPU": 8}, "A100"),
    "p5.48xlarge": ({"CPU": 192, "GPU": 8}, "H100"),
    "p5e.48xlarge": ({"CPU": 192, "GPU": 8}, "H200"),
    "g5.xlarge": ({"CPU": 4, "GPU": 1}, "A10G"),
    "g5.12xlarge": ({"CPU": 48, "GPU": 4}, "A10G"),
    "g5.48xlarge": ({"CPU": 192, "GPU": 8}, "A10G"),
    "g6.xlarge": ({"CPU": 4, "GPU": 1}, "L4"),
    "g6.12xlarge": ({"CPU": 48, "GPU": 4}, "L4"),
    "g6e.12xlarge": ({"CPU": 48, "GPU": 4}, "L40S"),
    "m5.xlarge": ({"CPU": 4}, None),
    "m5.4xlarge": ({"CPU": 16}, None),
    "m7i.xlarge": ({"CPU": 4}, None),
    "m7i.2xlarge": ({"CPU": 8}, None),
    "m7i.4xlarge": ({"CPU": 16}, None),
    "m7i.8xlarge": ({"CPU": 32}, None),
}


def parse_autoscale_pools(pools: list[dict[str, Any]], defaults: Optional[dict] = None
                          ) -> list[PoolSpec]:
    """Every pool of ``orion.yaml`` as a ``PoolSpec``; ``ConfigError`` naming each bad field."""
    defaults = dict(defaults or {})
    out: list[PoolSpec] = []
    problems: list[dict[str, str]] = []

    def bad(field: str, problem: str) -> None:
        problems.append({"field": field, "problem": problem})

    try:
        params_from_config(defaults, {})
    except ValueError as exc:
        bad("orion.autoscaling", str(exc))
    seen: set[str] = set()
    for i, raw in enumerate(pools or []):
        where = f"orion.worker_pools.{i}"
        if not isinstance(raw, dict):
            bad(where, "must be a mapping")
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            bad(f"{where}.name", "required")
            continue
        if name in seen:
            bad(f"{where}.name", f"pool {name!r} is listed twice")
        seen.add(name)
        policy = raw.get("scaling_policy") or "reactive"
        if policy not in POLICIES:
            bad(f"{where}.scaling_policy", f"{policy!r} is not one of {', '.join(POLICIES)}")
            continue
        resources = raw.get("resources") or {}
        known = INSTANCE_SHAPES.get(str(raw.get("instance_type")))
        if not resources and known:
            resources = known[0]
        if not isinstance(resources, dict) or not resources or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                for v in resources.values()):
            bad(f"{where}.resources", "the node shape is needed to size the pool, e.g. "
                                      "{CPU: 96, GPU: 8} (non-negative numbers), unless "
                                      "instance_type is one Orion knows")
            continue
        try:
            lo, hi = int(raw.get("min_size", 0)), int(raw.get("max_size", 10))
        except (TypeError, ValueError):
            bad(f"{where}.min_size", "min_size and max_size must be integers")
            continue
        if lo < 0 or hi < lo:
            bad(f"{where}.max_size", f"need 0 <= min_size ({lo}) <= max_size ({hi})")
            continue
        labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
        labels.setdefault(POOL_LABEL, name)
        gpu_type = raw.get("gpu_type") or (known[1] if known and resources.get("GPU") else None)
        if gpu_type:
            labels.setdefault("ray.io/accelerator-type", str(gpu_type))
        try:
            params = params_from_config(defaults, raw.get("autoscaling") or {})
        except ValueError as exc:
            bad(f"{where}.autoscaling", str(exc))
            continue
        windows = []
        for j, w in enumerate(raw.get("schedule") or []):
            try:
                windows.append(parse_window(w))
            except (ValueError, TypeError) as exc:
                bad(f"{where}.schedule.{j}", str(exc))
        if policy == "schedule" and not raw.get("schedule"):
            bad(f"{where}.schedule", "scaling_policy schedule needs at least one window")
        out.append(PoolSpec(name=name, node_resources={k: float(v) for k, v in resources.items()},
                            labels=labels, min_size=lo, max_size=hi, policy=policy,
                            params=params, schedule=tuple(windows)))
    if problems:
        raise ConfigError("invalid worker pools for autoscaling", problems)
    return out


def node_type_of(pools_raw: list[dict[str, Any]]) -> dict[str, str]:
    """Pool name → the Ray node type that launches it (``ray_node_type``, default the name)."""
    return {p["name"]: str(p.get("ray_node_type") or p["name"])
            for p in pools_raw or [] if isinstance(p, dict) and p.get("name")}
