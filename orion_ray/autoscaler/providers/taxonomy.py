"""What an EC2 error means for a launch: hop to the next zone, stop the source, retry, or give up.

Ray's AWS provider tries the next subnet on *any* error. That hides quota problems (every zone fails
the same way, slowly) and burns the launch budget on errors no other zone can fix. Here each code
has one meaning, decided in one place.
"""

from __future__ import annotations

import enum
from typing import Optional

from ...errors import CapacityError, OrionError


class ErrorKind(str, enum.Enum):
    CAPACITY = "capacity"  # this zone/source has no room now: next zone, blocklist it for a while
    QUOTA = "quota"  # an account limit: no other zone helps; stop the source and report it
    TRANSIENT = "transient"  # throttled or a 5xx: retry the same call with backoff and jitter
    INVALID = "invalid"  # a bad request (AMI, type, permissions): no retry helps; stop


CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "ReservationCapacityExceeded",
        "UnfulfillableCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "SpotMaxPriceTooLow",
        # Zone-specific refusals that another zone may not share.
        "Unsupported",
        "InsufficientFreeAddressesInSubnet",
    }
)
QUOTA_CODES = frozenset(
    {
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "SpotInstanceRequestLimitExceeded",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
    }
)


def classify(code: str, http_status: Optional[int] = None) -> ErrorKind:
    """The kind of an EC2 error code (an unknown code with a 5xx status is transient)."""
    if code in CAPACITY_CODES:
        return ErrorKind.CAPACITY
    if code in QUOTA_CODES:
        return ErrorKind.QUOTA
    if code in TRANSIENT_CODES or (http_status is not None and http_status >= 500):
        return ErrorKind.TRANSIENT
    return ErrorKind.INVALID


def error_code(exc: BaseException) -> tuple[str, Optional[int], str]:
    """``(code, http_status, message)`` of a botocore ``ClientError`` (or of any exception)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {}) or {}
        status = (response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
        return str(err.get("Code", "Unknown")), status, str(err.get("Message", ""))
    return type(exc).__name__, None, str(exc)


class QuotaExceeded(CapacityError):
    """Every source failed and at least one failed on an account quota: raising the limit helps."""

    code = "capacity_quota_exceeded"


class LaunchBudgetExceeded(CapacityError):
    """The pool's launch budget ran out before the nodes came up (its history says what was
    tried)."""

    code = "launch_budget_exceeded"


class InvalidLaunch(CapacityError):
    """EC2 refused the request itself (bad AMI, type, permissions): no zone or retry helps."""

    status_code = 422
    code = "invalid_launch"


class CloudError(OrionError):
    """The cloud API failed in a way the caller cannot fix (reported as 502)."""

    status_code = 502
    code = "cloud_error"
