"""``Every``: "at most once per period" on an injected clock, for the loop's periodic jobs.

The loop refreshes serving usage, checks nodes and sets gauges on their own periods; reading the
scheduler's clock (not ``time.monotonic``) lets a test advance time instead of waiting for it.
"""

from __future__ import annotations

from typing import Callable, Optional


class Every:
    """Due once ``period`` seconds of ``clock`` have passed since it was last due (at once at
    first, and whenever the clock went backwards); ``due(force=True)`` is due now and restarts the
    period."""

    def __init__(self, period: float, clock: Callable[[], float]):
        self.period = period
        self.clock = clock
        self._last: Optional[float] = None

    def due(self, *, force: bool = False) -> bool:
        """Whether the job should run now (if so, the period restarts)."""
        now = self.clock()
        # a wall clock stepped back (NTP) must not silence the job until it catches up again
        if force or self._last is None or not 0 <= now - self._last <= self.period:
            self._last = now
            return True
        return False
