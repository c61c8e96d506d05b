"""``orion.yaml``: loaded and validated once at start; every section has a sensible default.

Only the sections the running code uses are modelled strictly; sections owned by later capabilities
(tenants, worker pools, autoscaling) are accepted as data so one file serves every part.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticValidationError

from .errors import ConfigError



def orion_home() -> Path:
    """Orion's per-user directory (credentials, store, logs); ``ORION_HOME`` overrides it."""
    return Path(os.environ.get("ORION_HOME", str(Path.home() / ".orion"))).expanduser()


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024)


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Optional[str] = None  # default: <orion home>/orion.db
    # NORMAL in WAL mode survives any process crash (SIGKILL included); FULL also survives power loss.
    synchronous: str = Field("normal", pattern="^(normal|full)$")

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


class OrionSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api: ApiConfig = Field(default_factory=ApiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    # Owned by later capabilities; kept as data until then.
    tenants: list[dict[str, Any]] = Field(default_factory=list)
    worker_pools: list[dict[str, Any]] = Field(default_factory=list)
    autoscaling: dict[str, Any] = Field(default_factory=dict)


class OrionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    orion: OrionSection = Field(default_factory=OrionSection)


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
    try:
        return OrionConfig.model_validate(raw)
    except PydanticValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                   for e in exc.errors()]
        raise ConfigError(f"invalid configuration in {path}", details) from None
