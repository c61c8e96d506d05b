"""What a user writes to serve a model: a deployment (one model version) and a release (how traffic
is split over a model's versions). Pure pydantic; the API, the CLI and the policy share these types,
so they live in the model layer (``orion_ray.serving.specs`` re-exports them).

Unknown fields are refused, as in the workload spec, so a typo never silently changes a release.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

# parse_duration lives with the serving blocks (below this module), one syntax for every field
from .serving_options import Caching, LoadBalancing, apply_warm_standby, parse_duration

# single separators only: a deployment id is ``<model_id>--<version>`` and must read back one way
NAME_RE = r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$"
ENGINES = ("test", "cpu", "vllm")


Duration = Annotated[float, BeforeValidator(parse_duration)]  # seconds; accepts "30s", "5m"…

_BOUND_RE = re.compile(r"^\s*(<=?)?\s*(.*?)\s*$")
_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(%)?$")
_COUNT_RE = re.compile(r"^\s*(\d+)\s*(%)?\s*$")


def _upper_bound(value: str) -> str:
    """The number of ``"< 1%"`` / ``"<= 1%"`` / ``"1%"``; a lower bound (``">"``) is refused."""
    if value.strip().startswith(">"):
        raise ValueError(f"{value!r}: a success criterion is an upper bound, write it as '< …'")
    m = _BOUND_RE.match(value)
    return m.group(2) if m else value


def parse_rate(value: Any) -> Any:
    """A fraction from ``0.01``, ``"1%"`` or the original's ``"< 1%"``."""
    if isinstance(value, str):
        m = _RATE_RE.match(_upper_bound(value))
        if m is None:
            raise ValueError(f"cannot read {value!r} as an error rate (0.01, '1%' or '< 1%')")
        return float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    return value


def parse_bound_duration(value: Any) -> Any:
    """Seconds from ``0.5``, ``"500ms"`` or the original's ``"< 500ms"``."""
    if value is None:
        return None
    return parse_duration(_upper_bound(value) if isinstance(value, str) else value)


def parse_count(value: Any) -> Any:
    """A replica count (``2``) or a percentage of the desired count (``"25%"``), as Kubernetes
    writes ``maxSurge``; normalised to an int or a string ``"N%"``."""
    if isinstance(value, bool):
        raise ValueError("a count is a number of replicas or a percentage such as '25%'")
    if isinstance(value, int):
        if not 0 <= value <= 1000:
            raise ValueError("a count must be between 0 and 1000")
        return value
    m = _COUNT_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"cannot read {value!r} as a count (2) or a percentage ('25%')")
    n = int(m.group(1))
    if m.group(2):
        if n > 100:
            raise ValueError("a percentage must be between 0% and 100%")
        return f"{n}%"
    if n > 1000:
        raise ValueError("a count must be between 0 and 1000")
    return n


def deployment_id(model_id: str, version: str) -> str:
    """The id of one model version's deployment (also its Serve application's suffix)."""
    return f"{model_id}--{version}"


class Autoscaling(BaseModel):
    """Replica bounds for Serve's autoscaler; ``min_replicas: 0`` scales to zero when idle."""

    model_config = ConfigDict(extra="forbid")
    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(1, ge=1, le=1000)
    target_ongoing_requests: float = Field(2.0, gt=0, le=10_000, allow_inf_nan=False)
    downscale_delay: Duration = Field(600.0, description="idle time before a replica is removed")
    target_gpu_utilization: Optional[float] = Field(
        None,
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="percent: also add replicas while the GPUs' mean NVML utilisation is above it",
    )
    initial_replicas: Optional[int] = Field(
        None, ge=0, le=1000, description="replicas at deploy time (default: min_replicas, at least 1)"
    )

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self


