"""The control plane's workload routes and a region's join (docs/regions.md).

``POST /api/v1/workloads`` takes the ordinary body plus optional ``region`` (a pin),
``region_selector`` (labels every region must match) and ``regions`` (a preference, best first);
it stores the run, reserves a region and global quota and answers 202 with the run id — or 429
with ``Retry-After`` when no region can take it now (backpressure: nothing is queued silently).
The dispatcher sends it to the region. The listing shows every region's runs, those submitted
straight to a region included, each with ``region`` and ``generation``.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Optional

import httpx
from fastapi import Body, Depends, FastAPI, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from ..errors import Forbidden, NotFound, QueueFull, ValidationError
from ..models import Resources, WorkloadSpec
from ..policy.regions import RunRequest
from .dispatcher import fail_run
from .runs import CpRun, Endpoint, RunBook
from .service import ControlPlane

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
PLACEMENT = ("region", "region_selector", "regions")
# the control plane's words for its assignment states, in Orion's status vocabulary
_SHOWN = {"dispatched": "submitted"}


class JoinBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=512, pattern=r"^https?://")
    dispatch_key: str = Field(min_length=16, max_length=256)


def _placement(body: dict[str, Any]) -> tuple[dict[str, Any], RunRequest]:
    """The ordinary spec (validated as a region would) and the run's placement request."""
    extra = {k: body.pop(k) for k in PLACEMENT if k in body}
    try:
        spec = WorkloadSpec.model_validate(body)
    except PydanticError as exc:
        details = [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()]
        raise ValidationError("invalid workload", details) from exc
    region = extra.get("region")
    selector = extra.get("region_selector") or {}
    prefs = extra.get("regions") or []
    if region is not None and not (isinstance(region, str) and len(region) <= 63):
        raise ValidationError("region: a region name", [{"field": "region", "problem": "a name"}])
    if not isinstance(selector, dict) or not all(isinstance(v, str) for v in selector.values()):
        raise ValidationError(
            "region_selector: labels", [{"field": "region_selector", "problem": "an object of strings"}]
        )
    if not isinstance(prefs, list) or not all(isinstance(v, str) for v in prefs):
        raise ValidationError("regions: a list of names", [{"field": "regions", "problem": "a list"}])
    bundles = spec.bundles or [spec.resources or Resources()]  # a gang asks for all its bundles
    run = RunRequest(
        run_id="",
        tenant_id="",
        gpus=float(sum(b.gpu or 0 for b in bundles)),
        gpu_type=next((b.gpu_type for b in bundles if b.gpu_type), None),
        cpus=float(sum(b.cpu or 0 for b in bundles)),
        region=region,
        region_selector=selector,
        preference=tuple(prefs),
    )
    return spec.model_dump(mode="json", exclude_none=True), run


def run_json(plane: ControlPlane, book: RunBook, run: CpRun) -> dict[str, Any]:
    """A control-plane run as listed: its current region and generation, and the status there."""
    a = plane.assignments.get(run.run_id)
    copy = None
    if a is not None:
        copy = next((c for c in book.copies(run.run_id) if c["generation"] == a.generation), None)
    status = _SHOWN.get(a.status, a.status) if a is not None else "submitted"
    return {
        "workload_id": run.run_id,
        "tenant_id": run.tenant_id,
        "origin": "control_plane",
        "region": a.region if a is not None else None,
        "generation": a.generation if a is not None else None,
        "status": status,
        "reason": run.reason or (copy or {}).get("reason"),
        "region_workload_id": (copy or {}).get("region_workload_id"),
        "submitted_at": run.submitted_at,
        "name": run.spec.get("name"),
    }


def direct_json(c: dict[str, Any]) -> dict[str, Any]:
    """A workload submitted straight to a region, as the control plane lists it."""
    return {
        "workload_id": c["region_workload_id"],
        "tenant_id": c["tenant_id"],
        "origin": "region",
        "region": c["region"],
        "generation": None,
        "status": c["status"],
        "reason": c["reason"],
        "region_workload_id": c["region_workload_id"],
        "submitted_at": None,
    }


