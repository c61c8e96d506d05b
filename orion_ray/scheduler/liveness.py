"""What ``/health`` needs to tell a live scheduler from a stuck one.

Recovery (rebuilding state from the store and Ray) retries until it succeeds; the loop completes
a cycle at least every second when it is alive. Either one not progressing for longer than the
configured threshold makes the scheduler report itself unhealthy, so ``/health`` is not 200 while
recovery is stuck or the loop has stalled (the API's call to it has a timeout too, for a loop so
busy it cannot answer at all).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional


class Liveness:
    """Recovery state and the time of the last completed cycle (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.state = "not_started"  # → recovering → recovered
        self.since = clock()
        self.attempts = 0
        self.error: Optional[str] = None
        self.took_s: Optional[float] = None

    def recovering(self) -> None:
        """Recovery begins (called once; retries count as ``failed``)."""
        self.state, self.since, self.attempts, self.error = "recovering", self.clock(), 0, None

    def failed(self, exc: BaseException) -> None:
        """One recovery attempt failed; it will be retried."""
        self.attempts += 1
        self.error = f"{type(exc).__name__}: {exc}"[:500]

    def recovered(self) -> None:
        now = self.clock()
        self.took_s = round(now - self.since, 3)
        self.state, self.since = "recovered", now

    def report(
        self, cycle_done_at: Optional[float], *, stall_after_s: float, stuck_after_s: float
    ) -> dict[str, Any]:
        """``verdict`` (``ok``, ``recovering``, ``recovery_stuck`` or ``stalled``), the age of
        the last completed cycle and the recovery state, for ``Scheduler.health``."""
        now = self.clock()
        age = None if cycle_done_at is None else round(now - cycle_done_at, 3)
        verdict = "ok"
        if self.state != "recovered":
            verdict = (
                "recovery_stuck"
                if self.state == "recovering" and now - self.since > stuck_after_s
                else "recovering"
            )
        elif (age if age is not None else now - self.since) > stall_after_s:
            verdict = "stalled"  # no cycle completed for too long since recovery ended
        return {
            "verdict": verdict,
            "last_cycle_age_s": age,
            "recovery": {
                "state": self.state,
                "attempts": self.attempts,
                "last_error": self.error,
                "took_s": self.took_s,
                "for_s": round(now - self.since, 3),
            },
        }
