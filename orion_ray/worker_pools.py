"""Worker pools as ``orion.yaml`` writes them (``orion.worker_pools[i]``): one typed model,
validated at load with the field and the reason of every problem.

``WorkerPool`` is what every part reads: the autoscaler (node shape, labels, sizes, scaling policy,
schedule windows; ``autoscaler/pool_spec.py`` turns it into the policy's ``PoolSpec``) and the EC2
provider (``Ec2Pool``, the same pool with its launch fields required, used when
``orion.capacity.provider`` is ``ec2`` and for the node types of the Ray cluster launcher).

Checks that need the whole pool are field validators that read the fields declared before them
(``info.data``), so an error names the field to fix (``orion.worker_pools.0.max_size``), never just
the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Literal, Mapping, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from .errors import ConfigError
from .schedules import parse_duration, parse_window

POLICIES = ("reactive", "predictive", "schedule", "hybrid")
DEFAULT_LAUNCH_BUDGET_S = 900.0  # the design's 15-minute total budget for one launch

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


# -- scaling parameters (``orion.autoscaling`` and a pool's ``autoscaling``) ---------------------
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


_DURATIONS = {
    "scale_up_cooldown": "scale_up_cooldown_s",
    "scale_down_cooldown": "scale_down_cooldown_s",
    "idle_time": "idle_s",
    "predictive_lead": "predictive_lead_s",
}


def params_from_config(defaults: Mapping, override: Mapping) -> ScalingParams:
    """:class:`ScalingParams` from orion.yaml's autoscaling defaults and a pool's override.

    The override wins key by key (also inside ``predictive_scaling``); a missing or ``None`` key
    keeps the built-in default. Unknown keys are ignored because the same section also carries
    other settings (``interval_s``). ``ValueError`` names the bad field.
    """
    for where, section in (("autoscaling", defaults), ("autoscaling", override)):
        if section and not isinstance(section, Mapping):
            raise ValueError(f"{where}: {section!r} is not a mapping")
        pred_raw = (section or {}).get("predictive_scaling")
        if pred_raw is not None and not isinstance(pred_raw, Mapping):
            raise ValueError(f"predictive_scaling: {pred_raw!r} is not a mapping")
    merged = {**(defaults or {}), **(override or {})}
    pred = {
        **((defaults or {}).get("predictive_scaling") or {}),
        **((override or {}).get("predictive_scaling") or {}),
    }
    kw: dict = {}
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
        kw["lookback_s"] = parse_duration("predictive_scaling.lookback_period", pred["lookback_period"])
    return ScalingParams(**kw)


def check_scaling(section: dict[str, Any]) -> dict[str, Any]:
    """A pydantic validator: ``section`` as it is, once :func:`params_from_config` accepts it."""
    params_from_config({}, section)
    return section


def _check_window(window: dict[str, Any]) -> dict[str, Any]:
    try:
        parse_window(window)
    except TypeError as exc:  # a field of the wrong type; pydantic reports only ValueErrors
        raise ValueError(str(exc)) from None
    return window


ScheduleEntry = Annotated[dict[str, Any], AfterValidator(_check_window)]


# -- pools ---------------------------------------------------------------------------------------
class RayStart(BaseModel):
    """How a launched node joins the cluster by itself (user data), when no node updater does it."""

    model_config = ConfigDict(extra="forbid")
    head_address: str = Field(min_length=1, description="host:port of the head's GCS")
    resources: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    gpu_type: Optional[str] = None
    ray_node_type: Optional[str] = None
    schedule: list[dict[str, Any]] = Field(default_factory=list)
    extra_args: list[str] = Field(default_factory=list)


def _labels(v: Any) -> Any:
    # YAML reads `tier: 1` as a number; a label value is its text
    if isinstance(v, Mapping):
        return {
            str(k): str(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x
            for k, x in v.items()
        }
    return v


class WorkerPool(BaseModel):
    """One pool of worker nodes: its shape and labels, its size bounds and scaling policy, and (for
    Orion's EC2 provider) what to launch, where, from which capacity sources, within what budget.
    Fields are declared in the order their validators read each other."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    scaling_policy: Optional[Literal["reactive", "predictive", "schedule", "hybrid"]] = None
    min_size: int = Field(0, ge=0)
    max_size: int = Field(10, ge=0)
    instance_type: Optional[str] = Field(None, pattern=r"^[a-z][a-z0-9\-]*\.[a-z0-9]+$")
    gpu_type: Optional[str] = None
    resources: dict[str, float] = Field(
        default_factory=dict,
        validate_default=True,
        description="one node's shape, e.g. {CPU: 96, GPU: 8}; known instance types need none",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    ray_node_type: Optional[str] = Field(
        None, description="the Ray autoscaler's node type (default: the pool's name)"
    )
    autoscaling: dict[str, Any] = Field(default_factory=dict, description="overrides of orion.autoscaling")
    schedule: list[ScheduleEntry] = Field(default_factory=list, validate_default=True)
    # -- what Orion's EC2 provider launches (required in ``Ec2Pool``) --
    image_id: Optional[str] = Field(None, pattern=r"^ami-[0-9a-f]{8,17}$")
    subnets: list[str] = Field(default_factory=list, description="one or more, across zones")
    market: Literal["on_demand", "spot"] = "on_demand"
    fallback: Literal["on_demand", "none"] = "none"
    capacity_reservations: list[str] = Field(default_factory=list)
    launch_budget_s: float = Field(DEFAULT_LAUNCH_BUDGET_S, gt=0, le=86_400)
    max_spot_price: Optional[float] = Field(None, gt=0)
    key_name: Optional[str] = None
    security_group_ids: list[str] = Field(default_factory=list)
    iam_instance_profile: Optional[str] = Field(None, description="instance profile ARN")
    tags: dict[str, str] = Field(default_factory=dict)
    ray_start: Optional[RayStart] = None

    _labels_as_text = field_validator("labels", mode="before")(_labels)
    _scaling = field_validator("autoscaling")(check_scaling)

    @field_validator("max_size")
    @classmethod
    def _bounds(cls, v: int, info: ValidationInfo) -> int:
        lo = info.data.get("min_size")
        if lo is not None and v < lo:
            raise ValueError(f"need 0 <= min_size ({lo}) <= max_size ({v})")
        return v

    @field_validator("resources")
    @classmethod
    def _shape(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        if any(x < 0 for x in v.values()):
            raise ValueError("resources must be non-negative numbers")
        if not v and info.data.get("instance_type") not in INSTANCE_SHAPES:
            raise ValueError(
                "the node shape is needed to size the pool, e.g. {CPU: 96, GPU: 8} "
                "(non-negative numbers), unless instance_type is one Orion knows"
            )
        return v

    @field_validator("schedule")
    @classmethod
    def _windows(cls, v: list, info: ValidationInfo) -> list:
        if info.data.get("scaling_policy") == "schedule" and not v:
            raise ValueError("scaling_policy schedule needs at least one window")
        return v

    @field_validator("subnets", "capacity_reservations")
    @classmethod
    def _ids(cls, v: list[str], info: ValidationInfo) -> list[str]:
        kinds = {"subnets": ("subnet-", "subnet"), "capacity_reservations": ("cr-", "capacity reservation")}
        prefix, what = kinds[str(info.field_name)]
        for item in v:
            if not item.startswith(prefix):
                raise ValueError(f"{item!r} is not a {what} id ({prefix}...)")
        if len(set(v)) != len(v):
            raise ValueError(f"a {what} is listed twice")
        return v

    @field_validator("max_spot_price")
    @classmethod
    def _spot_only(cls, v: Optional[float], info: ValidationInfo) -> Optional[float]:
        if v is not None and info.data.get("market") != "spot":
            raise ValueError("max_spot_price only applies to market: spot")
        return v

    # -- what the readers want ------------------------------------------------------------------
    def node_shape(self) -> tuple[dict[str, float], Optional[str]]:
        """One node's resources and its GPU type: as given, else the known instance type's."""
        known = INSTANCE_SHAPES.get(str(self.instance_type))
        resources = dict(self.resources) or dict(known[0] if known else {})
        gpu_type = self.gpu_type or (known[1] if known and resources.get("GPU") else None)
        return {k: float(v) for k, v in resources.items()}, gpu_type

    @property
    def node_type(self) -> str:
        """The Ray node type that launches this pool's nodes (``ray_node_type``, else the name)."""
        return self.ray_node_type or self.name


class Ec2Pool(WorkerPool):
    """A pool Orion's EC2 provider launches: the launch fields are required, and the name is one
    EC2 tags and instance names accept. The node shape may be left to the Ray node type."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    instance_type: str = Field(pattern=r"^[a-z][a-z0-9\-]*\.[a-z0-9]+$")
    image_id: str = Field(pattern=r"^ami-[0-9a-f]{8,17}$")
    subnets: list[str] = Field(min_length=1, description="one or more subnets, across zones")

    @field_validator("resources")
    @classmethod
    def _shape(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        # A launcher node type carries its shape at the Ray level, not in its node_config.
        if any(x < 0 for x in v.values()):
            raise ValueError("resources must be non-negative numbers")
        return v


# -- parsing with field paths ------------------------------------------------------------------
def pydantic_problems(exc: PydanticValidationError, prefix: str) -> list[dict[str, str]]:
    """``[{"field", "problem"}]`` of a pydantic error, each field path under ``prefix``."""
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        out.append({"field": f"{prefix}.{loc}" if loc else prefix, "problem": e["msg"]})
    return out


def parse_pool(raw: Any, where: str = "worker_pool") -> Ec2Pool:
    """One EC2 pool from its dict; ``ConfigError`` (422) naming each bad field otherwise."""
    if isinstance(raw, WorkerPool):
        raw = raw.model_dump(exclude_unset=True)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where} must be a mapping", [{"field": where, "problem": f"got {type(raw).__name__}"}]
        )
    try:
        return Ec2Pool.model_validate(raw)
    except PydanticValidationError as exc:
        raise ConfigError(f"invalid {where}", pydantic_problems(exc, where)) from None


def parse_pools(raw: Any, where: str = "orion.worker_pools") -> dict[str, Ec2Pool]:
    """Every EC2 pool by name; all problems of all pools are reported at once."""
    if not isinstance(raw, list):
        raise ConfigError(
            f"{where} must be a list", [{"field": where, "problem": f"got {type(raw).__name__}"}]
        )
    pools: dict[str, Ec2Pool] = {}
    details: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        try:
            pool = parse_pool(item, f"{where}[{i}]")
        except ConfigError as exc:
            details.extend(exc.details)
            continue
        if pool.name in pools:
            details.append({"field": f"{where}[{i}].name", "problem": f"duplicate pool name {pool.name!r}"})
        pools[pool.name] = pool
    if details:
        raise ConfigError(f"invalid {where}", details)
    return pools


def parse_worker_pools(
    raw: Iterable[Union[WorkerPool, dict]], where: str = "orion.worker_pools"
) -> list[WorkerPool]:
    """Every pool as a ``WorkerPool`` (a given one is kept); ``ConfigError`` naming each bad field
    of every pool (``orion.worker_pools.0.resources``), duplicate names included."""
    pools: dict[int, WorkerPool] = {}  # by position in ``raw``, so paths name the right entry
    problems: list[dict[str, str]] = []
    for i, item in enumerate(raw or []):
        if isinstance(item, WorkerPool):
            pools[i] = item
            continue
        if not isinstance(item, dict):
            problems.append({"field": f"{where}.{i}", "problem": "must be a mapping"})
            continue
        try:
            pools[i] = WorkerPool.model_validate(item)
        except PydanticValidationError as exc:
            problems.extend(pydantic_problems(exc, f"{where}.{i}"))
    problems += duplicate_names(pools, where)
    if problems:
        raise ConfigError("invalid worker pools", problems)
    return list(pools.values())


def duplicate_names(
    pools: Union[Mapping[int, WorkerPool], list[WorkerPool]], where: str = "orion.worker_pools"
) -> list[dict[str, str]]:
    """A problem for each pool whose name an earlier pool has (``pools`` by position, or a list)."""
    items = pools.items() if isinstance(pools, Mapping) else enumerate(pools)
    seen: set[str] = set()
    out = []
    for i, p in items:
        if p.name in seen:
            out.append({"field": f"{where}.{i}.name", "problem": f"pool {p.name!r} is listed twice"})
        seen.add(p.name)
    return out
