"""A tenant's serving limits (docs/serving-limits.md): requests per second and tokens per minute
on ``/v1`` and on inference workloads, for the tenant as a whole and, optionally, per model.

In the model layer (like ``config.py``, which embeds it in ``TenantConfig``); the limiter that
enforces it is pure policy (``policy/serving_limits.py``).
"""

from __future__ import annotations

import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# a model id as deployments spell it (serving_specs.NAME_RE; not imported: that module imports config)
_MODEL_RE = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$")


class ModelLimits(BaseModel):
    """Token buckets of one scope: ``requests_per_second`` on average with bursts of ``burst``
    (default: the rate rounded up, at least 1), and ``tokens_per_minute`` (prompt + completion;
    a bucket that holds a minute's tokens). A field left out is not limited."""

    model_config = ConfigDict(extra="forbid")
    requests_per_second: Optional[float] = Field(None, gt=0, le=1e6, allow_inf_nan=False)
    burst: Optional[int] = Field(None, ge=1, le=10**7, description="requests; default: the rate, at least 1")
    tokens_per_minute: Optional[int] = Field(None, ge=1, le=10**12)

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> "ModelLimits":
        if self.burst is not None and self.requests_per_second is None:
            raise ValueError("burst needs requests_per_second")
        return self

    def empty(self) -> bool:
        """Whether this scope limits nothing."""
        return self.requests_per_second is None and self.tokens_per_minute is None


class ServingLimits(ModelLimits):
    """``tenants[].serving_limits``: the tenant's limits, and ``models`` (model id → limits of
    this tenant on that model); a request must pass both."""

    models: dict[str, ModelLimits] = Field(default_factory=dict, max_length=1000)

    @field_validator("models")
    @classmethod
    def _model_ids(cls, v: dict[str, ModelLimits]) -> dict[str, ModelLimits]:
        for m in v:
            if len(m) > 63 or not _MODEL_RE.fullmatch(m):
                raise ValueError(f"models.{m}: not a model id (lowercase letters, digits, '-', '_', '.')")
        return v
