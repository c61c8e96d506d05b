"""``orion.yaml``: loaded and validated once at start; every section has a sensible default.

A model-layer module: it imports only other model modules (the worker pools are typed in
``worker_pools.py``; the placement-policy names it accepts are listed here, and the policy registry
is checked against them by a test), so every layer can read the config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from .backup_config import BackupConfig
from .config_original import has_original_blocks, translate_original
from .errors import ConfigError
from .ha_config import HaConfig
from .observability_config import LoggingConfig, TracingConfig
from .ray_env import looks_secret
from .region_join_config import RegionJoinConfig
from .serving_limits_config import ServingLimits
from .serving_options import ServingConfig
from .worker_pools import WorkerPool, check_scaling, parse_pools

# The placement policies ``scheduler.placement_policy`` accepts (``policy/placement/registry.py``
# implements them; tests/unit/test_config.py keeps the two lists equal).
PLACEMENT_POLICIES = ("random", "best_fit", "gpu_packing", "dot_product", "gpu_clustering", "fgd", "orion")


def orion_home() -> Path:
    """Orion's per-user directory (credentials, store, logs); ``ORION_HOME`` overrides it."""
    return Path(os.environ.get("ORION_HOME", str(Path.home() / ".orion"))).expanduser()


# The priority classes ``policy/admission.py`` knows, highest first.
PRIORITY_CLASSES = ("critical", "high", "normal", "low", "best_effort")
# What a configured tenant may submit at unless the operator grants more: the classes that preempt
# other tenants' ordinary work (critical, high) are the operator's to hand out.
DEFAULT_ALLOWED_PRIORITIES = ("normal", "low", "best_effort")


def _known_classes(v: list[str]) -> list[str]:
    bad = [c for c in v if c not in PRIORITY_CLASSES]
    if bad:
        raise ValueError(f"unknown priority classes {bad}; known: {', '.join(PRIORITY_CLASSES)}")
    return v


