"""Pure pieces of launch retrying: backoff with jitter, a zone blocklist that expires, a budget.

Clock and random source are arguments, so tests decide time and never sleep.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional

Clock = Callable[[], float]


def backoff_delay(
    attempt: int, base_s: float = 1.0, cap_s: float = 60.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before retry number ``attempt`` (1-based): "full jitter" — uniform in
    ``[0, min(cap, base * 2^(attempt-1))]``, so many nodes throttled together do not retry
    together."""
    attempt = max(1, attempt)
    ceiling = min(cap_s, base_s * (2 ** min(attempt - 1, 32)))
    return ceiling * min(1.0, max(0.0, rand()))


@dataclass
class Blocklist:
    """Keys (e.g. ``("spot", "p4d.24xlarge", "us-east-1a")``) that failed for capacity, until they
    expire: the zone is skipped for a while instead of being hit again at once, and tried again
    later because capacity comes back."""

    ttl_s: float = 300.0
    clock: Clock = time.monotonic
    _until: dict[Hashable, float] = field(default_factory=dict)

    def add(self, key: Hashable, ttl_s: Optional[float] = None) -> float:
        """Block ``key``; returns when it expires (clock time)."""
        until = self.clock() + (self.ttl_s if ttl_s is None else ttl_s)
        self._until[key] = max(until, self._until.get(key, until))
        return self._until[key]

    def blocked_until(self, key: Hashable) -> Optional[float]:
        """Expiry of ``key`` if blocked now, else None (expired entries are dropped)."""
        until = self._until.get(key)
        if until is None:
            return None
        if until <= self.clock():
            del self._until[key]
            return None
        return until

    def is_blocked(self, key: Hashable) -> bool:
        return self.blocked_until(key) is not None

    def snapshot(self) -> dict[Hashable, float]:
        """Every live entry with the seconds it has left."""
        now = self.clock()
        return {k: u - now for k, u in list(self._until.items()) if self.blocked_until(k)}


@dataclass
class LaunchBudget:
    """The time one launch may take, all passes and retries included (default 15 minutes)."""

    total_s: float
    clock: Clock = time.monotonic
    started_at: Optional[float] = None

    def __post_init__(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started_at

    def remaining(self) -> float:
        return max(0.0, self.total_s - self.elapsed())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def allows_wait(self, seconds: float) -> bool:
        """Whether waiting ``seconds`` still leaves time for another attempt."""
        return seconds < self.remaining()
