"""A region's outbound status changes: sequenced, kept until acknowledged, resent on request (pure).

The region appends each status change of a workload with the next sequence number and sends the
unacknowledged ones in order; the control plane's answer acknowledges up to a sequence (what it
applied or had) or, on a gap, asks for a resend from one (``region_state.apply_status_batch``).
Changes already acknowledged are dropped; at most ``keep`` are kept unacknowledged, and when the
oldest must go the outbox says a full *resync* is due (the region then sends a listing of every
workload it holds instead of changes), so memory stays bounded through a long control-plane outage
without losing the final state of any run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class Outbox:
    """Unacknowledged changes in sequence order; immutable (each step returns a new outbox)."""

    pending: tuple[Mapping[str, Any], ...] = ()
    next_seq: int = 1
    acked: int = 0
    keep: int = 10_000
    resync_due: bool = False

    def append(self, change: Mapping[str, Any]) -> "Outbox":
        """With ``change`` added under the next sequence; beyond ``keep`` the oldest is dropped
        and a resync becomes due."""
        entry = {**change, "seq": self.next_seq}
        pending = self.pending + (entry,)
        due = self.resync_due
        if len(pending) > self.keep:
            pending = pending[len(pending) - self.keep :]
            due = True
        return Outbox(pending, self.next_seq + 1, self.acked, self.keep, due)

    def batch(self, limit: int = 500) -> list[Mapping[str, Any]]:
        """The next changes to send, oldest first."""
        return list(self.pending[:limit])

    def ack(self, last_seq: int) -> "Outbox":
        """Everything up to ``last_seq`` was applied (or already known) at the control plane."""
        if last_seq >= self.next_seq:
            raise ValueError(f"last_seq: {last_seq} was never sent (next is {self.next_seq})")
        last = max(self.acked, last_seq)
        pending = tuple(c for c in self.pending if int(c["seq"]) > last)
        return Outbox(pending, self.next_seq, last, self.keep, self.resync_due)

    def resend_from(self, seq: int) -> tuple["Outbox", Optional[list[Mapping[str, Any]]]]:
        """Answer to a gap: the changes from ``seq`` on (acknowledging what is before it), or None
        when some of them were dropped, in which case a full resync is due."""
        box = self.ack(seq - 1) if seq - 1 > self.acked else self
        if box.pending and int(box.pending[0]["seq"]) > seq:
            return Outbox(box.pending, box.next_seq, box.acked, box.keep, True), None
        return box, [c for c in box.pending if int(c["seq"]) >= seq]

    def resynced(self, through_seq: int) -> "Outbox":
        """After a full listing sent as of ``through_seq``: nothing before it is owed any more."""
        box = self.ack(through_seq)
        return Outbox(box.pending, box.next_seq, box.acked, box.keep, False)


@dataclass(frozen=True)
class OutboxStats:
    """For a region's heartbeat and metrics: how far behind the control plane is."""

    pending: int
    oldest_seq: Optional[int]
    resync_due: bool = field(default=False)


def stats(box: Outbox) -> OutboxStats:
    """How many changes wait, since which sequence, and whether a resync is due."""
    return OutboxStats(len(box.pending), int(box.pending[0]["seq"]) if box.pending else None, box.resync_due)
