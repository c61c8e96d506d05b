"""The scheduler's single-writer lease: who may act, and the fencing token that proves it.

One row in the store says which scheduler holds the lease (``holder``), until when
(``expires_at``) and with which ``token``; the token grows by one on every acquisition, never on a
renewal. A scheduler writes only with its token, and the store refuses a write whose token is older
than the row's (``store/lease.py``, in the write's own transaction): a scheduler that was paused,
partitioned or replaced cannot overwrite what its successor decided, whatever its clock says.

Pure: the decisions take ``now`` and the current row, and return what to write; the store applies
them in one transaction, and tests drive them with a hand-moved clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# The only lease today: the scheduler's (a name keeps the table open to other single writers).
SCHEDULER_LEASE = "scheduler"


@dataclass(frozen=True)
class Lease:
    """The stored lease: its holder, fencing token and expiry (seconds since the epoch)."""

    name: str
    holder: str
    token: int
    expires_at: float
    acquired_at: float = 0.0

    def live(self, now: float) -> bool:
        """Whether it still binds others at ``now``."""
        return now < self.expires_at


@dataclass(frozen=True)
class Grant:
    """The answer to an acquisition: ``lease`` to write when ``granted``; else who holds it and
    when it may be tried again (``retry_at``)."""

    granted: bool
    lease: Optional[Lease]
    retry_at: float = 0.0
    reason: str = ""


def acquire(current: Optional[Lease], *, name: str, holder: str, now: float, ttl_s: float) -> Grant:
    """Whether ``holder`` may take the lease at ``now``, and the row to write if so.

    Granted when there is no lease, when it expired, or when ``holder`` already holds it (a
    restarted incarnation of the same actor: Ray restarts an actor only once it believes the old
    one dead, and the new token fences the old one should it still run). Every grant takes a
    new token, so an older incarnation's writes are refused from then on."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if current is not None and current.holder != holder and current.live(now):
        return Grant(
            False,
            current,
            retry_at=current.expires_at,
            reason=f"held by {current.holder} (token {current.token}) until {current.expires_at:.3f}",
        )
    token = (current.token if current is not None else 0) + 1
    why = (
        "no lease yet"
        if current is None
        else "restarted holder"
        if current.holder == holder and current.live(now)
        else "the previous lease expired"
    )
    return Grant(True, Lease(name, holder, token, now + ttl_s, acquired_at=now), reason=why)


def renew(current: Optional[Lease], *, holder: str, token: int, now: float, ttl_s: float) -> Optional[Lease]:
    """The renewed row, or None when ``holder`` with ``token`` no longer holds the lease (another
    took it: a newer token). A lease that expired but that nobody took is still ours: renewing it
    keeps the token (no one acted in between)."""
    if current is None or current.token != token or current.holder != holder:
        return None
    return Lease(current.name, holder, token, now + ttl_s, acquired_at=current.acquired_at)


def fenced(stored_token: Optional[int], token: int) -> bool:
    """Whether a write with ``token`` must be refused: the store has a newer one."""
    return stored_token is not None and stored_token > token


class LeaseClock:
    """A holder's own view of its lease, for deciding when to renew and when to stop acting.

    The holder counts the lease from the moment it *asked* (``asked_at``), not from when the
    store answered: its lease then ends no later than the row's expiry, so it stops acting before
    anyone else may start. ``margin_s`` is kept off the end for clock drift between hosts.
    """

    def __init__(self, ttl_s: float, *, renew_every_s: Optional[float] = None, margin_s: float = 0.0):
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.ttl_s = ttl_s
        # three tries before the lease runs out: one lost write or a slow store costs nothing
        self.renew_every_s = renew_every_s if renew_every_s is not None else ttl_s / 3
        self.margin_s = min(margin_s, ttl_s / 2)
        self.token: Optional[int] = None
        self.valid_until = 0.0
        self.last_renewal = 0.0

    def held(self, asked_at: float, token: int) -> None:
        """The store granted or renewed the lease, asked for at ``asked_at``."""
        self.token = token
        self.valid_until = asked_at + self.ttl_s - self.margin_s
        self.last_renewal = asked_at

    def lost(self) -> None:
        """The store said another holds it (or a write was fenced)."""
        self.token = None
        self.valid_until = 0.0

    def may_act(self, now: float) -> bool:
        """Whether the holder may still act at ``now`` (holds a token, not past its own end)."""
        return self.token is not None and now < self.valid_until

    def renew_due(self, now: float) -> bool:
        """Whether it is time to renew (a holder that holds nothing acquires instead)."""
        return self.token is not None and now - self.last_renewal >= self.renew_every_s
