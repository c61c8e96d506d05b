"""The Serve application builder a RayService names in its ``serveConfigV2``.

Serve calls ``orion_api(args)`` with the application's ``args`` from the manifest; it makes sure the
scheduler actor exists (get-or-create: never a second one) and returns Orion's REST API application,
as ``orion up`` would deploy it. Only key hashes travel in the manifest, never keys.
"""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field


class OrionApiArgs(BaseModel):
    """``args:`` of the ``orion-api`` application in a RayService."""

    model_config = ConfigDict(extra="forbid")
    admin_key_sha256: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        min_length=1, description="hex SHA-256 of admin keys (64 lowercase hex digits)"
    )
    config_path: Optional[str] = Field(None, description="orion.yaml inside the image")
    max_body_bytes: Optional[int] = Field(None, ge=1024)


def orion_api(args: dict):
    """Serve application builder: the scheduler (get-or-create) and the API app over it."""
    a = OrionApiArgs.model_validate(args)
    from ..api.serve_app import build_api_app
    from ..config import load_config
    from ..scheduler.actor import deploy_scheduler

    config = load_config(a.config_path)
    config.orion.store.path = config.orion.store.resolved_path()
    deploy_scheduler(config)
    return build_api_app(
        a.admin_key_sha256,
        a.max_body_bytes or config.orion.api.max_body_bytes,
        rate_limit=config.orion.api.rate_limit.model_dump(mode="json"),
    )
