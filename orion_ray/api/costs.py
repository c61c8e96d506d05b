"""``GET /api/v1/costs`` and ``GET /api/v1/costs/chargeback`` (docs/cost.md).

Both read the store on the replica (``StoreAccess``) and compute in FastAPI's thread pool (plain
``def`` routes): a report over many workloads must not hold the replica's event loop. A tenant's
key sees that tenant's rows only; an admin key sees every tenant and ``(idle)``, and may narrow
to one with ``tenant=``. A bad parameter is a 422 naming it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse

from ..cost import store_rows as cost_store
from ..cost.report import QueryError, chargeback, month_window, parse_query, report, to_csv
from ..errors import SchedulerUnavailable, ValidationError


def _invalid(exc: QueryError) -> ValidationError:
    return ValidationError("invalid request", [{"field": exc.field, "problem": exc.problem}])


def install_costs(app: FastAPI, principal: Any, access_of: Callable[[Request], Any], clock=time.time) -> None:
    """The cost routes on ``app``; ``principal`` authenticates, ``access_of`` gives the store."""

    def reader(request: Request) -> Any:
        access = access_of(request)
        if access is not None:
            return access.reader
        # an in-process scheduler (tests, embedded use) holds the store itself
        backend = getattr(request.app.state, "backend", None)
        store = getattr(backend, "store", None)
        if store is None:
            raise SchedulerUnavailable("the store is not readable from this replica yet", retry_after=2)
        return store

    def scope(p: Any, tenant: Optional[str]) -> Optional[str]:
        if p.is_admin:
            return tenant
        return p.tenant_id  # a tenant's own rows, whatever it asks for

    @app.get("/api/v1/costs", tags=["cost"])
    def costs(
        request: Request,
        window: Optional[str] = Query("7d", max_length=16),
        month: Optional[str] = Query(None, max_length=16),
        aggregate: Optional[str] = Query("tenant", max_length=128),
        step: Optional[str] = Query(None, max_length=16),
        share_idle: Optional[str] = Query(None, max_length=16),
        format: Optional[str] = Query("json", max_length=8),
        tenant: Optional[str] = Query(None, max_length=128),
        p: Any = Depends(principal),
    ):
        """Cost and usage over a window (or a month), per step, grouped by ``aggregate`` (tenant,
        pool, market, kind, gpu_type), with idle capacity shared ``none``/``weighted``/``even``."""
        store = reader(request)
        now = clock()
        defaults = store.get_setting(cost_store.COST_SETTING, None) or {}
        try:
            q = parse_query(
                now=now,
                window=window,
                month=month,
                aggregate=aggregate,
                step=step,
                share_idle=share_idle,
                format=format,
                default_share_idle=defaults.get("share_idle", "none"),
            )
        except QueryError as exc:
            raise _invalid(exc) from None
        rows, table = cost_store.cost_rows(
            store, start=q.start, end=q.end, now=now, step=q.step, share_idle=q.share_idle
        )
        body = report(rows, q, currency=table.currency, price_version=table.version, tenant=scope(p, tenant))
        if q.format == "csv":
            return PlainTextResponse(to_csv(body["rows"]), media_type="text/csv")
        return body

    @app.get("/api/v1/costs/chargeback", tags=["cost"])
    def costs_chargeback(
        request: Request,
        month: str = Query(..., max_length=16),
        share_idle: Optional[str] = Query(None, max_length=16),
        format: Optional[str] = Query("csv", max_length=8),
        tenant: Optional[str] = Query(None, max_length=128),
        p: Any = Depends(principal),
    ):
        """The month's chargeback per tenant: GPU-hours, CPU-hours, cost by market, idle share,
        total and tokens (CSV by default)."""
        store = reader(request)
        now = clock()
        defaults = store.get_setting(cost_store.COST_SETTING, None) or {}
        try:
            start, end = month_window(month)
            q = parse_query(
                now=now, month=month, share_idle=share_idle, format=format,
                default_share_idle=defaults.get("share_idle", "none"),
            )  # fmt: skip
        except QueryError as exc:
            raise _invalid(exc) from None
        rows, table = cost_store.cost_rows(
            store, start=start, end=end, now=now, step=None, share_idle=q.share_idle
        )
        lines = chargeback(rows, tenant=scope(p, tenant))
        if q.format == "csv":
            return PlainTextResponse(to_csv(lines), media_type="text/csv")
        return {"month": month, "currency": table.currency, "price_version": table.version, "tenants": lines}
