"""Pydantic types shared by every layer: the workload spec, its resources, and the stored record.

REST bodies, stored rows and SDK objects are these same types. Unknown fields are refused, not
ignored, so a typo never silently changes what runs.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .input_limits import (
    MAX_LABEL_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS,
    MAX_LABELS,
    LimitError,
    check_value,
)
from .status import Status
from .tracing import trace_id, traceparent

MAX_CPU_PER_BUNDLE = 4096
MAX_GPU_PER_BUNDLE = 256
MAX_MEMORY_BYTES = 64 * 2**40  # 64 TiB: anything larger is a typo
MAX_BUNDLES = 1024


class Priority(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"
    BEST_EFFORT = "best_effort"

    @property
    def rank(self) -> int:
        """0 for the highest class."""
        return _PRIORITY_ORDER.index(self)


_PRIORITY_ORDER = [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW, Priority.BEST_EFFORT]


class Placement(str, Enum):
    PACK = "pack"
    SPREAD = "spread"
    STRICT_PACK = "strict_pack"
    STRICT_SPREAD = "strict_spread"

    @property
    def ray_strategy(self) -> str:
        return self.value.upper()


_MEM_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: Union[int, float, str]) -> int:
    """Bytes from ``8Gi``, ``512M``, ``1.5GB`` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("memory must be bytes or a size such as '8Gi'")
    if isinstance(value, int):  # exact: float() of a huge integer overflows (a 500 before)
        if value < 0:
            raise ValueError("memory must be a non-negative size")
        if value > MAX_MEMORY_BYTES:
            raise ValueError("memory is larger than any node (over 64 TiB)")
        return value
    if isinstance(value, float):
        number, unit = value, ""
    else:
        m = _MEM_RE.match(value)
        if not m or m.group(2).lower() not in _MEM_UNITS:
            raise ValueError(f"cannot read {value!r} as a memory size (e.g. '8Gi', '512M', bytes)")
        number, unit = float(m.group(1)), m.group(2).lower()
    if not math.isfinite(number) or number < 0:
        raise ValueError("memory must be a non-negative size")
    if number * _MEM_UNITS[unit] > MAX_MEMORY_BYTES:  # float: '1e999' or 99…9 digits is inf
        raise ValueError("memory is larger than any node (over 64 TiB)")
    return int(number * _MEM_UNITS[unit])


class Resources(BaseModel):
    """One bundle: what one gang member needs on one node."""

    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(1.0, ge=0, le=MAX_CPU_PER_BUNDLE, allow_inf_nan=False)
    gpu: float = Field(
        0.0,
        ge=0,
        le=MAX_GPU_PER_BUNDLE,
        allow_inf_nan=False,
        description="a fraction below 1 (a shared GPU) or a whole number",
    )
    memory: Optional[Union[int, str]] = Field(None, description="bytes, or a size such as '8Gi'")
    gpu_type: Optional[str] = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    custom: dict[str, float] = Field(default_factory=dict)

    @field_validator("gpu")
    @classmethod
    def _gpu_fraction_or_whole(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("gpu must be a fraction below 1 or a whole number")
        return v

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_not_bool(cls, v: Any) -> Any:  # pydantic would otherwise read ``true`` as 1 byte
        if isinstance(v, bool):
            raise ValueError("memory must be bytes or a size such as '8Gi'")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: Any) -> Optional[int]:
        return None if v is None else parse_memory(v)

    @field_validator("custom")
    @classmethod
    def _custom(cls, v: dict[str, float]) -> dict[str, float]:
        for name, amount in v.items():
            if not re.match(r"^[A-Za-z0-9_.\-:/]{1,128}$", name) or name in ("CPU", "GPU", "memory"):
                raise ValueError(f"invalid custom resource name {name!r}")
            if not math.isfinite(amount) or amount < 0 or amount > 1e6:
                raise ValueError(f"custom resource {name!r} must be between 0 and 1e6")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> Resources:
        if not self.ray_bundle():
            raise ValueError("a bundle must ask for some resource (cpu, gpu, memory or custom)")
        return self

    def ray_bundle(self) -> dict[str, float]:
        """The Ray placement-group bundle (Ray's resource names; zero amounts left out)."""
        out: dict[str, float] = {}
        if self.cpu:
            out["CPU"] = float(self.cpu)
        if self.gpu:
            out["GPU"] = float(self.gpu)
        if self.memory:
            out["memory"] = float(self.memory)
        out.update({k: float(v) for k, v in self.custom.items() if v})
        return out


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: Optional[str] = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    request_id: Optional[str] = Field(None, min_length=1, max_length=256)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        for k, val in v.items():
            if not 1 <= len(k) <= MAX_LABEL_KEY_CHARS:
                raise ValueError(f"a label key must be 1 to {MAX_LABEL_KEY_CHARS} characters")
            if len(val) > MAX_LABEL_VALUE_CHARS:
                raise ValueError(f"label {k[:64]!r} is longer than {MAX_LABEL_VALUE_CHARS} characters")
        return v


