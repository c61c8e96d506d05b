"""The scheduler's side of the single-writer lease: take it before recovery, renew it from the loop,
and stop acting the moment it is lost (docs/high-availability.md).

The decisions are ``policy/lease.py``'s; the store applies them (``store/lease.py``) and, once the
lease is held, refuses every write of this scheduler that a newer token has overtaken (the fence
set on the store). A store without a lease table (another backend) runs without a lease.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Optional

from ..errors import StoreUnavailable
from ..metrics import OrionMetrics
from ..policy.lease import SCHEDULER_LEASE, LeaseClock
from ..store import lease as stored

log = logging.getLogger("orion.scheduler")

# A holder that names itself nothing else: every Scheduler built without one is "the same
# scheduler restarted" (in-process tests rebuild one over the same store); the actor passes its
# Ray actor id, which survives Ray's restarts of it and differs from any other actor's.
DEFAULT_HOLDER = "scheduler"
# How long a refused acquisition waits at least before asking again.
MIN_RETRY_S = 0.2


class LeaseHost:
    """Holds (or waits for) the lease for one scheduler."""

    def __init__(
        self,
        store: Any,
        *,
        clock: Callable[[], float],
        metrics: OrionMetrics,
        holder: str = DEFAULT_HOLDER,
        ttl_s: float = 15.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        name: str = SCHEDULER_LEASE,
    ):
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.holder = holder
        self.name = name
        self.sleep = sleep
        self.view = LeaseClock(ttl_s)
        self.enabled = hasattr(store, "_raw_tx")  # the SQLite store carries the lease table
        self.fence: Optional[stored.Fence] = None
        self.lost_at: Optional[float] = None
        self.waiting_for: Optional[str] = None  # who holds it while this one waits

    @property
    def token(self) -> Optional[int]:
        """The fencing token held (None: not held)."""
        return self.view.token

    async def acquire(self) -> int:
        """Wait until the lease is granted; set the fence on the store; return the token."""
        if not self.enabled:
            return 0
        while True:
            asked = self.clock()
            try:
                grant = stored.try_acquire(
                    self.store, holder=self.holder, now=asked, ttl_s=self.view.ttl_s, name=self.name
                )
            except StoreUnavailable as exc:
                log.warning("lease: the store refused the acquisition (%s); retrying", exc.message)
                await self.sleep(1.0)
                continue
            if grant.granted and grant.lease is not None:
                token = grant.lease.token
                self.view.held(asked, token)
                self.fence = stored.Fence(token, self.name)
                self.store.fence = self.fence
                self.waiting_for, self.lost_at = None, None
                self.metrics.lease(True, token)
                log.info("lease %s taken by %s: token %d (%s)", self.name, self.holder, token, grant.reason)
                return token
            if self.waiting_for != grant.reason:
                log.warning("lease %s: waiting, %s", self.name, grant.reason)
            self.waiting_for = grant.reason
            self.metrics.lease(False, 0)
            await self.sleep(max(MIN_RETRY_S, min(grant.retry_at - self.clock(), self.view.ttl_s)))

    def tick(self) -> bool:
        """From the loop: renew when due. False once the lease is lost (a write was fenced, the
        store says another holds it, or this holder could not renew in time)."""
        if not self.enabled:
            return True
        if self.view.token is None:
            return False
        if self.fence is not None and self.fence.refused:
            return self._lose("a write was refused: a newer token is stored")
        now = self.clock()
        if self.view.renew_due(now):
            try:
                renewed = stored.try_renew(
                    self.store,
                    holder=self.holder,
                    token=self.view.token,
                    now=now,
                    ttl_s=self.view.ttl_s,
                    name=self.name,
                )
            except StoreUnavailable as exc:  # try again next tick, while the lease lasts
                log.warning("lease: renewal refused by the store (%s)", exc.message)
            else:
                if renewed is None:
                    return self._lose("another scheduler holds it now")
                self.view.held(now, renewed.token)
        if not self.view.may_act(self.clock()):
            return self._lose("not renewed in time")
        return True

    def _lose(self, why: str) -> bool:
        token = self.view.token or 0
        self.view.lost()
        self.lost_at = self.clock()
        self.metrics.lease(False, token, lost=True)
        log.error("lease %s lost by %s (token %d): %s; it stops acting", self.name, self.holder, token, why)
        return False

    def report(self) -> dict[str, Any]:
        """For ``/health``: whether the lease is held, with which token, or whom it waits for."""
        if not self.enabled:
            return {"enabled": False}
        return {
            "enabled": True,
            "holder": self.holder,
            "held": self.view.may_act(self.clock()),
            "token": self.view.token,
            "waiting_for": self.waiting_for,
            "lost_at": self.lost_at,
        }
