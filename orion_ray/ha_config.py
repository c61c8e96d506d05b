"""``orion.ha``: control-plane failover settings (docs/high-availability.md).

A model-layer module (pydantic only), imported by ``config.py``.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Where an operator may keep the Redis password instead of a file (read by `orion up` only).
REDIS_PASSWORD_ENV = "ORION_REDIS_PASSWORD"


class HaConfig(BaseModel):
    """GCS fault tolerance of the local head ``orion up`` starts, and the scheduler's lease.

    ``gcs_ft``: ``none`` (losing the GCS loses the cluster), ``redis`` (the GCS keeps its tables
    in Redis: ``redis_address``, or a ``redis-server`` that ``orion up`` starts on loopback when
    it is not given), ``rocksdb`` (Ray's embedded store, alpha, under ``rocksdb_path``)."""

    model_config = ConfigDict(extra="forbid")
    gcs_ft: Literal["none", "redis", "rocksdb"] = "none"
    redis_address: Optional[str] = Field(
        None, pattern=r"^(rediss?://)?[A-Za-z0-9_.\-]+:\d{1,5}$", description="host:port of an external Redis"
    )
    redis_password_file: Optional[str] = Field(
        None, min_length=1, description="a file holding the Redis password (else ORION_REDIS_PASSWORD)"
    )
    redis_server: str = Field(
        "redis-server", min_length=1, description="the binary `orion up` starts when no redis_address"
    )
    rocksdb_path: Optional[str] = Field(None, min_length=1, description="default: <orion home>/gcs-rocksdb")
    # the GCS's restart by Orion's supervisor (see gcs_supervisor.py): how often it looks
    supervise_interval_s: float = Field(0.5, gt=0, le=60)
    # the scheduler's single-writer lease (policy/lease.py)
    lease_ttl_s: float = Field(15.0, ge=1, le=3600, description="how long a lease binds without renewal")

    @model_validator(mode="after")
    def _fields_of_backend(self) -> "HaConfig":
        if self.gcs_ft != "redis" and (self.redis_address or self.redis_password_file):
            raise ValueError("redis_address and redis_password_file belong to gcs_ft: redis")
        if self.gcs_ft != "rocksdb" and self.rocksdb_path:
            raise ValueError("rocksdb_path belongs to gcs_ft: rocksdb")
        return self
