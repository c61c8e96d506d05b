"""Per-tenant request rates: a token bucket for each tenant, in this API replica's memory.

Every authenticated route (``/api/v1``, ``/admin/v1``, the OpenAI-compatible ``/v1``) takes one
token from the caller's tenant; an empty bucket is a 429 ``rate_limited`` with ``Retry-After``
(the seconds until a token is back). ``/health`` and ``/metrics`` take no key and are never
limited. The admin is not limited: its key is the operator's, who could change the limits anyway.

The buckets live in each replica, so N replicas admit up to N times the configured rate; what
they guarantee is that one tenant's burst is refused before it reaches the scheduler or the store,
while the other tenants' requests still pass. A tenant's ``rate_limit`` (reloadable with the
tenants) replaces ``api.rate_limit`` for that tenant; a changed limit starts a full bucket.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Optional

from .config import RateLimit
from .errors import RateLimited


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; starts full."""

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst = float(rate), int(burst)
        self.tokens = float(burst)
        self.at = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be."""
        # a clock that went backwards (tests, a monotonic source never does) refills nothing
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """The buckets of one replica, by tenant. ``default`` None (or disabled) limits no one
    unless a tenant has its own ``rate_limit``."""

    def __init__(self, default: Optional[RateLimit] = None, *, clock: Callable[[], float] = time.monotonic):
        self.default = default
        self.clock = clock
        self.overrides: dict[str, RateLimit] = {}
        self._buckets: dict[str, TokenBucket] = {}
        # FastAPI runs sync dependencies in a thread pool: the buckets are shared between threads
        self._lock = threading.Lock()

    def set_overrides(self, overrides: dict[str, RateLimit]) -> None:
        """The tenants' own limits (from the running tenants configuration)."""
        self.overrides = dict(overrides)

    def limit_of(self, tenant_id: str) -> Optional[RateLimit]:
        """The limit that applies to ``tenant_id`` (None: not limited)."""
        limit = self.overrides.get(tenant_id, self.default)
        return limit if limit is not None and limit.enabled else None

    def check(self, tenant_id: str) -> None:
        """Take a token for ``tenant_id``, or raise ``RateLimited`` (429, ``Retry-After``)."""
        limit = self.limit_of(tenant_id)
        if limit is None:
            return
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(tenant_id)
            if bucket is None or (bucket.rate, bucket.burst) != (limit.per_tenant_rps, limit.burst):
                bucket = self._buckets[tenant_id] = TokenBucket(limit.per_tenant_rps, limit.burst, now)
            wait = bucket.take(now)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise RateLimited(
                f"tenant {tenant_id!r} is over its request rate "
                f"({limit.per_tenant_rps:g}/s, bursts of {limit.burst}); retry after {retry_after}s",
                retry_after=retry_after,
            )