class RateLimit(BaseModel):
    """A token bucket: ``per_tenant_rps`` requests a second on average, bursts of ``burst``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    per_tenant_rps: float = Field(50.0, gt=0, le=1e6, allow_inf_nan=False)
    burst: int = Field(100, ge=1, le=10**7)


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # every call from the API to an actor gives up after this long: 503 with Retry-After
    actor_timeout_s: float = Field(10.0, gt=0)
    # per tenant, in each API replica's memory (N replicas admit up to N times the rate)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    # API replicas (Serve); each reads the store itself, the scheduler stays one actor
    replicas: int = Field(1, ge=1, le=16, description="API replicas (the original's control_plane.replicas)")


class RetentionConfig(BaseModel):
    """How long ended things are kept, in days (0 keeps them for ever). The scheduler deletes
    what is older a small batch at a time (``store/retention.py``); unfinished workloads and
    their history are never deleted."""

    model_config = ConfigDict(extra="forbid")
    # ended workloads, with their transitions and logs
    workloads_days: float = Field(30.0, ge=0)
    # logs of ended workloads (usually the largest rows), sooner than the workload itself
    logs_days: float = Field(7.0, ge=0)
    audit_days: float = Field(90.0, ge=0)
    scaling_events_days: float = Field(30.0, ge=0)
    # ended pipeline runs with their node runs and map items (a run's runtime_params.ttl_days wins)
    pipeline_runs_days: float = Field(30.0, ge=0)
    interval_s: float = Field(60.0, gt=0)  # how often the scheduler applies it
    batch: int = Field(500, ge=1, le=10_000)  # rows per delete transaction


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # sqlite: the embedded file on the head; postgres: a server that outlives the head
    # (docs/store-postgres.md), named by dsn, dsn_file or ORION_STORE_DSN (never logged)
    backend: Literal["sqlite", "postgres"] = "sqlite"
    dsn: Optional[str] = Field(None, repr=False)
    dsn_file: Optional[str] = None
    path: Optional[str] = None  # default: <orion home>/orion.db
    # NORMAL in WAL mode survives any process crash (SIGKILL included); FULL also survives power loss.
    synchronous: str = Field("normal", pattern="^(normal|full)$")
    # How long a write waits for another process's lock. The scheduler's and the autoscaler's
    # connections live on an event loop, where a wait freezes everything: a short one, and a
    # locked store is retried on a later tick. The API replica's writer thread is off its loop.
    loop_busy_timeout_ms: int = Field(50, ge=0, le=60_000)
    busy_timeout_ms: int = Field(2000, ge=0, le=60_000)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    def resolved_path(self) -> str:
        return str(Path(self.path).expanduser()) if self.path else str(orion_home() / "orion.db")


class SchedulerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_queue_size: int = Field(10_000, ge=1)
    cycle_interval_ms: int = Field(50, ge=1, le=60_000)
    placement_ready_timeout_s: float = Field(60.0, gt=0)
    retry_backoff_base_s: float = Field(1.0, ge=0)
    retry_backoff_max_s: float = Field(300.0, ge=0)
    max_result_bytes: int = Field(1_048_576, ge=64)
    max_log_bytes: int = Field(1_048_576, ge=1024)
    job_poll_interval_s: float = Field(0.5, gt=0)
    placement_policy: str = Field(
        "orion", description="placement engine policy (orion simulate's --policy names)"
    )
    # /health is 503 when no cycle completed for this long (the loop stalled), or when recovery
    # has not finished after this long (it retries forever; an operator should look)
    stall_after_s: float = Field(30.0, gt=0)
    recovery_stuck_after_s: float = Field(120.0, gt=0)
    # A single-bundle task (no shared GPU) runs pinned to the node the cycle chose, without a
    # placement group of its own: a group costs a GCS round trip, an asynchronous release and a
    # cold worker per task. Opt-in because its child tasks are then not captured by any group.
    pin_single_bundle_tasks: bool = Field(
        False, description="run single-bundle tasks pinned to their node, without a placement group"
    )

    @field_validator("placement_policy")
    @classmethod
    def _known_policy(cls, v: str) -> str:
        key = v.lower().replace("-", "_")
        if key not in PLACEMENT_POLICIES:
            raise ValueError(f"unknown placement policy {v!r}; known: {', '.join(PLACEMENT_POLICIES)}")
        return key


class PreemptionConfig(BaseModel):
    """When one workload may stop another (see ``policy/admission.py``)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    min_runtime_s: float = Field(
        0.0, ge=0, le=7 * 86400, description="a run younger than this is never preempted"
    )
    grace_period_s: float = Field(
        10.0, ge=0, le=3600, description="between telling a victim to stop and forcing it"
    )
    protected_classes: list[str] = Field(
        default_factory=lambda: ["critical", "high"], description="classes whose `preemptible: false` counts"
    )

    _classes = field_validator("protected_classes")(_known_classes)


