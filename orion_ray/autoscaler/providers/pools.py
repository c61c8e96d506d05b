"""A worker pool of ``orion.yaml`` (``orion.worker_pools[i]``), validated for the EC2 provider.

``config.py`` keeps ``worker_pools`` as raw dicts; this module is where they get their schema, so an
invalid pool is refused with the field and the reason (``ConfigError``, a 4xx), never a crash later
in the middle of a launch.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from ...errors import ConfigError

DEFAULT_LAUNCH_BUDGET_S = 900.0  # the design's 15-minute total budget for one launch


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


class PoolConfig(BaseModel):
    """One pool: what to launch, where, from which capacity sources, and within what budget."""
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    instance_type: str = Field(pattern=r"^[a-z][a-z0-9\-]*\.[a-z0-9]+$")
    image_id: str = Field(pattern=r"^ami-[0-9a-f]{8,17}$")
    subnets: list[str] = Field(min_length=1, description="one or more subnets, across zones")
    market: Literal["on_demand", "spot"] = "on_demand"
    fallback: Literal["on_demand", "none"] = "none"
    capacity_reservations: list[str] = Field(default_factory=list)
    launch_budget_s: float = Field(DEFAULT_LAUNCH_BUDGET_S, gt=0, le=86_400)
    min_size: int = Field(0, ge=0)
    max_size: int = Field(10, ge=0)
    max_spot_price: Optional[float] = Field(None, gt=0)
    key_name: Optional[str] = None
    security_group_ids: list[str] = Field(default_factory=list)
    iam_instance_profile: Optional[str] = Field(None, description="instance profile ARN")
    tags: dict[str, str] = Field(default_factory=dict)
    ray_start: Optional[RayStart] = None
    # Read by the autoscaler (issue 6), accepted here so one orion.yaml serves every part.
    scaling_policy: Optional[Literal["reactive", "predictive", "schedule", "hybrid"]] = None
    autoscaling: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    gpu_type: Optional[str] = None
    ray_node_type: Optional[str] = None
    schedule: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("subnets", "capacity_reservations")
    @classmethod
    def _ids(cls, v: list[str], info) -> list[str]:
        prefix, what = {"subnets": ("subnet-", "subnet"),
                        "capacity_reservations": ("cr-", "capacity reservation")}[info.field_name]
        for item in v:
            if not item.startswith(prefix):
                raise ValueError(f"{item!r} is not a {what} id ({prefix}...)")
        if len(set(v)) != len(v):
            raise ValueError(f"a {what} is listed twice")
        return v

    @model_validator(mode="after")
    def _sizes_and_market(self) -> "PoolConfig":
        if self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) is below min_size ({self.min_size})")
        if self.max_spot_price is not None and self.market != "spot":
            raise ValueError("max_spot_price only applies to market: spot")
        return self


def _details(exc: PydanticValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        out.append({"field": f"{prefix}.{loc}" if loc else prefix, "problem": e["msg"]})
    return out


def parse_pool(raw: Any, where: str = "worker_pool") -> PoolConfig:
    """One pool from its dict; ``ConfigError`` (422) naming each bad field otherwise."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping",
                          [{"field": where, "problem": f"got {type(raw).__name__}"}])
    try:
        return PoolConfig.model_validate(raw)
    except PydanticValidationError as exc:
        raise ConfigError(f"invalid {where}", _details(exc, where)) from None


def parse_pools(raw: Any, where: str = "orion.worker_pools") -> dict[str, PoolConfig]:
    """Every pool by name; all problems of all pools are reported at once."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be a list",
                          [{"field": where, "problem": f"got {type(raw).__name__}"}])
    pools: dict[str, PoolConfig] = {}
    details: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        try:
            pool = parse_pool(item, f"{where}[{i}]")
        except ConfigError as exc:
            details.extend(exc.details)
            continue
        if pool.name in pools:
            details.append({"field": f"{where}[{i}].name",
                            "problem": f"duplicate pool name {pool.name!r}"})
        pools[pool.name] = pool
    if details:
        raise ConfigError(f"invalid {where}", details)
    return pools
