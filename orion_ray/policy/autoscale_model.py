"""The autoscaler's data: parameters (and their orion.yaml form), pools, observations, the
checkpointed state and the decision. Pure stdlib."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .durations import parse_duration

POLICIES = ("reactive", "predictive", "schedule", "hybrid")


@dataclass(frozen=True)
class ScalingParams:
    target_cpu_utilization: float = 70.0  # percent
    target_queue_depth: int = 100  # queued workloads per node above which reactive adds nodes
    scale_up_cooldown_s: float = 60.0
    scale_down_cooldown_s: float = 300.0
    predictive_enabled: bool = False
    lookback_s: float = 14 * 86400
    predictive_lead_s: float = 600.0  # the forecast is for now + this
    idle_s: float = 60.0  # a node must be idle this long before scale-down may release it


_DURATIONS = {"scale_up_cooldown": "scale_up_cooldown_s",
              "scale_down_cooldown": "scale_down_cooldown_s",
              "idle_time": "idle_s", "predictive_lead": "predictive_lead_s"}


def params_from_config(defaults: Mapping[str, Any], override: Mapping[str, Any]) -> ScalingParams:
    """:class:`ScalingParams` from orion.yaml's autoscaling defaults and a pool's override.

    The override wins key by key (also inside ``predictive_scaling``); a missing or ``None`` key
    keeps the built-in default. Unknown keys are ignored because the same section also carries
    pool settings (policy, sizes). ``ValueError`` names the bad field.
    """
    merged = {**(defaults or {}), **(override or {})}
    pred = {**((defaults or {}).get("predictive_scaling") or {}),
            **((override or {}).get("predictive_scaling") or {})}
    kw: dict[str, Any] = {}
    util = merged.get("target_cpu_utilization")
    if util is not None:
        if isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util <= 100:
            raise ValueError(f"target_cpu_utilization: {util!r} is not a percentage in (0, 100]")
        kw["target_cpu_utilization"] = float(util)
    depth = merged.get("target_queue_depth")
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"target_queue_depth: {depth!r} is not a positive integer")
        kw["target_queue_depth"] = depth
    for key, attr in _DURATIONS.items():
        if merged.get(key) is not None:
            kw[attr] = parse_duration(key, merged[key])
    if pred.get("enabled") is not None:
        if not isinstance(pred["enabled"], bool):
            raise ValueError(f"predictive_scaling.enabled: {pred['enabled']!r} is not a boolean")
        kw["predictive_enabled"] = pred["enabled"]
    if pred.get("lookback_period") is not None:
        kw["lookback_s"] = parse_duration("predictive_scaling.lookback_period",
                                          pred["lookback_period"])
    return ScalingParams(**kw)


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
            raise ValueError(f"min_size: {self.min_size} and max_size: {self.max_size} "
                             "need 0 <= min_size <= max_size")


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
        return {"pools": {name: {"last_up_at": s.last_up_at, "last_down_at": s.last_down_at,
                                 "target": s.target} for name, s in self.pools.items()}}

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
