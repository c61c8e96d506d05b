"""A deployment's ``load_balancing`` and ``caching`` blocks, and the cluster-wide caching default
(``orion.serving.caching``). Pure pydantic, like ``serving_specs``: the API, the CLI, the config
and the routers share these types.

A wrong value is refused with the field and the reason (a 422 at the API), never ignored.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

STRATEGIES = ("round_robin", "least_connections", "power_of_two", "prefix_affinity", "weighted", "custom")
# what a cache key pattern may name; ``input_hash`` is required (without it every request of a
# model would share one answer)
PLACEHOLDERS = ("model_id", "version", "input_hash", "tenant_id", "endpoint")
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MAX_CACHE_BYTES = 2**40  # an in-process cache; anything larger is a typo
# eviction policies users write, each refused with why (only LRU is built)
_OTHER_EVICTIONS = ("lfu", "fifo", "random", "ttl", "arc", "mru")


def parse_size(value: Union[int, float, str]) -> int:
    """Bytes from ``"10GB"`` (10**9), ``"512MiB"`` (2**20 units), ``"1.5GB"`` or a plain number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a size is a number of bytes or a string such as '512MB'")
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(f"cannot read {value!r} as a size (e.g. '512MB', '10GB', '1GiB')")
        size = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    else:
        size = float(value)
    if not math.isfinite(size) or size < 0 or size > MAX_CACHE_BYTES:
        raise ValueError("a size must be between 0 and 1 TiB")
    return int(size)


def parse_duration(value: Union[int, float, str]) -> float:
    """Seconds from ``30s``, ``5m``, ``250ms``, ``1h`` or a plain number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a duration is seconds or a string such as '30s'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(f"cannot read {value!r} as a duration (e.g. '30s', '5m', '250ms')")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds < 0 or seconds > 30 * 86400:
        raise ValueError("a duration must be between 0 and 30 days")
    return seconds


ByteSize = Annotated[int, BeforeValidator(parse_size)]
Seconds = Annotated[float, BeforeValidator(parse_duration)]  # "30s", "5m", "250ms" or seconds


def check_key_pattern(pattern: str) -> str:
    """A cache key pattern such as ``inference:{{model_id}}:{{input_hash}}``, or why not."""
    names = _PLACEHOLDER_RE.findall(pattern)
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{{{unknown[0]}}}}} in {pattern!r} (known: {', '.join(PLACEHOLDERS)})"
        )
    rest = _PLACEHOLDER_RE.sub("", pattern)
    if "{" in rest or "}" in rest:
        raise ValueError(f"{pattern!r}: a placeholder is written {{{{name}}}}")
    if "input_hash" not in names:
        raise ValueError(f"{pattern!r} needs {{{{input_hash}}}} (else every request shares one entry)")
    if not rest.isprintable():
        raise ValueError(f"{pattern!r} has unprintable characters")
    return pattern


def render_key(pattern: str, values: dict[str, str]) -> str:
    """The key a checked pattern gives for one request's values."""
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], pattern)