class DeploymentSpec(BaseModel):
    """One version of one model, served by a Ray Serve application."""

    model_config = ConfigDict(extra="forbid")
    model_id: str = Field(..., min_length=1, max_length=63, pattern=NAME_RE)
    version: str = Field("v1", min_length=1, max_length=63, pattern=NAME_RE)
    engine: Literal["test", "cpu", "vllm"] = "test"
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="passed to the engine (e.g. model path)"
    )
    replicas: Optional[int] = Field(
        None,
        ge=1,
        le=1000,
        description=("fixed replica count (to scale to zero, use autoscaling with min_replicas 0)"),
    )
    autoscaling: Optional[Autoscaling] = None
    gpus_per_replica: float = Field(0.0, ge=0, le=64, allow_inf_nan=False)
    cpus_per_replica: float = Field(0.0, ge=0, le=256, allow_inf_nan=False)
    tensor_parallel: int = Field(1, ge=1, le=64, description="GPUs per replica in one STRICT_PACK bundle set")
    tenant_id: Optional[str] = Field(
        None, min_length=1, max_length=128, description="owner; none = shared by every tenant"
    )
    max_ongoing_requests: int = Field(8, ge=1, le=10_000)
    ready_deadline: Duration = Field(300.0, description="not healthy by then = stuck (restarted)")
    # how Serve picks a replica, and the response cache (docs/serving-routing.md)
    load_balancing: Optional[LoadBalancing] = None
    caching: Optional[Caching] = Field(None, description="default: orion.serving.caching")

    @field_validator("gpus_per_replica")
    @classmethod
    def _gpu_fraction_or_whole(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("gpus_per_replica must be a fraction below 1 or a whole number")
        return v

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self):
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("give either replicas or autoscaling, not both")
        if self.tensor_parallel > 1 and self.gpus_per_replica not in (0, self.tensor_parallel):
            raise ValueError("with tensor_parallel, gpus_per_replica must equal tensor_parallel")
        if self.tensor_parallel > 1 and self.engine != "vllm":
            raise ValueError("tensor_parallel > 1 needs engine vllm")
        return apply_warm_standby(self)

    @property
    def id(self) -> str:
        return deployment_id(self.model_id, self.version)

    def gpus(self) -> float:
        """GPUs one replica holds."""
        return float(self.tensor_parallel) if self.tensor_parallel > 1 else self.gpus_per_replica


class ScaleRequest(BaseModel):
    """``POST /admin/v1/models/{model_id}/scale``: a fixed count or new autoscaling bounds."""

    model_config = ConfigDict(extra="forbid")
    version: Optional[str] = Field(
        None, pattern=NAME_RE, max_length=63, description="default: every version of the model"
    )
    replicas: Optional[int] = Field(
        None,
        ge=1,
        le=1000,
        description=("fixed replica count (to scale to zero, use autoscaling with min_replicas 0)"),
    )
    autoscaling: Optional[Autoscaling] = None

    @model_validator(mode="after")
    def _one(self):
        if (self.replicas is None) == (self.autoscaling is None):
            raise ValueError("give exactly one of replicas or autoscaling")
        return self


Count = Annotated[Union[int, str], BeforeValidator(parse_count)]  # 2 or "25%"


class Step(BaseModel):
    """A canary step: the candidate's share of traffic, held for ``duration``."""

    model_config = ConfigDict(extra="forbid")
    weight: float = Field(..., ge=0, le=100, allow_inf_nan=False)
    duration: Duration = 0.0


class SuccessCriteria(BaseModel):
    """What a candidate must hold to advance; failing any of them rolls it back. The original's
    strings (``error_rate: "< 1%"``, ``latency_p95: "< 500ms"``) are read into the same numbers."""

    model_config = ConfigDict(extra="forbid")
    error_rate: Annotated[float, BeforeValidator(parse_rate)] = Field(
        0.05, ge=0, le=1, allow_inf_nan=False, description="a fraction, or '< 1%'"
    )
    latency_p95: Optional[Annotated[float, BeforeValidator(parse_bound_duration)]] = Field(
        None, description="seconds, '500ms' or '< 500ms'"
    )
    min_requests: int = Field(5, ge=1, le=1_000_000, description="no verdict on fewer requests than this")


