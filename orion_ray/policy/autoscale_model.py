"""The autoscaler's data: pools, observations, the checkpointed state and the decision (the
parameters and their orion.yaml form come from the model layer). Dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..worker_pools import POLICIES, ScalingParams, params_from_config

# ScalingParams and its orion.yaml form are model types (``orion_ray.worker_pools``): the config
# validates them at load. Re-exported here, where the rest of the autoscaler's data lives.
__all__ = [
    "POLICIES",
    "ScalingParams",
    "params_from_config",
    "PoolSpec",
    "PoolObservation",
    "AutoscaleContext",
    "PoolState",
    "AutoscaleState",
    "PoolDecision",
    "Decision",
]


@dataclass(frozen=True)
class PoolSpec:
    name: str
    node_resources: dict[str, Any]  # one node's shape, e.g. {"CPU": 2, "GPU": 4}
    labels: dict[str, Any]  # node labels; bundles are requested with these as label selector
    min_size: int
    max_size: int
    policy: str = "reactive"
    params: ScalingParams = ScalingParams()
    schedule: tuple[Any, ...] = ()  # ScheduleWindow, ...

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy: {self.policy!r} is not one of {', '.join(POLICIES)}")
        if not 0 <= self.min_size <= self.max_size:
            raise ValueError(
                f"min_size: {self.min_size} and max_size: {self.max_size} need 0 <= min_size <= max_size"
            )


@dataclass(frozen=True)
class PoolObservation:
    pool: str
    nodes: tuple[Any, ...] = ()  # NodeSample, ...
    pending: tuple[Any, ...] = ()  # PendingGang, ... (already assigned to this pool)
    queue_depth: int = 0
    cpu_utilization: Optional[float] = None  # percent over the pool's ready nodes
    gpu_utilization: Optional[float] = None
    serving_gpus: float = 0.0  # GPUs serving replicas want here beyond what they hold
    requested: int = 0  # nodes currently requested from Ray (the last target actuated)


@dataclass(frozen=True)
class AutoscaleContext:
    pools: tuple[Any, ...]  # PoolSpec, ...
    observations: dict[str, Any]  # pool name -> PoolObservation
    history: tuple[Any, ...] = ()  # HistoryPoint, ...


@dataclass
class PoolState:
    last_up_at: Optional[float] = None
    last_down_at: Optional[float] = None
    target: Optional[int] = None


@dataclass
class AutoscaleState:
    """What the actor checkpoints between decisions; JSON-safe through to_dict/from_dict."""

    pools: dict[str, Any] = field(default_factory=dict)  # pool name -> PoolState

    def to_dict(self) -> dict[str, Any]:
        return {
            "pools": {
                name: {"last_up_at": s.last_up_at, "last_down_at": s.last_down_at, "target": s.target}
                for name, s in self.pools.items()
            }
        }

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> "AutoscaleState":
        pools = {}
        for name, s in ((d or {}).get("pools") or {}).items():
            pools[name] = PoolState(s.get("last_up_at"), s.get("last_down_at"), s.get("target"))
        return cls(pools)


@dataclass(frozen=True)
class PoolDecision:
    pool: str
    policy: str
    current: int  # existing nodes of the pool (not provisioning ones)
    target: int
    direction: str  # "up" | "down" | "none"
    trigger: str
    reason: str
    release: tuple[Any, ...] = ()  # node ids to release on scale-down
    candidates: dict[str, Any] = field(default_factory=dict)  # what each sub-policy wanted
    held_by_cooldown: bool = False
    node_resources: dict[str, Any] = field(default_factory=dict)  # the pool's shape, for request_bundles
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    pools: tuple[Any, ...]  # PoolDecision, ...
    at: float

    def request_bundles(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(bundles, bundle_label_selectors)`` for Ray's ``request_resources``: ``target``
        whole-node bundles per pool, each with the pool's labels as selector. It is a floor:
        Ray keeps capacity for these, and idle nodes beyond them may go."""
        bundles: list[dict[str, Any]] = []
        selectors: list[dict[str, Any]] = []
        for p in self.pools:
            for _ in range(p.target):
                bundles.append(dict(p.node_resources))
                selectors.append(dict(p.labels))
        return bundles, selectors
