"""Rolling replacement of a model's replicas, bounded as Kubernetes bounds a Deployment's rollout.

The stable version's replicas are replaced by the candidate's: the candidate's come up at most
``surge`` above the desired count, the stable's go down keeping at most ``unavailable`` of the
desired count missing, and traffic follows the ready replicas. When no new replica has become
ready for ``deadline`` seconds, the rollout rolls back.

Pure: the caller observes Serve (replicas alive and ready per version) and applies the targets
this module returns; ``now`` is an argument and states are replaced, never mutated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Union

ROLLING = "rolling"
COMPLETE = "complete"
ROLLED_BACK = "rolled_back"


def resolve(value: Union[int, str], desired: int, *, round_up: bool) -> int:
    """A count from ``2`` or ``"25%"`` of ``desired`` (a surge rounds up, an allowance of missing
    replicas rounds down, as Kubernetes does)."""
    if isinstance(value, int):
        return value
    pct = float(value.rstrip("%")) / 100.0
    n = pct * desired
    return int(math.ceil(n - 1e-9)) if round_up else int(math.floor(n + 1e-9))


def bounds(desired: int, max_surge: Union[int, str], max_unavailable: Union[int, str]) -> tuple[int, int]:
    """``(surge, unavailable)`` in replicas. Both resolving to 0 (small percentages of a small
    count) would never move; then one replica may be missing, as Kubernetes does."""
    surge = resolve(max_surge, desired, round_up=True)
    unavailable = min(desired, resolve(max_unavailable, desired, round_up=False))
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


@dataclass(frozen=True)
class Rollout:
    """Where a rollout is. Targets are what Serve was asked for; ``progressed``: when a new
    replica last became ready (or the start)."""

    desired: int
    surge: int
    unavailable: int
    deadline: float
    old_target: int
    new_target: int
    started: float
    progressed: float
    new_ready_seen: int = 0
    phase: str = ROLLING
    reason: str = ""


@dataclass(frozen=True)
class Observed:
    """One version's replicas as Serve reports them: ``alive`` in any state (starting, running,
    stopping), ``ready`` running and healthy."""

    alive: int = 0
    ready: int = 0


def start(
    desired: int,
    max_surge: Union[int, str],
    max_unavailable: Union[int, str],
    deadline: float,
    now: float,
    new_target: int = 0,
) -> Rollout:
    """A rollout of ``desired`` replicas (the stable's count); ``new_target``: candidate
    replicas already asked for (deployed before the release)."""
    desired = max(1, desired)
    surge, unavailable = bounds(desired, max_surge, max_unavailable)
    return Rollout(
        desired=desired,
        surge=surge,
        unavailable=unavailable,
        deadline=deadline,
        old_target=desired,
        new_target=min(new_target, desired + surge - desired),
        started=now,
        progressed=now,
    )


def step(r: Rollout, old: Observed, new: Observed, now: float) -> Rollout:
    """One reconcile: roll back past the deadline, else take down what the ready replicas allow
    and bring up what the surge allows; complete when the candidate alone has the desired count."""
    if r.phase != ROLLING:
        return r
    progressed, seen = r.progressed, r.new_ready_seen
    if new.ready > seen:
        progressed, seen = now, new.ready
    if now - progressed > r.deadline:
        return rollback(
            replace(r, progressed=progressed, new_ready_seen=seen),
            f"no new replica ready for {r.deadline:g}s (progressDeadline); "
            f"{new.ready}/{r.desired} of the candidate ready",
        )
    # replicas asked to stop do not count as available, and new ones count once ready
    old_avail = min(old.ready, r.old_target)
    new_avail = min(new.ready, r.new_target)
    spare = old_avail + new_avail - (r.desired - r.unavailable)
    old_target = max(0, r.old_target - max(0, min(spare, old_avail)))
    # the surge bound counts every old replica still alive (stopping ones too), so what runs
    # never exceeds desired + surge even while Serve drains the old version
    room = r.desired + r.surge - max(old_target, old.alive)
    new_target = min(r.desired, max(r.new_target, room))
    out = replace(r, old_target=old_target, new_target=new_target, progressed=progressed, new_ready_seen=seen)
    if old_target == 0 and new.ready >= r.desired and new_target == r.desired:
        return replace(out, phase=COMPLETE, reason="every replica replaced")
    return out


def rollback(r: Rollout, why: str) -> Rollout:
    """Back to the stable version's desired count, the candidate's replicas removed."""
    return replace(r, old_target=r.desired, new_target=0, phase=ROLLED_BACK, reason=why)


def weights(stable: str, candidate: str, old: Observed, new: Observed, r: Rollout) -> dict[str, float]:
    """Traffic follows the ready replicas each version is meant to keep (all on the stable while
    none is ready, all on the candidate once complete)."""
    if r.phase == COMPLETE:
        return {stable: 0.0, candidate: 100.0}
    if r.phase == ROLLED_BACK:
        return {stable: 100.0, candidate: 0.0}
    o, n = min(old.ready, r.old_target), min(new.ready, r.new_target)
    if o + n == 0:
        return {stable: 100.0, candidate: 0.0} if r.old_target else {stable: 0.0, candidate: 100.0}
    share = round(100.0 * n / (o + n), 3)
    return {stable: round(100.0 - share, 3), candidate: share}
