"""Orion: an orchestration engine for AI workloads on Ray.

The public API: the SDK client, the spec types and the error tree. The names load on first use
(PEP 562 ``__getattr__``), so importing a submodule — above all the task runner a worker process
imports for every task (``orion_ray.runtime.task_runner``) — does not pull in httpx, pydantic or
the config; ``from orion_ray import OrionClient`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__  # the one place the version is written

# public name -> the module that defines it
_EXPORTS = {
    "OrionClient": ".client",
    "WorkloadHandle": ".client",
    "WorkloadResult": ".client",
    "AsyncOrionClient": ".async_client",
    "AsyncWorkloadHandle": ".async_client",
    "OrionError": ".errors",
    "ValidationError": ".errors",
    "NotFound": ".errors",
    "QueueFull": ".errors",
    "Unauthorized": ".errors",
    "Forbidden": ".errors",
    "Conflict": ".errors",
    "PayloadTooLarge": ".errors",
    "SchedulerUnavailable": ".errors",
    "WorkloadSpec": ".models",
    "Resources": ".models",
    "Priority": ".models",
    "Placement": ".models",
    "Status": ".status",
}

__all__ = [
    "__version__",
    "OrionClient",
    "WorkloadHandle",
    "WorkloadResult",
    "AsyncOrionClient",
    "AsyncWorkloadHandle",
    "OrionError",
    "ValidationError",
    "NotFound",
    "QueueFull",
    "Unauthorized",
    "Forbidden",
    "Conflict",
    "PayloadTooLarge",
    "SchedulerUnavailable",
    "WorkloadSpec",
    "Resources",
    "Priority",
    "Placement",
    "Status",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, then keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the names as plain imports
    from .async_client import AsyncOrionClient, AsyncWorkloadHandle
    from .client import OrionClient, WorkloadHandle, WorkloadResult
    from .errors import (
        Conflict,
        Forbidden,
        NotFound,
        OrionError,
        PayloadTooLarge,
        QueueFull,
        SchedulerUnavailable,
        Unauthorized,
        ValidationError,
    )
    from .models import Placement, Priority, Resources, WorkloadSpec
    from .status import Status
