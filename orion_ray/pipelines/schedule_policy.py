"""What a schedule does when its slots come: Kubernetes CronJob semantics, decided over a snapshot.
Pure: no Ray, no store, ``now`` passed in.

- ``last_slot`` is the latest slot already handled (fired, skipped or missed); a slot is handled
  once: the run a slot fires and the schedule's new ``last_slot`` are written in one transaction,
  and the run's ``submission_id`` (``<name>-<slot>``) is unique per tenant.
- ``starting_deadline_seconds``: a slot whose time is more than this in the past is **missed**
  (counted, never fired).
- ``catch_up`` off (the default): of the slots due, only the latest one within the deadline fires;
  the earlier ones are missed (after downtime, one run, not one per missed slot). On: each slot due
  within the deadline fires, oldest first, at most ``MAX_FIRES_PER_TICK`` per tick.
- ``concurrency_policy`` (when a run the schedule fired is still active): ``allow`` fires anyway;
  ``forbid`` **skips** the slot (counted, with the reason); ``replace`` cancels the active run
  (through the ordinary cancel) and fires. ``forbid`` and ``replace`` fire at most one slot a tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cron import Cron, latest_slot, next_slot, slots_after
from .schedule_spec import ScheduleSpec

MAX_FIRES_PER_TICK = 100  # one schedule, one tick (catch-up goes on at the next tick)
MAX_SCAN = 1_000  # slots looked at one by one per tick; beyond, the latest is found directly
MAX_BACKFILL = 1_000  # slots of one backfill request


@dataclass
class SlotPlan:
    """What to do with a schedule now."""

    fire: list[float] = field(default_factory=list)
    skipped: list[tuple[float, str]] = field(default_factory=list)  # (slot, why)
    missed: int = 0  # slots past their deadline (or superseded, catch-up off)
    cancel_active: bool = False  # ``replace``: cancel the active run before firing
    last_slot: float = 0.0  # the new ``last_slot``
    next_at: float = 0.0  # when to look again

    @property
    def idle(self) -> bool:
        return not (self.fire or self.skipped or self.missed)


def plan(spec: ScheduleSpec, cron: Cron, *, last_slot: float, now: float, active_run: bool) -> SlotPlan:
    """The plan for the slots due in ``(last_slot, now]``. ``active_run``: a run this schedule
    fired is still running (or being cancelled)."""
    due = slots_after(cron, last_slot, until=now, limit=MAX_SCAN)
    missed = 0
    if len(due) == MAX_SCAN:  # a long downtime of a frequent schedule: count, then jump
        latest = latest_slot(cron, now)
        if latest is not None and latest > due[-1]:
            missed += len(due)
            due = [latest]
    out = SlotPlan(last_slot=last_slot)
    if not due:
        out.next_at = next_slot(cron, max(last_slot, now))
        return out
    deadline = spec.starting_deadline_seconds
    in_time = [s for s in due if deadline is None or now - s <= deadline]
    missed += len(due) - len(in_time)
    if not spec.catch_up and len(in_time) > 1:
        missed += len(in_time) - 1
        in_time = in_time[-1:]
    handled = due[-1]
    if spec.concurrency_policy == "allow":
        if len(in_time) > MAX_FIRES_PER_TICK:
            in_time = in_time[:MAX_FIRES_PER_TICK]
            handled = in_time[-1]
        out.fire = in_time
    elif in_time:
        if spec.concurrency_policy == "forbid" and active_run:
            out.skipped = [(s, "forbid: the previous run is still active") for s in in_time]
        else:
            if spec.catch_up and len(in_time) > 1 and spec.concurrency_policy == "forbid":
                handled = in_time[0]  # the next ones wait for this run (and are skipped while it runs)
                in_time = in_time[:1]
            elif len(in_time) > 1:  # replace: each would cancel the one before it
                out.skipped = [(s, "replace: superseded by a later slot") for s in in_time[:-1]]
                in_time = in_time[-1:]
            out.fire = in_time
            out.cancel_active = spec.concurrency_policy == "replace" and active_run
    out.missed = missed
    out.last_slot = handled
    out.next_at = now if handled < due[-1] else next_slot(cron, max(handled, now))
    return out


def backfill_slots(cron: Cron, start: float, end: float) -> list[float]:
    """Every slot in ``[start, end]``; ``ValueError`` over ``MAX_BACKFILL`` of them."""
    slots = slots_after(cron, start - 0.001, until=end, limit=MAX_BACKFILL + 1)
    if len(slots) > MAX_BACKFILL:
        raise ValueError(f"more than {MAX_BACKFILL} slots between start and end: ask for a shorter range")
    return slots
