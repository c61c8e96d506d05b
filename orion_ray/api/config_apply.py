"""A regional Orion's config routes (issue 17, docs/regions-config.md): apply a control plane's
snapshot without a restart, and read which one runs. Admin only: a snapshot replaces every
tenant's quota and keys."""

from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import Conflict, ValidationError


class SnapshotBody(BaseModel):
    """A snapshot as ``GET /api/v1/config/snapshots/{version}`` serves it: the canonical ``text``,
    or the ``body`` itself; the hash is checked against either."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    text: Optional[str] = Field(None, max_length=8_000_000)
    body: Optional[dict[str, Any]] = None


def raise_refusal(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` itself when applied or unchanged; else a 422 (invalid: each field and reason)
    or a 409 (stale or forked version)."""
    outcome = result.get("outcome")
    if outcome in ("applied", "unchanged"):
        return result
    details = [{"field": r["field"], "problem": r["reason"]} for r in result.get("refused", [])]
    first = details[0]["field"] if details else "snapshot"
    if outcome == "stale":
        raise Conflict(f"config snapshot refused: {first}", details)
    raise ValidationError(f"config snapshot refused: {first}", details)


def install_config_apply(app: FastAPI, admin: Callable, backend_of: Callable[[Request], Any]) -> None:
    """The routes, on ``app`` behind the ``admin`` dependency."""

    @app.post("/admin/v1/config/apply", tags=["admin"])
    async def apply_config(body: SnapshotBody, request: Request, p=Depends(admin)):
        """Apply a config snapshot whole or not at all, without a restart (admin); 422 naming the
        field of a bad one, 409 for a stale or forked version."""
        if (body.text is None) == (body.body is None):
            raise ValidationError(
                "give the snapshot's text or its body",
                [{"field": "body", "problem": "text or body, one of them"}],
            )
        result = await backend_of(request).apply_config_snapshot(body.model_dump(exclude_none=True))
        if result.get("outcome") == "applied":
            request.app.state.keyring_at = 0.0  # tenants' keys may have changed: refresh now
        return raise_refusal(result)

    @app.get("/admin/v1/config/applied", tags=["admin"])
    async def applied_config(request: Request, p=Depends(admin)):
        """The applied config snapshot: version, hash, sections, pools (retiring ones too),
        templates and prices (admin)."""
        return await backend_of(request).applied_config()