class LoadBalancing(BaseModel):
    """How Serve picks one of a deployment's replicas for each request (its request router)."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal[
        "round_robin", "least_connections", "power_of_two", "prefix_affinity", "weighted", "custom"
    ] = Field("power_of_two", description="power_of_two is Serve's default router")
    router_class: Optional[str] = Field(
        None,
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$",
        description="custom: 'package.module:Class', a ray.serve.request_router.RequestRouter",
    )
    router_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="custom: passed to the router's initialize_state"
    )
    weights: Optional[list[float]] = Field(
        None, max_length=1000, description="weighted: the share of replica rank 0, 1, … (others: 1)"
    )
    prefix_chars: int = Field(
        256, ge=1, le=100_000, description="prefix_affinity: leading prompt characters that pick a replica"
    )
    imbalance_threshold: int = Field(
        4,
        ge=1,
        le=10_000,
        description="prefix_affinity: queue-length lead over the least loaded replica "
        "beyond which the request goes to the least loaded instead",
    )

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: Optional[list[float]]) -> Optional[list[float]]:
        if v is None:
            return v
        if any(not math.isfinite(w) or w < 0 or w > 1e6 for w in v):
            raise ValueError("each weight must be a number between 0 and 1e6")
        if not v or sum(v) <= 0:
            raise ValueError("at least one replica needs a positive weight")
        return v

    @model_validator(mode="after")
    def _fields_of_strategy(self):
        custom = self.strategy == "custom"
        if custom and not self.router_class:
            raise ValueError("strategy custom needs router_class ('package.module:Class')")
        if not custom and (self.router_class or self.router_kwargs):
            raise ValueError("router_class and router_kwargs belong to strategy custom")
        if self.strategy == "weighted" and not self.weights:
            raise ValueError("strategy weighted needs weights (one per replica rank)")
        if self.strategy != "weighted" and self.weights is not None:
            raise ValueError("weights belong to strategy weighted")
        return self


class WarmStandby(BaseModel):
    """Replicas kept loaded while idle, and how long without traffic before the rest unload."""

    model_config = ConfigDict(extra="forbid")
    min_replicas: int = Field(1, ge=0, le=1000, description="kept loaded while idle (0: scale to zero)")
    idle_unload_after: Seconds = Field(
        600.0, description="replicas above min_replicas (or the last one, at 0) go after this long idle"
    )


class Caching(BaseModel):
    """The response cache of a model (or, in ``orion.serving.caching``, of every model)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ttl: Seconds = Field(300.0, description="seconds or '5m'")
    max_size: ByteSize = Field(64 * 10**6, description="bytes or '512MB', '10GB' (answers' JSON size)")
    eviction_policy: str = Field("lru", max_length=32)
    cache_key_patterns: list[str] = Field(
        default_factory=lambda: ["inference:{{model_id}}:{{version}}:{{input_hash}}"],
        min_length=1,
        max_length=8,
        description="the first forms the keys; each is checked",
    )
    warm_standby: Optional[WarmStandby] = None

    @field_validator("eviction_policy")
    @classmethod
    def _lru_only(cls, v: str) -> str:
        if v.lower() == "lru":
            return "lru"
        if v.lower() in _OTHER_EVICTIONS:
            raise ValueError(
                f"eviction_policy {v!r} is not supported: the cache is a least-recently-used list "
                "bounded in bytes with a TTL (write lru)"
            )
        raise ValueError(f"unknown eviction_policy {v!r} (only lru)")

    @field_validator("cache_key_patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for p in v:
            if not 1 <= len(p) <= 256:
                raise ValueError("a cache key pattern has 1 to 256 characters")
            check_key_pattern(p)
        return v


class ServingConfig(BaseModel):
    """``orion.serving``: cluster-wide serving defaults."""

    model_config = ConfigDict(extra="forbid")
    caching: Caching = Field(default_factory=Caching, description="for models without their own block")


def apply_warm_standby(spec: Any) -> Any:
    """A deployment spec with its ``caching.warm_standby`` written into its autoscaling bounds
    (``min_replicas`` and ``downscale_delay``), so Serve, the GPU account and the scale views all
    read one set of numbers. Warm standby needs autoscaling: fixed replicas are always loaded."""
    ws = spec.caching.warm_standby if spec.caching is not None else None
    if ws is None:
        return spec
    a = spec.autoscaling
    if a is None:
        raise ValueError(
            "caching.warm_standby needs autoscaling (max_replicas): with fixed replicas every "
            "replica stays loaded"
        )
    if ws.min_replicas > a.max_replicas:
        raise ValueError("caching.warm_standby.min_replicas must not exceed autoscaling.max_replicas")
    if a.initial_replicas is not None and a.initial_replicas < ws.min_replicas:
        raise ValueError("autoscaling.initial_replicas must not be below caching.warm_standby.min_replicas")
    spec.autoscaling = a.model_copy(
        update={"min_replicas": ws.min_replicas, "downscale_delay": ws.idle_unload_after}
    )
    return spec
