"""Workload statuses and the one table of allowed transitions.

The lifecycle (see ../shared/API.md)::

    submitted → queued → starting → running → completed
                     ↑        │          ├──→ failed      (error, timeout, retries spent)
                     └─ preempted ◀──────┤
                                         └──→ cancelled   (also from submitted/queued/starting)

Retries and readiness timeouts go back to ``queued`` directly (``running → queued``,
``starting → queued``); ``check_transition`` is the only place that decides what is legal.
"""

from __future__ import annotations

from enum import Enum

from .errors import InvalidTransition


class Status(str, Enum):
    SUBMITTED = "submitted"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

# The lifecycle, drawn once: each status → the statuses it may move to.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.SUBMITTED: frozenset({Status.QUEUED, Status.CANCELLED, Status.FAILED}),
    Status.QUEUED: frozenset({Status.STARTING, Status.CANCELLED, Status.FAILED}),
    # starting → queued: the reservation was not ready in time, or the launch was lost.
    Status.STARTING: frozenset({Status.RUNNING, Status.QUEUED, Status.FAILED, Status.CANCELLED}),
    # running → queued: a retry after a failure, or a run lost with its Ray objects.
    Status.RUNNING: frozenset(
        {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.PREEMPTED, Status.QUEUED}
    ),
    Status.PREEMPTED: frozenset({Status.QUEUED, Status.CANCELLED, Status.FAILED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def check_transition(current: Status, new: Status) -> None:
    """Raise ``InvalidTransition`` unless ``current → new`` is in the table."""
    current, new = Status(current), Status(new)
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"illegal status transition {current.value} → {new.value}")
