"""Orion: an orchestration engine for AI workloads on Ray.

The public API: the SDK client, the spec types and the error tree.
"""
from .async_client import AsyncOrionClient, AsyncWorkloadHandle
from .client import OrionClient, WorkloadHandle, WorkloadResult
from .errors import (Conflict, Forbidden, NotFound, OrionError, PayloadTooLarge, QueueFull,
                     SchedulerUnavailable, Unauthorized, ValidationError)
from .models import Placement, Priority, Resources, WorkloadSpec
from .status import Status

__version__ = "0.1.0"

__all__ = ["OrionClient", "WorkloadHandle", "WorkloadResult", "AsyncOrionClient",
           "AsyncWorkloadHandle", "OrionError", "ValidationError",
           "NotFound", "QueueFull", "Unauthorized", "Forbidden", "Conflict", "PayloadTooLarge",
           "SchedulerUnavailable", "WorkloadSpec", "Resources", "Priority", "Placement", "Status"]
