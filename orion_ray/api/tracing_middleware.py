"""The API request's server span: every HTTP request, with its route, tenant and status code.

A caller's own ``traceparent`` header (W3C) makes the request a child of the caller's trace. The
tenant is added by the ``principal`` dependency (``tracing.annotate``), once the key is known.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import tracing
from ..log_format import log_context
from ..metrics import route_label


class TracingMiddleware:
    """Pure ASGI middleware; with tracing off it only passes the request on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message["status"])
            await send(message)

        method = scope.get("method", "GET")
        parent = _header(scope, b"traceparent")
        with tracing.span(f"{method}", parent=parent, kind=SpanKind.SERVER) as span, log_context():
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", str(scope.get("path", ""))[:256])
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = route_label(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def _header(scope: dict, name: bytes) -> Any:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def annotate_request(tenant_id: str) -> None:
    """The authenticated tenant on the request's span and on its log lines."""
    tracing.annotate(tenant_id=tenant_id)
    log_context.set_fields(tenant_id=tenant_id)
