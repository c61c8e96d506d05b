"""Schedules, event triggers and events (issue 16; docs/pipelines-schedules.md):
``/api/orch/schedules``, ``/api/orch/triggers``, ``/api/orch/events``.

A tenant creates, reads and manages its own schedules and triggers only (another tenant's is a
404, as a workload is) and posts events that fire its own triggers only; an admin acts for any
tenant (``?tenant_id=``; without it a create is for ``default``, a read or change looks in every
tenant). Writes go to the scheduler, which hosts them; reads come from the store where this
replica has it, so they answer while the scheduler restarts.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response

from ..errors import Forbidden
from ..pipelines import schedules_store as st
from .auth import Principal

NAME = Path(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
TENANT = Query(None, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")


def install_schedules(
    app: FastAPI,
    principal: Callable[..., Any],
    backend_of: Callable[[Request], Any],
    access_of: Optional[Callable[[Request], Any]] = None,
) -> None:
    """Add the schedule, trigger and event routes."""

    def scope(p: Principal, tenant_id: Optional[str]) -> Optional[str]:
        if p.tenant_id is not None:
            if tenant_id not in (None, p.tenant_id):
                raise Forbidden(f"this key acts for tenant {p.tenant_id!r} only")
            return p.tenant_id
        return tenant_id

    def who(p: Principal) -> str:
        return "admin" if p.is_admin else str(p.tenant_id)

    async def call(
        request: Request, op: str, args: dict[str, Any], tenant: Optional[str], p: Principal
    ) -> Any:
        return await backend_of(request).schedule_call(op, args, tenant, who(p))

    for noun, kind, plural in (("schedule", "cron", "schedules"), ("trigger", "event", "triggers")):
        _install_kind(app, principal, call, access_of, scope, noun=noun, kind=kind, plural=plural)

    @app.post("/api/orch/schedules/{name}/backfill", status_code=202, tags=["pipelines"])
    async def schedule_backfill(
        request: Request,
        name: str = NAME,
        body: dict[str, Any] = Body(
            ..., examples=[{"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"}]
        ),
        tenant_id: Optional[str] = TENANT,
        p: Principal = Depends(principal),
    ):
        """Submit a run for every slot in ``[start, end]`` (ISO 8601, or epoch seconds; at most
        1,000 slots), each with the id its cron fire has: idempotent."""
        args = {"name": name, "start": body.get("start"), "end": body.get("end")}
        return await call(request, "schedule_backfill", args, scope(p, tenant_id), p)

    @app.post("/api/orch/events", status_code=202, tags=["pipelines"])
    async def post_event(
        request: Request,
        body: dict[str, Any] = Body(..., examples=[{"type": "dataset.ready", "labels": {"dataset": "xs"}}]),
        tenant_id: Optional[str] = TENANT,
        p: Principal = Depends(principal),
    ):
        """Post an event ``{type, labels}``: the tenant's triggers of that type whose
        ``match_labels`` all equal the event's labels fire now; ``{event_id, fired: [...]}``."""
        tenant = scope(p, tenant_id) or "default"
        return await call(request, "event_post", {"body": body}, tenant, p)


def _install_kind(
    app: FastAPI,
    principal: Callable[..., Any],
    call: Callable[..., Any],
    access_of: Optional[Callable[[Request], Any]],
    scope: Callable[[Principal, Optional[str]], Optional[str]],
    *,
    noun: str,
    kind: str,
    plural: str,
) -> None:
    base = f"/api/orch/{plural}"

    def reader(request: Request) -> Any:
        a = access_of(request) if access_of is not None else None
        return a.reader if a is not None else None

    @app.post(base, status_code=201, tags=["pipelines"], name=f"create_{noun}")
    async def create(
        request: Request,
        response: Response,
        body: dict[str, Any] = Body(...),
        tenant_id: Optional[str] = TENANT,
        p: Principal = Depends(principal),
    ):
        """Create (201; the same name with the same definition again: 200, the stored one; with
        another definition: 409)."""
        got = await call(request, f"{noun}_create", {"body": body}, scope(p, tenant_id) or "default", p)
        if not got.pop("created", True):
            response.status_code = 200
        return got

    @app.get(base, tags=["pipelines"], name=f"list_{plural}")
    async def listing(
        request: Request,
        tenant_id: Optional[str] = TENANT,
        limit: int = Query(100, ge=1, le=1000),
        cursor: Optional[int] = Query(None, ge=0, le=2**62),
        p: Principal = Depends(principal),
    ):
        """The caller's (an admin: every tenant's, or ``?tenant_id=``'s), oldest first, paged."""
        tenant = scope(p, tenant_id)
        r = reader(request)
        if r is not None:
            rows, nxt = st.listing(r, tenant, kind=kind, limit=limit, cursor=cursor)
            return {"items": [row.public() for row in rows], "next_cursor": nxt}
        return await call(request, f"{noun}_list", {"limit": limit, "cursor": cursor}, tenant, p)

    @app.get(base + "/{name}", tags=["pipelines"], name=f"get_{noun}")
    async def get(
        request: Request,
        name: str = NAME,
        tenant_id: Optional[str] = TENANT,
        p: Principal = Depends(principal),
    ):
        """One, with its state and counters."""
        tenant = scope(p, tenant_id)
        r = reader(request)
        if r is not None:
            return st.find(r, name, tenant, kind=kind).public()
        return await call(request, f"{noun}_get", {"name": name}, tenant, p)

    for verb in ("pause", "resume"):
        _install_verb(app, principal, call, scope, base=base, noun=noun, verb=verb)

    @app.delete(base + "/{name}", tags=["pipelines"], name=f"delete_{noun}")
    async def delete(
        request: Request,
        name: str = NAME,
        tenant_id: Optional[str] = TENANT,
        p: Principal = Depends(principal),
    ):
        """Delete (the runs it fired stay)."""
        return await call(request, f"{noun}_delete", {"name": name}, scope(p, tenant_id), p)


def _install_verb(
    app: FastAPI,
    principal: Callable[..., Any],
    call: Callable[..., Any],
    scope: Callable[[Principal, Optional[str]], Optional[str]],
    *,
    base: str,
    noun: str,
    verb: str,
) -> None:
    @app.post(base + "/{name}/" + verb, tags=["pipelines"], name=f"{verb}_{noun}")
    async def change(
        request: Request,
        name: str = NAME,
        tenant_id: Optional[str] = TENANT,
        p: Principal = Depends(principal),
    ):
        """Pause (no slot or event fires it) or resume (a schedule goes on from now: the paused
        slots are passed over); idempotent."""
        return await call(request, f"{noun}_{verb}", {"name": name}, scope(p, tenant_id), p)
