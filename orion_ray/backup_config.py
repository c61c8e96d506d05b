"""``orion.backup`` (docs/backups.md): scheduled snapshots with retention, an optional replica.

A model-layer module (pydantic only), so ``config.py`` and every layer can import it.
"""

from __future__ import annotations

import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string like ``90s``, ``15m``, ``1h``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if m is None:
            raise ValueError(f"{value!r} is not a duration (e.g. 30s, 15m, 1h, 1d)")
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not 0 < seconds <= 30 * 86400:
        raise ValueError(f"{value!r} must be more than 0 and at most 30 days")
    return seconds


class S3Location(BaseModel):
    """A bucket and prefix snapshots are copied to (through the usual AWS credential chain)."""

    model_config = ConfigDict(extra="forbid")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    prefix: str = Field("orion-backups", max_length=512, pattern=r"^[A-Za-z0-9_.\-/]*$")
    region: Optional[str] = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    endpoint_url: Optional[str] = Field(None, pattern=r"^https?://[^\s]+$", max_length=512)


class ReplicaConfig(BaseModel):
    """``backup.replica``: Litestream streams the store's WAL to ``url`` (``orion-ray[replica]``)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    url: Optional[str] = Field(None, max_length=1024, pattern=r"^(file|s3)://[^\s]+$")
    sync_interval: float = Field(1.0, description="seconds (or 500ms, 1s, 1m) between WAL syncs")
    endpoint_url: Optional[str] = Field(None, pattern=r"^https?://[^\s]+$", max_length=512)

    @field_validator("sync_interval", mode="before")
    @classmethod
    def _interval(cls, v: object) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _needs_url(self) -> "ReplicaConfig":
        if self.enabled and not self.url:
            raise ValueError("backup.replica.enabled needs url (file:///… or s3://bucket/path)")
        return self


class BackupConfig(BaseModel):
    """``orion.backup``: ``enabled`` turns the scheduled snapshots on (the ``orion-backup``
    actor); ``orion backup`` and ``POST /admin/v1/backups`` work either way."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    interval: float = Field(3600.0, description="seconds (or 15m, 1h) between snapshots")
    keep: int = Field(24, ge=1, le=100_000, description="the newest N snapshots are kept")
    dir: Optional[str] = Field(None, max_length=1024, description="default: <orion home>/backups")
    s3: Optional[S3Location] = None
    replica: ReplicaConfig = Field(default_factory=ReplicaConfig)

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, v: object) -> float:
        return parse_duration(v)