class ABTest(BaseModel):
    """A/B: each user (or session) stays on one variant; the key is read from ``header``."""

    model_config = ConfigDict(extra="forbid")
    header: str = Field("x-user-id", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    variants: dict[str, float]


class Shadow(BaseModel):
    """Mirror ``percent`` of requests to ``version``; its answers are discarded, its metrics kept."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(..., pattern=NAME_RE, max_length=63)
    percent: float = Field(100.0, gt=0, le=100, allow_inf_nan=False)


class Rolling(BaseModel):
    """The original's ``rolling`` block: replace the stable version's replicas with the
    candidate's, at most ``maxSurge`` above the desired count and at most ``maxUnavailable``
    below it (counts or percentages of it); no new replica ready for ``progressDeadline`` rolls
    back. ``max_surge`` etc. are accepted too."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    max_surge: Count = Field(1, alias="maxSurge")
    max_unavailable: Count = Field(0, alias="maxUnavailable")
    progress_deadline: Duration = Field(600.0, alias="progressDeadline")

    @model_validator(mode="after")
    def _some_room(self):
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0 (nothing could move)")
        return self


class BlueGreen(BaseModel):
    """The original's ``blue_green`` block."""

    model_config = ConfigDict(extra="forbid")
    rollback_on_error: bool = True
    testing_period: Optional[Duration] = None


class Canary(BaseModel):
    """The original's ``canary`` block: ``steps`` with ``weight`` and ``duration``."""

    model_config = ConfigDict(extra="forbid")
    steps: list[Step] = Field(..., min_length=1, max_length=100)


class ReleaseSpec(BaseModel):
    """How a model's traffic is split over its versions (the original YAML's ``strategy`` block)."""

    model_config = ConfigDict(extra="forbid")
    model_id: str = Field(..., min_length=1, max_length=63, pattern=NAME_RE)
    strategy: Literal["weighted", "canary", "rolling", "blue-green", "ab"] = "weighted"
    stable: str = Field(
        ..., pattern=NAME_RE, max_length=63, description="the version that takes traffic back on rollback"
    )
    candidate: Optional[str] = Field(None, pattern=NAME_RE, max_length=63)
    weights: dict[str, float] = Field(default_factory=dict, description="weighted: version → share")
    steps: list[Step] = Field(default_factory=list, max_length=100)
    success_criteria: SuccessCriteria = Field(default_factory=SuccessCriteria)
    testing_period: Duration = Field(60.0, description="blue-green: how long rollback stays armed")
    ab: Optional[ABTest] = None
    shadow: Optional[Shadow] = None
    rolling: Optional[Rolling] = Field(None, description="rolling: replace replicas (maxSurge…)")
    blue_green: Optional[BlueGreen] = None
    canary: Optional[Canary] = None
    rollback_on_error: bool = Field(True, description="false: failing criteria hold the release")

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_spelling(cls, v: Any) -> Any:
        return "blue-green" if v == "blue_green" else v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        for version, w in v.items():
            if not re.match(NAME_RE, version) or not (0 <= w <= 100) or not math.isfinite(w):
                raise ValueError(f"weight of {version!r} must be between 0 and 100")
        return v

    @model_validator(mode="after")
    def _shape(self):
        s = self.strategy
        if self.canary is not None:
            if self.steps and self.steps != self.canary.steps:
                raise ValueError("give steps once: at the top or in canary.steps")
            self.steps = list(self.canary.steps)
        if self.blue_green is not None:
            if self.blue_green.testing_period is not None:
                self.testing_period = self.blue_green.testing_period
            self.rollback_on_error = self.rollback_on_error and self.blue_green.rollback_on_error
        if s == "rolling" and self.rolling is None and not self.steps:
            self.rolling = Rolling()  # the original's rolling without settings: one at a time
        if self.rolling is not None and s != "rolling":
            raise ValueError("the rolling block needs strategy rolling")
        if s == "weighted":
            if not self.weights:
                self.weights = {self.stable: 100.0}
            if sum(self.weights.values()) <= 0:
                raise ValueError("weights: at least one version needs a positive weight")
        if s in ("canary", "rolling", "blue-green") and not self.candidate:
            raise ValueError(f"strategy {s} needs a candidate version")
        if self.candidate is not None and self.candidate == self.stable:
            raise ValueError("candidate must differ from stable")
        if s == "canary" and not self.steps:
            raise ValueError(f"strategy {s} needs steps (weight, duration)")
        if s == "ab":
            if self.ab is None or not self.ab.variants:
                raise ValueError("strategy ab needs ab.variants")
            if sum(self.ab.variants.values()) <= 0:
                raise ValueError("ab.variants: at least one variant needs a positive weight")
        return self

    def replaces_replicas(self) -> bool:
        """A rolling release that replaces replicas (else rolling is a stepped traffic shift)."""
        return self.strategy == "rolling" and self.rolling is not None

    def versions(self) -> set[str]:
        """Every version this release may send traffic to (shadow included)."""
        out = {self.stable} | set(self.weights)
        if self.candidate:
            out.add(self.candidate)
        if self.ab:
            out |= set(self.ab.variants)
        if self.shadow:
            out.add(self.shadow.version)
        return out
