"""Serving in the scaling events: every manual model scale, every rollout step and every Serve
autoscaling decision becomes a ``/admin/v1/scaling/events`` row (kind ``model``) with its trigger,
before → after and outcome.

Serve's autoscaler keeps its decisions to itself in Ray 2.60 (``autoscaling_detail`` exists in
the schema but the controller never fills it), so a decision is read as a change of the
deployment's ``target_num_replicas`` in the controller's details, polled by the manager's loop.
A change Orion asked for (a scale, a rollout) is attributed to that request, any other to Serve's
autoscaler. An event is stored once its outcome is known (``completed`` when the running replicas
reach the target, ``superseded`` by a newer target, ``timed_out`` after the deployment's
``ready_deadline``), through the scheduler, which owns the store; until the scheduler takes
them, events wait in an outbox kept with the manager's state.

No Ray here: the sink (how events reach the scheduler) is passed in.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

log = logging.getLogger("orion.serving")

KIND = "model"
MAX_OUTBOX = 2000
MANUAL = "manual"
ROLLOUT = "rollout"
AUTOSCALER = "serve_autoscaler"


def store_events(store: Any, events: list[dict[str, Any]]) -> int:
    """Append serving's events to the store's ``scaling_events`` (the scheduler's side); only
    the fields a row has are taken, the rest go to its details."""
    n = 0
    for e in events[:MAX_OUTBOX]:
        if not isinstance(e, dict) or "at" not in e:
            continue
        store.add_scaling_event({**e, "kind": KIND})
        n += 1
    return n


class ScalingLog:
    """Open events (one per deployment, awaiting its outcome), the last target Serve reported
    per deployment, and the outbox of finished events."""

    def __init__(self, sink: Optional[Callable[[list[dict]], Any]] = None):
        self.sink = sink
        self.open: dict[str, dict] = {}
        self.targets: dict[str, int] = {}
        self.outbox: list[dict] = []

    # -- state kept with the manager's -----------------------------------------------------------
    def dump(self) -> dict:
        """What survives a restart of the manager (open events and the outbox)."""
        return {"open": self.open, "targets": self.targets, "outbox": self.outbox[-MAX_OUTBOX:]}

    def load(self, saved: Optional[dict]) -> None:
        if saved:
            self.open = dict(saved.get("open") or {})
            self.targets = {k: int(v) for k, v in (saved.get("targets") or {}).items()}
            self.outbox = list(saved.get("outbox") or [])

    # -- what happens ----------------------------------------------------------------------------
    def requested(
        self,
        dep_id: str,
        model_id: str,
        *,
        trigger: str,
        before: Optional[int],
        after: int,
        reason: str,
        now: float,
    ) -> None:
        """Orion asked Serve for ``after`` replicas of ``dep_id`` (a scale or a rollout step)."""
        if before is None:
            before = self.targets.get(dep_id)
        self._open(dep_id, model_id, trigger, before, after, reason, now)
        # Serve's target will read ``after`` from now on: that is this request, not its autoscaler
        self.targets[dep_id] = int(after)

    def observe(
        self,
        dep_id: str,
        model_id: str,
        *,
        target: Optional[int],
        running: int,
        now: float,
        deadline: float,
    ) -> None:
        """What Serve reports for ``dep_id``: its target (None when unknown) and running replicas.
        A target nobody asked for is Serve's autoscaler deciding."""
        ev = self.open.get(dep_id)
        # Serve applies a request asynchronously: until its target first reads ``after``, a read of
        # the old target is the request not applied yet, not the autoscaler going back
        stale = (
            ev is not None
            and ev["trigger"] != AUTOSCALER
            and not ev.get("applied")
            and target == ev["before"]
            and target != ev["after"]
        )
        if target is not None and not stale:
            if ev is not None and target == ev["after"]:
                ev["applied"] = True
            last = self.targets.get(dep_id)
            self.targets[dep_id] = target
            if last is not None and target != last and (ev is None or ev["after"] != target):
                self._open(
                    dep_id,
                    model_id,
                    AUTOSCALER,
                    last,
                    target,
                    f"Serve's autoscaler: target {last} -> {target} replicas",
                    now,
                )
        ev = self.open.get(dep_id)
        if ev is None:
            return
        if running == ev["after"] and (target is None or target == ev["after"]):
            self._close(dep_id, "completed", now)
        elif now - ev["at"] > deadline:
            self._close(dep_id, "timed_out", now, running=running)

    def forget(self, dep_id: str, now: float) -> None:
        """The deployment is gone: its open event ends ``cancelled``."""
        if dep_id in self.open:
            self._close(dep_id, "cancelled", now)
        self.targets.pop(dep_id, None)

    def flush(self) -> int:
        """Hand the outbox to the sink; kept for the next tick when the scheduler is away."""
        if not self.outbox or self.sink is None:
            return 0
        batch = list(self.outbox)
        try:
            self.sink(batch)
        except Exception as exc:  # the scheduler is restarting: the events wait
            log.info("scaling events wait for the scheduler: %s", exc)
            return 0
        del self.outbox[: len(batch)]
        return len(batch)

    # -- inside ----------------------------------------------------------------------------------
    def _open(
        self,
        dep_id: str,
        model_id: str,
        trigger: str,
        before: Optional[int],
        after: int,
        reason: str,
        now: float,
    ) -> None:
        if dep_id in self.open:
            self._close(dep_id, "superseded", now)
        self.open[dep_id] = {
            "at": now,
            "trigger": trigger,
            "reason": reason,
            "before": before,
            "after": int(after),
            "model_id": model_id,
            "deployment": dep_id,
        }

    def _close(self, dep_id: str, outcome: str, now: float, **details: Any) -> None:
        ev = self.open.pop(dep_id)
        ev.pop("applied", None)
        self.outbox.append({**ev, **details, "outcome": outcome, "duration_s": round(now - ev["at"], 3)})
        if len(self.outbox) > MAX_OUTBOX:  # the scheduler has been away for long: oldest go first
            del self.outbox[: len(self.outbox) - MAX_OUTBOX]