class PolicyConfig(BaseModel):
    """The multi-tenant policy's settings; reloadable with the tenants (``orion reload``)."""

    model_config = ConfigDict(extra="forbid")
    preemption: PreemptionConfig = Field(default_factory=PreemptionConfig)
    fair_share_half_life_s: float = Field(300.0, ge=0, le=30 * 86400)
    reserve_after_s: float = Field(
        300.0,
        ge=0,
        le=30 * 86400,
        description="a blocked gang waits this long, then capacity is "
        "held for it (backfill with a reservation)",
    )
    refuse_infeasible_deadlines: bool = False
    reject_when_capacity_unavailable: bool = Field(
        False,
        description="answer 429 (capacity_unavailable) to a workload that does not fit now "
        "when the pool it needs has had a failed launch recently, instead of "
        "queueing it",
    )
    launch_failure_window_s: float = Field(
        600.0, gt=0, le=86400, description="how long a failed launch counts as recent"
    )
    default_runtime_s: float = Field(
        3600.0,
        gt=0,
        le=30 * 86400,
        description="expected run time when neither timeout_s nor history gives one (for estimates)",
    )
    default_tenant_max_queued: Optional[int] = Field(
        None,
        ge=1,
        description="unfinished workloads of a configured tenant without its own max_queued "
        "before 429 (default: half of scheduler.max_queue_size), so one tenant cannot fill the queue",
    )

    def tenant_queue_limit(self, tenant: Optional[TenantConfig], max_queue_size: int) -> Optional[int]:
        """The unfinished workloads ``tenant`` may have: its own ``max_queued``, else the
        default cap; None (only the global limit) for a tenant that is not configured (the
        admin's ``default`` tenant, or a single-user Orion without tenants)."""
        if tenant is None:
            return None
        if tenant.max_queued is not None:
            return tenant.max_queued
        if self.default_tenant_max_queued is not None:
            return self.default_tenant_max_queued
        return max(1, max_queue_size // 2)


class BudgetConfig(BaseModel):
    """A tenant's GPU-hour budgets (docs/cost.md): admission waits past them."""

    model_config = ConfigDict(extra="forbid")
    gpu_hours_per_day: Optional[float] = Field(None, ge=0, le=1e9, allow_inf_nan=False)
    per_month: Optional[float] = Field(
        None, ge=0, le=1e9, allow_inf_nan=False, description="GPU-hours per month"
    )


class TenantConfig(BaseModel):
    """One tenant. Its keys come from environment variables or as SHA-256 hashes, never in clear."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    weight: float = Field(1.0, gt=0, le=1e6)
    quota: dict[str, float] = Field(default_factory=dict)
    borrowing_limit: dict[str, float] = Field(default_factory=dict)
    lending_limit: dict[str, float] = Field(default_factory=dict)
    cohort: Optional[str] = None
    max_queued: Optional[int] = Field(
        None, ge=1, description="unfinished workloads before 429 (default: policy.default_tenant_max_queued)"
    )
    allowed_priorities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_PRIORITIES),
        description="priority classes this tenant may submit at (the admin may submit at any)",
    )
    may_disable_preemption: bool = Field(
        False, description="whether this tenant may submit `preemptible: false` (in a protected class)"
    )
    rate_limit: Optional[RateLimit] = Field(
        None, description="this tenant's API rate (default: api.rate_limit)"
    )
    budget: Optional[BudgetConfig] = None
    # requests per second and tokens per minute on /v1 and inference workloads (docs/serving-limits.md)
    serving_limits: Optional[ServingLimits] = None
    api_key_env: Optional[str] = Field(None, description="env var of `orion up` holding a key")
    api_key_sha256: list[str] = Field(
        default_factory=list, description="hex SHA-256 of keys (never the keys)"
    )
    allowed_function_modules: list[str] = Field(
        default_factory=list,
        description="modules (and their submodules) this tenant's tasks may name although the "
        "denylist refuses them (orion_ray.trust.DENIED_MODULES), e.g. ['os.path']",
    )

    @field_validator("allowed_function_modules")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        for m in v:
            if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", m):
                raise ValueError(f"{m!r} is not a module name (dotted identifiers)")
        return v

    _priorities = field_validator("allowed_priorities")(_known_classes)

    @field_validator("id")
    @classmethod
    def _not_admin(cls, v: str) -> str:
        # "admin" is who the operator is in the audit trail and in the submission checks (the
        # admin skips the priority grants): a tenant of that name would pass for the operator
        if v.lower() == "admin":
            raise ValueError("'admin' is reserved for the operator; choose another tenant id")
        return v

    @field_validator("api_key_sha256")
    @classmethod
    def _hashes(cls, v: list[str]) -> list[str]:
        for h in v:
            if not re.fullmatch(r"[0-9a-f]{64}", h):
                raise ValueError("api_key_sha256 entries must be 64 lowercase hex digits")
        return v

    @field_validator("quota", "borrowing_limit", "lending_limit")
    @classmethod
    def _amounts(cls, v: dict[str, float]) -> dict[str, float]:
        for k, amount in v.items():
            if amount < 0:
                raise ValueError(f"{k} must not be negative")
        return v


class CapacityConfig(BaseModel):
    """Where Orion manages capacity itself (reservations, the EC2 provider's status): ``ec2``
    mounts ``/admin/v1/capacity/...`` on the API. Credentials come from the usual AWS chain."""

    model_config = ConfigDict(extra="forbid")
    provider: str = Field("none", pattern="^(none|ec2)$")
    region: Optional[str] = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    endpoint_url: Optional[str] = Field(
        None, description="another EC2 endpoint (e.g. a moto server on loopback in tests)"
    )
    cluster: str = Field("orion", min_length=1, max_length=64)


# -- orion.pipelines (issue 16: data between nodes, docs/pipelines-data.md) ---------------------------
# one node's outputs inline in the store (the engine's ``MAX_OUTPUT_CHARS``); an inline cap above it
# would let a value through that the engine refuses
INLINE_CEILING = 65_536


class ArtifactsConfig(BaseModel):
    """The artifact store of large node outputs."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["local", "s3"] = "local"
    root: Optional[str] = Field(None, min_length=1, max_length=1024)
    bucket: Optional[str] = Field(None, pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    prefix: str = Field("", max_length=512, pattern=r"^[A-Za-z0-9_.\-/]*$")
    region: Optional[str] = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    endpoint_url: Optional[str] = Field(None, pattern=r"^https?://[^\s]+$", max_length=512)
    inline_max_bytes: int = Field(16_384, ge=0, le=INLINE_CEILING)

    @model_validator(mode="after")
    def _backend_fields(self) -> "ArtifactsConfig":
        if self.backend == "s3" and not self.bucket:
            raise ValueError("backend s3 needs bucket")
        if self.backend == "local" and (self.bucket or self.prefix or self.endpoint_url):
            raise ValueError("bucket, prefix and endpoint_url belong to backend s3")
        if self.backend == "s3" and self.root:
            raise ValueError("root belongs to backend local")
        return self


class PipelinesConfig(BaseModel):
    """``orion.pipelines``."""

    model_config = ConfigDict(extra="forbid")
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    # Whether the cluster runs containers (Ray's ``image_uri`` runtime env needs podman on every
    # node): ``auto`` looks for podman on the scheduler's host; say true or false for a cluster
    # whose workers differ from the head.
    container_runtime: Union[bool, Literal["auto"]] = "auto"


class CostConfig(BaseModel):
    """``orion.cost``: the price table (``cost.prices``: PriceTable.from_config) and the default
    idle-cost sharing of reports."""

    model_config = ConfigDict(extra="forbid")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    share_idle: Literal["none", "weighted", "even"] = "none"
    prices: dict[str, Any] = Field(default_factory=dict)
    # the original's cost_tracking block (config_original.py maps it here): ``enabled: false``
    # stops the scheduler recording capacity and prices (reports then price batch work only);
    # the others are the defaults of reports and the chargeback export (docs/cost.md)
    enabled: bool = True
    granularity: Literal["hourly", "daily"] = "daily"
    metrics: list[str] = Field(default_factory=list, max_length=16)
    billing_period: Literal["monthly"] = "monthly"
    export_to: Optional[str] = Field(None, max_length=4096)

    @field_validator("prices")
    @classmethod
    def _prices(cls, v: dict[str, Any]) -> dict[str, Any]:
        # the shape cost.prices.PriceTable.from_config reads (the model layer imports no cost code)
        for key, value in v.items():
            if key == "tokens":  # per model, per 1,000 tokens (docs/serving-limits.md)
                for model, price in (value or {}).items() if isinstance(value, dict) else [("", value)]:
                    if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 <= price < 1e6:
                        raise ValueError(
                            f"cost.prices.tokens.{model}: {price!r} is not a price per 1,000 tokens "
                            "(a number in [0, 1e6))"
                        )
                continue
            if key not in ("gpu", "cpu", "memory_gib", "instances"):
                raise ValueError(
                    f"cost.prices.{key}: unknown key (one of cpu, gpu, instances, memory_gib, tokens)"
                )
            nested = key in ("gpu", "instances")
            for name, rates in (value or {}).items() if nested else [("", value)]:
                where = f"cost.prices.{key}" + (f".{name}" if nested else "")
                if not isinstance(rates, dict):
                    raise ValueError(
                        f"{where}: expected a mapping of market to price, e.g. {{on_demand: 2.0}}"
                    )
                for market, price in rates.items():
                    if market not in ("on_demand", "spot", "reserved"):
                        raise ValueError(
                            f"{where}.{market}: unknown market (one of on_demand, spot, reserved)"
                        )
                    if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 <= price < 1e6:
                        raise ValueError(f"{where}.{market}: {price!r} is not a price (a number in [0, 1e6))")
        return v


class OrionSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api: ApiConfig = Field(default_factory=ApiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    tenants: list[TenantConfig] = Field(default_factory=list)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    worker_pools: list[WorkerPool] = Field(default_factory=list)
    # the pools' scaling defaults (keys of ``worker_pools.ScalingParams``, plus ``interval_s``)
    autoscaling: dict[str, Any] = Field(default_factory=dict)
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    # pipelines' artifact store and container runtime (issue 16: docs/pipelines-data.md)
    pipelines: PipelinesConfig = Field(default_factory=PipelinesConfig)
    # GCS fault tolerance of the local head and the scheduler's lease (docs/high-availability.md)
    ha: HaConfig = Field(default_factory=HaConfig)
    # snapshots, retention and the continuous replica (issue 18: docs/backups.md)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    # prices, currency and idle sharing of cost reports (issue 18: docs/cost.md)
    cost: CostConfig = Field(default_factory=CostConfig)
    # names of environment variables a local Ray head started by `orion up` may inherit, beyond
    # the fixed allowlist of ``ray_env.py`` (never a credential: tenant code can read them all)
    ray_pass_env: list[str] = Field(default_factory=list)
    # spans and log format of Orion's own processes (issue 18: docs/tracing.md)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    # joining a control plane as one of its regions (issue 17: docs/regions.md)
    region: Optional[RegionJoinConfig] = None
    # serving defaults: the response cache of models without their own block (docs/serving-routing.md)
    serving: ServingConfig = Field(default_factory=ServingConfig)

    _scaling = field_validator("autoscaling")(check_scaling)

    @field_validator("autoscaling")
    @classmethod
    def _interval(cls, v: dict[str, Any]) -> dict[str, Any]:
        every = v.get("interval_s")
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 < every <= 3600
        ):
            raise ValueError(f"interval_s: {every!r} is not a number of seconds in (0, 3600]")
        return v

    @field_validator("ray_pass_env")
    @classmethod
    def _no_secret_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if looks_secret(name):
                raise ValueError(
                    f"{name!r} looks like a credential: every Ray worker (so every tenant's code) "
                    "could read it; give Orion's processes credentials another way (docs/operations.md)"
                )
        return v

    @field_validator("worker_pools")
    @classmethod
    def _unique_pools(cls, v: list[WorkerPool]) -> list[WorkerPool]:
        first: dict[str, int] = {}
        for i, p in enumerate(v):
            if p.name in first:
                raise ValueError(f"pool {p.name!r} is listed twice (entries {first[p.name]} and {i})")
            first[p.name] = i
        return v

    @field_validator("tenants")
    @classmethod
    def _unique(cls, v: list[TenantConfig]) -> list[TenantConfig]:
        ids = [t.id for t in v]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate tenant ids: {sorted(dup)}")
        return v


class OrionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    orion: OrionSection = Field(default_factory=OrionSection)


def tenant_key_hashes(tenants: list[TenantConfig], environ=None) -> dict[str, str]:
    """``{sha256: tenant_id}`` for every tenant key: hashes from the file, and keys read from the
    environment variables the file names (hashed here; the keys themselves go nowhere)."""
    import hashlib

    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for t in tenants:
        for h in t.api_key_sha256:
            out[h] = t.id
        if t.api_key_env:
            key = environ.get(t.api_key_env)
            if not key:
                raise ConfigError(
                    f"tenant {t.id!r}: environment variable {t.api_key_env} is not set",
                    [
                        {
                            "field": f"orion.tenants.{t.id}.api_key_env",
                            "problem": "not set in this environment",
                        }
                    ],
                )
            out[hashlib.sha256(key.encode()).hexdigest()] = t.id
    return out


def load_config(path: Optional[str] = None) -> OrionConfig:
    """Read and validate ``orion.yaml``; no path (and no ./orion.yaml) gives the defaults."""
    if path is None and Path("orion.yaml").exists():
        path = "orion.yaml"
    if path is None:
        return OrionConfig()
    try:
        raw = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if has_original_blocks(raw):  # the original design's blocks act through Orion's settings
        try:
            raw, _ = translate_original(raw)
        except ConfigError as exc:
            raise ConfigError(f"invalid configuration in {path}: {exc.message}", exc.details) from None
    try:
        config = OrionConfig.model_validate(raw)
    except PydanticValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        raise ConfigError(f"invalid configuration in {path}", details) from None
    if config.orion.capacity.provider == "ec2":  # the pools must then be launchable on EC2
        try:
            parse_pools(config.orion.worker_pools)
        except ConfigError as exc:
            raise ConfigError(f"invalid configuration in {path}: {exc.message}", exc.details) from None
    return config
