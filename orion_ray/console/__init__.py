"""The Orion console: a browser view of the queue, a workload, the GPUs and the releases.

Served by the API app itself (``/console``, same port): static files shipped in the package (ES
modules, no build step) that call the REST API with the key the user types in. The key stays in
the tab's ``sessionStorage`` and travels as the usual ``Authorization`` header, so a tenant sees
exactly what its key may see through REST, and the admin sees everything. Data is rendered as
text, never as HTML, and the page's Content-Security-Policy allows only the console's own scripts.

Two routes serve it besides the files: ``GET /api/v1/whoami`` (who the key is) and
``GET /api/v1/stream`` (server-sent events from :class:`ChangeFeed`: a view refreshes when told).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from .._version import __version__
from .feed import ChangeFeed

STATIC = Path(__file__).parent / "static"

# Only the console's own files run or load; data is text (the views never set innerHTML), so a
# workload name or a log line that looks like markup stays text even if a view got it wrong.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install_console(app: FastAPI, principal: Callable[..., Any], access_of: Callable[[Request], Any]) -> None:
    """Mount ``/console`` (the page and its files), ``/api/v1/whoami`` and ``/api/v1/stream``."""

    # the feed outlives the request that made it: it asks for the store through the app alone
    app_only = SimpleNamespace(app=app)

    def feed_of(request: Request) -> ChangeFeed:
        state = request.app.state
        if getattr(state, "change_feed", None) is None:
            state.change_feed = ChangeFeed(lambda: access_of(app_only))
        return state.change_feed

    @app.get("/console", include_in_schema=False)
    async def console_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    @app.get("/console/", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)

    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/api/v1/whoami", tags=["console"])
    async def whoami(p: Any = Depends(principal)) -> dict[str, Any]:
        """Who the key is: ``{"tenant_id": ..., "admin": ...}`` (a tenant key's admin is false)."""
        return {"tenant_id": p.tenant_id, "admin": bool(p.is_admin), "version": __version__}

    @app.get(
        "/api/v1/stream",
        tags=["console"],
        response_class=StreamingResponse,
        responses={200: {"description": "an event stream", "content": {"text/event-stream": {}}}},
    )
    async def stream(request: Request, p: Any = Depends(principal)) -> StreamingResponse:
        """Server-sent events: ``hello``, then ``workloads`` when the caller's workloads change
        (the admin's: anyone's) and ``tick`` every few seconds; 429 over the open-stream bounds."""
        feed = feed_of(request)
        s = feed.open(None if p.is_admin else p.tenant_id)
        return StreamingResponse(
            feed.events(s, request.is_disconnected),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