WorkloadType = Literal["task", "job", "inference"]


class WorkloadSpec(BaseModel):
    """What a user submits. ``resources`` is one bundle; ``bundles`` is a gang."""

    model_config = ConfigDict(extra="forbid")

    workload_type: WorkloadType
    function: Optional[str] = Field(
        None,
        max_length=512,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
        description="an importable callable, 'package.module:function'",
    )
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    entrypoint: Optional[str] = Field(None, min_length=1, max_length=65536)
    runtime_env: Optional[dict[str, Any]] = None
    priority: Priority = Priority.NORMAL
    resources: Optional[Resources] = None
    bundles: Optional[list[Resources]] = Field(None, min_length=1, max_length=MAX_BUNDLES)
    placement: Placement = Placement.PACK
    deadline: Optional[datetime] = None
    timeout_s: Optional[float] = Field(None, gt=0, le=30 * 86400, allow_inf_nan=False)
    max_retries: int = Field(0, ge=0, le=100)
    preemptible: bool = True
    qos: Literal["standard", "spot_ok"] = Field(
        "standard", description="spot_ok: tolerates interruption, placed on spot first (docs/cost.md)"
    )
    metadata: Metadata = Field(default_factory=Metadata)
    model_id: Optional[str] = Field(
        None,
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$",
        description="inference: the served model to ask",
    )
    input: Any = Field(None, description="inference: a prompt, {'text'|'prompt'|'messages', …}")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any, info: ValidationInfo) -> Any:
        """Refuse unpaired UTF-16 surrogates (JSON ``"\\ud800"``) in free-form fields such as
        ``args``: they can be parsed but never stored, so they are a 422 here, not a 500 later.
        A spec read back from the store was stored, so it cannot hold one: not checked again
        (this was most of the cost of every stored read)."""
        if isinstance(data, dict) and not (info.context or {}).get("stored"):
            _check_free_form(data)
            for name, value in data.items():
                try:
                    json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(
                        f"{name!a} holds text that is not valid Unicode (an unpaired surrogate)"
                    ) from None
        return data

    @model_validator(mode="after")
    def _kind_fields(self, info: ValidationInfo) -> WorkloadSpec:
        if self.workload_type == "task":
            if not self.function:
                raise ValueError("a task needs 'function' ('package.module:function')")
            if self.entrypoint is not None:
                raise ValueError("'entrypoint' belongs to job workloads, not tasks")
        elif self.workload_type == "job":
            if not self.entrypoint:
                raise ValueError("a job needs 'entrypoint' (a shell command)")
            if self.function is not None or self.args or self.kwargs:
                raise ValueError("'function', 'args' and 'kwargs' belong to task workloads")
        elif self.workload_type == "inference":
            if not self.model_id or self.input is None:
                raise ValueError("an inference needs 'model_id' and 'input'")
            if self.function is not None or self.entrypoint is not None:
                raise ValueError("'function' and 'entrypoint' do not belong to inference")
        if self.workload_type != "inference" and (self.model_id or self.input is not None):
            raise ValueError("'model_id' and 'input' belong to inference workloads")
        if self.resources is not None and self.bundles is not None:
            raise ValueError("give either 'resources' (one bundle) or 'bundles' (a gang), not both")
        # A stored spec was valid when accepted; its deadline may have passed since.
        if self.deadline is not None and not (info.context or {}).get("stored"):
            deadline = self.deadline if self.deadline.tzinfo else self.deadline.replace(tzinfo=timezone.utc)
            if deadline <= datetime.now(timezone.utc):
                raise ValueError("deadline is in the past")
        return self

    @property
    def runs_as_task(self) -> bool:
        """Task and inference workloads run as a Ray task in bundle 0; jobs through the Jobs API."""
        return self.workload_type != "job"

    def gang(self) -> list[Resources]:
        """The bundles this workload reserves (a single default bundle when none were given)."""
        if self.bundles:
            return list(self.bundles)
        return [self.resources or Resources()]

    def fingerprint(self) -> str:
        """A canonical form used to tell a repeated ``request_id`` from a conflicting one."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


# The fields a tenant fills freely: walked for depth, size, numbers and strings (input_limits.py).
FREE_FORM_FIELDS = ("args", "kwargs", "runtime_env", "input")


def _check_free_form(data: dict[str, Any]) -> None:
    """A 422 naming the path (e.g. ``args.0.x``) for a free-form value over a bound: such a value
    could be accepted but not read back (listing, recovery), or would be silently changed (NaN
    stored as null)."""
    for name in FREE_FORM_FIELDS:
        if name in data:
            try:
                check_value(data[name], name)
            except LimitError as exc:
                raise PydanticCustomError(
                    "input_limit", "{path}: {reason}", {"path": exc.path, "reason": exc.reason}
                ) from None


class Workload(BaseModel):
    """A workload as Orion keeps it: the spec plus its lifecycle."""

    workload_id: str
    tenant_id: str
    spec: WorkloadSpec
    status: Status
    attempt: int = 1
    seq: int = 0
    submitted_at: float
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    updated_at: Optional[float] = None
    not_before: float = 0.0
    requeues: int = 0
    worker_id: Optional[str] = None
    placement: Optional[list[dict[str, Any]]] = None
    result: Any = None
    error: Optional[str] = None
    reason: Optional[str] = None
    # the W3C context it was submitted under: later spans (admission, placement, run), made in
    # other processes or after a restart, join that trace (orion_ray/tracing.py)
    traceparent: Optional[str] = None

    @property
    def priority(self) -> Priority:
        return self.spec.priority

    def public(self, history: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
        """The REST/SDK view of a workload (see ../shared/API.md)."""
        execution_ms = None
        if self.started_at is not None:
            end = self.finished_at if self.finished_at is not None else None
            if end is not None:
                execution_ms = int(round((end - self.started_at) * 1000))
        out = {
            "workload_id": self.workload_id,
            "status": self.status.value,
            "workload_type": self.spec.workload_type,
            "tenant_id": self.tenant_id,
            "priority": self.spec.priority.value,
            "attempt": self.attempt,
            "submitted_at": iso(self.submitted_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "execution_time_ms": execution_ms,
            "worker_id": self.worker_id,
            "placement": self.placement,
            "result": self.result,
            "error": self.error,
            "reason": self.reason,
            "request_id": self.spec.metadata.request_id,
            "labels": self.spec.metadata.labels,
            "trace_id": trace_id(self.traceparent),
        }
        if history is not None:
            out["history"] = history
        return out


def iso(ts: Optional[float]) -> Optional[str]:
    """ISO-8601 UTC text of a POSIX timestamp (``None`` stays ``None``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def new_workload(spec: WorkloadSpec, tenant_id: str, now: float) -> Workload:
    """A queued workload with a fresh id, as every intake makes one (REST, the scheduler's ingest,
    a pipeline's node); its ``seq`` comes from the store's insert."""
    return Workload(
        workload_id=f"wl-{uuid.uuid4().hex[:16]}",
        tenant_id=tenant_id,
        spec=spec,
        status=Status.QUEUED,
        submitted_at=now,
        updated_at=now,
        seq=2**62,
        traceparent=traceparent(),  # the submitting span's (a pipeline node's), when tracing is on
    )