def install_workloads(
    app: FastAPI,
    plane: ControlPlane,
    book: RunBook,
    lock: threading.RLock,
    *,
    principal: Callable[..., Any],
    region_caller: Callable[..., str],
    wake: Callable[[], None],
) -> None:
    """The workload routes and ``POST /api/v1/regions/{name}/join`` on ``app``."""

    @app.post("/api/v1/regions/{name}/join", tags=["regions"])
    def join(body: JoinBody, name: str = Depends(region_caller)) -> dict[str, Any]:
        """A region says where it takes dispatches (its API URL) and with which key."""
        with lock:
            plane.add_region(name)
            book.set_endpoint(name, Endpoint(body.url, body.dispatch_key))
        return {"region": name, "joined": True}

    @app.post("/api/v1/workloads", status_code=202, tags=["workloads"])
    def submit(body: dict[str, Any] = Body(...), p: Any = Depends(principal)) -> dict[str, Any]:
        """Submit a run to the control plane: placed in one region, sent there by the dispatcher."""
        spec, req = _placement(dict(body))
        meta = spec.get("metadata") or {}
        if p.tenant_id is not None and meta.get("tenant_id") not in (None, p.tenant_id):
            raise Forbidden(f"this key submits for tenant {p.tenant_id!r} only")
        tenant = p.tenant_id or meta.get("tenant_id") or "default"
        run = CpRun(f"cp{uuid.uuid4().hex[:16]}", tenant, meta.get("request_id"), spec, time.time())
        with lock:
            stored = book.add(run)
            if stored.run_id != run.run_id:  # the same request_id again: the first answer
                return {"workload_id": stored.run_id, **_where(plane, stored.run_id)}
            rr = RunRequest(**{**req.__dict__, "run_id": run.run_id, "tenant_id": tenant})
            try:
                d = plane.dispatch(rr)
            except QueueFull:
                book.remove(run.run_id)  # never accepted: the caller retries after Retry-After
                raise
        wake()
        return {
            "workload_id": run.run_id,
            "region": d.assignment.region,
            "generation": d.assignment.generation,
        }

    @app.get("/api/v1/workloads", tags=["workloads"])
    def list_runs(
        p: Any = Depends(principal),
        tenant_id: Optional[str] = Query(None, max_length=128),
        limit: int = Query(200, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Runs of every region, newest first: the control plane's own and those submitted to a
        region directly (``origin``), each with ``region`` and ``generation``."""
        tenant = p.tenant_id or tenant_id
        with lock:
            items = [run_json(plane, book, r) for r in book.all(tenant, limit)]
        items += [direct_json(c) for c in book.direct(tenant, limit)]
        return {"items": items[:limit]}

    @app.get("/api/v1/workloads/{run_id}", tags=["workloads"])
    def get_run(run_id: str = Path(max_length=128), p: Any = Depends(principal)) -> dict[str, Any]:
        """One run with every region's copy of it (one per generation that reached a region)."""
        run = book.get(run_id)
        if run is None or (p.tenant_id is not None and run.tenant_id != p.tenant_id):
            raise NotFound(f"no workload {run_id!r}")
        with lock:
            out = run_json(plane, book, run)
        return {**out, "copies": book.copies(run_id)}

    @app.delete("/api/v1/workloads/{run_id}", status_code=202, tags=["workloads"])
    def cancel(run_id: str = Path(max_length=128), p: Any = Depends(principal)) -> dict[str, Any]:
        """Cancel: forwarded to the region holding the current generation; a run not at a region
        yet ends here."""
        run = book.get(run_id)
        if run is None or (p.tenant_id is not None and run.tenant_id != p.tenant_id):
            raise NotFound(f"no workload {run_id!r}")
        with lock:
            a = plane.assignments.get(run_id)
            if a is None or a.region is None or a.status == "dispatched":
                fail_run(plane, book, run_id, "cancelled before it reached a region", "cancelled")
                return run_json(plane, book, run)
            copy = next((c for c in book.copies(run_id) if c["generation"] == a.generation), None)
            ep = book.endpoint(a.region)
        if copy is None or ep is None:
            raise QueueFull("the region has not confirmed the run yet; retry", [], retry_after=2)
        r = httpx.delete(
            f"{ep.url.rstrip('/')}/api/v1/workloads/{copy['region_workload_id']}",
            headers={"Authorization": f"Bearer {ep.key}"},
            timeout=10,
        )
        if r.status_code >= 400:
            raise QueueFull(f"the region answered {r.status_code}; retry", [], retry_after=5)
        with lock:
            return {**run_json(plane, book, run), "region_answer": r.json()}

    def _where(plane: ControlPlane, run_id: str) -> dict[str, Any]:
        a = plane.assignments.get(run_id)
        return {"region": a.region if a else None, "generation": a.generation if a else None}
