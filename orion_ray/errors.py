"""The one error tree of Orion, shared by the scheduler, the REST API and the SDK.

Each class carries its HTTP status and its stable ``code``; the API maps them once (``api/errors.py``)
and the SDK raises the same classes from the JSON error body.
"""

from __future__ import annotations

from typing import Any, Optional


class OrionError(Exception):
    """Base of every error Orion raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(
        self, message: str = "", details: list[dict[str, Any]] | None = None, retry_after: float | None = None
    ):
        super().__init__(message or self.code)
        self.message = message or self.code
        self.details = details or []
        self.retry_after = retry_after

    def to_body(self) -> dict[str, Any]:
        """The JSON error body of the contract."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __reduce__(self) -> tuple[Any, ...]:  # survive pickling across Ray actor boundaries
        return (_rebuild, (type(self), self.message, self.details, self.retry_after))


def _rebuild(
    cls: type[OrionError], message: str, details: Optional[list[dict[str, Any]]], retry_after: Optional[float]
) -> OrionError:
    return cls(message, details, retry_after)


class ValidationError(OrionError):
    status_code = 422
    code = "validation_error"


class MalformedRequest(ValidationError):
    status_code = 400
    code = "malformed_json"


class Unauthorized(OrionError):
    status_code = 401
    code = "unauthorized"


class Forbidden(OrionError):
    status_code = 403
    code = "forbidden"


class NotFound(OrionError):
    status_code = 404
    code = "not_found"


class Conflict(OrionError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(OrionError):
    status_code = 413
    code = "payload_too_large"


class QueueFull(OrionError):
    status_code = 429
    code = "queue_full"


class RateLimited(OrionError):
    """A tenant over its request rate (``api.rate_limit``, per API replica); retry after
    ``Retry-After`` seconds."""

    status_code = 429
    code = "rate_limited"


class CapacityUnavailable(OrionError):
    """The pool a workload needs cannot launch nodes now (its launches keep failing) and the
    policy says to push back rather than queue (``policy.reject_when_capacity_unavailable``)."""

    status_code = 429
    code = "capacity_unavailable"


class SchedulerUnavailable(OrionError):
    status_code = 503
    code = "scheduler_unavailable"


class StoreUnavailable(OrionError):
    """The store cannot take or answer this now (locked past the short busy timeout, its file
    deleted or replaced, a disk error). Nothing was committed: the caller may retry."""

    status_code = 503
    code = "store_unavailable"

    def __init__(
        self,
        message: str = "",
        details: Optional[list[dict[str, Any]]] = None,
        retry_after: Optional[float] = 1,
    ):
        super().__init__(message, details, retry_after)


class LeaseLost(StoreUnavailable):
    """A write of a scheduler that no longer holds the single-writer lease: the store has a newer
    fencing token (another scheduler took over). Nothing was committed; this scheduler stops
    acting (docs/high-availability.md)."""

    code = "lease_lost"


class InvalidTransition(OrionError):
    """A status change the transition table forbids: a bug in Orion, never user input."""

    status_code = 500
    code = "invalid_transition"


class ConfigError(OrionError):
    status_code = 422
    code = "config_error"


class CapacityError(OrionError):
    """No capacity source could provide the requested nodes (carries each attempt's history)."""

    status_code = 503
    code = "capacity_error"

    def __init__(
        self,
        message: str = "",
        details: Optional[list[dict[str, Any]]] = None,
        retry_after: Optional[float] = None,
        history: Optional[list[Any]] = None,
    ):
        super().__init__(message, details, retry_after)
        self.history = list(history or [])


ERRORS_BY_CODE: dict[str, type[OrionError]] = {
    cls.code: cls
    for cls in (
        ValidationError,
        MalformedRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        QueueFull,
        RateLimited,
        CapacityUnavailable,
        SchedulerUnavailable,
        StoreUnavailable,
        OrionError,
    )
}


def pydantic_details(exc: Exception) -> list[dict[str, str]]:
    """A pydantic ``ValidationError`` as the contract's details: ``[{"field", "problem"}]``
    (any other exception as one detail without a field)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [{"field": "", "problem": str(exc)}]
    return [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in errors()
    ]
