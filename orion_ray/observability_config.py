"""``orion.tracing`` and ``orion.logging``: how Orion's processes trace and log (docs/tracing.md).

A model-layer module (pydantic only), so ``config.py`` and every process can read it.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TracingConfig(BaseModel):
    """OpenTelemetry spans for every request and every workload. Off by default: then every
    helper of ``orion_ray.tracing`` returns at once and no span is ever made."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    # none: spans are made (trace ids on statuses, in logs) but sent nowhere; console: JSON on
    # stdout (each process's log); file: one JSON object a line appended to ``path``; otlp: an
    # OTLP collector (Jaeger, Tempo) at ``endpoint`` (needs the ``orion-ray[tracing]`` extra)
    exporter: Literal["none", "console", "file", "otlp"] = "none"
    endpoint: Optional[str] = Field(None, max_length=2048)
    protocol: Literal["grpc", "http"] = "grpc"
    path: Optional[str] = Field(None, max_length=4096, description="the file exporter's JSON-lines file")
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    service_name: str = Field("orion", min_length=1, max_length=128)

    @model_validator(mode="after")
    def _exporter_needs(self) -> TracingConfig:
        if self.exporter == "file" and not self.path:
            raise ValueError("exporter 'file' needs path (the JSON-lines file spans are appended to)")
        if self.exporter == "otlp" and self.endpoint is not None and "://" not in self.endpoint:
            raise ValueError(f"endpoint {self.endpoint!r} is not a URL (e.g. http://127.0.0.1:4317)")
        return self


class LoggingConfig(BaseModel):
    """How Orion's own processes (scheduler actor, API replicas) format their log lines."""

    model_config = ConfigDict(extra="forbid")
    # json: one object a line with tenant_id, workload_id and, inside a span, trace_id/span_id
    format: Literal["text", "json"] = "text"
    # None: each process keeps its own level (the scheduler INFO, Serve's replicas theirs)
    level: Optional[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]] = None
