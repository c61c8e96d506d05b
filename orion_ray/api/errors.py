"""The one mapping from errors to HTTP answers: every error is the contract's JSON body, never a trace."""

from __future__ import annotations

import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import OrionError

log = logging.getLogger("orion.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "queue_full",
}


def error_response(status: int, code: str, message: str, details=None, headers=None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or []}},
        status_code=status,
        headers=headers,
    )


def field_path(loc) -> str:
    """``("body", "resources", "gpu")`` → ``resources.gpu``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


def _field_of(error: dict) -> str:
    """The field a validation error names: the path inside a free-form value when the check
    gave one (``args.0.x``, see ``input_limits``), else pydantic's location."""
    path = (error.get("ctx") or {}).get("path")
    return str(path) if path else field_path(error.get("loc", ()))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OrionError)
    async def _orion(request: Request, exc: OrionError):
        headers = None
        if exc.retry_after is not None:
            headers = {"Retry-After": str(int(max(1, round(exc.retry_after))))}
        if exc.status_code >= 500 and exc.status_code != 503:
            log.error("internal error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(
                400,
                "malformed_json",
                "the request body is not valid JSON",
                [{"field": "body", "problem": e.get("msg", "")} for e in errors],
            )
        details = [{"field": _field_of(e), "problem": e.get("msg", "")} for e in errors]
        return error_response(422, "validation_error", "invalid request", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(sqlite3.OperationalError)
    async def _store_busy(request: Request, exc: sqlite3.OperationalError):
        # the replica's own store access: locked past its busy timeout, or not readable yet;
        # nothing was committed, so the client may simply retry
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            "store_unavailable",
            f"the store is busy or unavailable ({exc}); retry",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error (logged on the server)")
