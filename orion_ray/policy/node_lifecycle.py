"""Node lifecycle, pure: registered → ready → draining → drained → terminated, or lost.

Orion sees nodes through Ray's membership (alive nodes with their resources). Each observation is
compared with the last one:
- a node that appears is *registered*, and *ready* once Ray reports its free resources;
- a node that disappears is *terminated* when nothing of Orion's ran there (the autoscaler gave it
  back, or it was drained), and *lost* when Orion work was on it (it stopped heartbeating) — the
  scheduler then requeues that work;
- *cordoned* is a flag, not a state: no new placements; *draining* adds a deadline after which the
  work still there is preempted back to the queue; *drained* is a cordoned node with nothing left.

Provisioning (requested from the autoscaler, not yet registered) is the autoscaler's to report: a
node has no id before it registers. The book is plain data plus an ``ops`` dict that the scheduler
persists, so cordons and drains survive a scheduler restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from .fit import ACCELERATOR_LABEL, NodeView

POOL_LABEL = "orion.io/pool"
ENDED = ("terminated", "lost")
KEEP_ENDED = 200  # ended nodes kept for `orion nodes` and the health view
UNEXPECTED_DEATH = 2  # Ray's NodeDeathInfo.UNEXPECTED_TERMINATION


@dataclass
class Transition:
    """One change of a node's state (or its cordon flag)."""

    node_id: str
    before: str
    after: str
    at: float
    reason: str
    pool: Optional[str] = None


@dataclass
class NodeRecord:
    node_id: str
    state: str
    first_seen: float
    last_seen: float
    labels: dict[str, Any] = field(default_factory=dict)
    total: dict[str, Any] = field(default_factory=dict)
    ready_at: Optional[float] = None
    cordoned: bool = False
    cordon_reason: str = ""
    drain_started: Optional[float] = None
    drain_deadline: Optional[float] = None
    idle_since: Optional[float] = None
    ended_at: Optional[float] = None
    history: list[Any] = field(default_factory=list)  # [(state, at, reason)]

    @property
    def pool(self) -> Optional[str]:
        return self.labels.get(POOL_LABEL)

    @property
    def gpu_type(self) -> Optional[str]:
        return self.labels.get(ACCELERATOR_LABEL)

    @property
    def schedulable(self) -> bool:
        return self.state == "ready" and not self.cordoned

    @property
    def status(self) -> str:
        """What `orion nodes` shows: the state, with ``cordoned`` for a cordoned ready node."""
        return "cordoned" if self.state == "ready" and self.cordoned else self.state


class NodeBook:
    """Every node Orion has seen, with operator cordons and drains (``ops`` is what to persist)."""

    def __init__(self, ops: Optional[Mapping[str, Any]] = None):
        self.nodes: dict[str, NodeRecord] = {}
        ops = dict(ops or {})
        # operator intent, kept even for a node not seen yet (after a restart)
        self.cordons: dict[str, str] = dict(ops.get("cordoned") or {})
        self.drains: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (ops.get("draining") or {}).items()}
        self._observed = False

    # -- observation ---------------------------------------------------------------------------
    def observe(
        self,
        alive: Iterable[NodeView],
        busy: Mapping[str, int],
        now: float,
        deaths: Optional[Mapping[str, tuple[int, str]]] = None,
    ) -> list[Transition]:
        """Compare Ray's alive nodes with the last view. ``busy`` is Orion workloads per node;
        ``deaths`` is Ray's reason for each dead node (code 2: it died unexpectedly, e.g. it
        stopped heartbeating — lost even when Orion's work had already left it)."""
        deaths = deaths or {}
        out: list[Transition] = []
        seen = set()
        for n in alive:
            seen.add(n.node_id)
            rec = self.nodes.get(n.node_id)
            if rec is None or rec.state in ENDED:
                rec = NodeRecord(n.node_id, "registered", now, now, dict(n.labels), dict(n.total))
                self.nodes[n.node_id] = rec
                self._move(rec, "registered", now, "joined the Ray cluster", out, before="-")
                if n.node_id in self.cordons:
                    rec.cordoned, rec.cordon_reason = True, self.cordons[n.node_id]
            rec.last_seen = now
            rec.labels, rec.total = dict(n.labels), dict(n.total)
            if rec.state == "registered" and n.available is not None:
                rec.ready_at = now
                self._move(rec, "ready", now, "resources reported", out)
            if rec.state == "ready" and n.node_id in self.drains:
                d = self.drains[n.node_id]
                rec.cordoned = True
                rec.drain_started, rec.drain_deadline = d["started"], d["deadline"]
                self._move(rec, "draining", now, d.get("reason") or "drain", out)
            work = busy.get(n.node_id, 0)
            if work:
                rec.idle_since = None
            elif rec.idle_since is None:
                rec.idle_since = now
            if rec.state == "draining" and not work:
                self._move(rec, "drained", now, "no Orion work left", out)
        if not self._observed:  # intent kept for nodes that did not survive a restart is moot
            self._observed = True
            for gone in (set(self.cordons) | set(self.drains)) - seen:
                self.cordons.pop(gone, None)
                self.drains.pop(gone, None)
        for rec in list(self.nodes.values()):
            if rec.node_id in seen or rec.state in ENDED:
                continue
            work = busy.get(rec.node_id, 0)
            code, message = deaths.get(rec.node_id, (0, ""))
            if work:
                why = f"stopped heartbeating with {work} Orion workload(s) on it"
                self._move(rec, "lost", now, why + (f" ({message})" if message else ""), out)
            elif code == UNEXPECTED_DEATH:
                self._move(rec, "lost", now, message or "died unexpectedly", out)
            else:
                why = "released after drain" if rec.state == "drained" else "left the cluster"
                self._move(rec, "terminated", now, why, out)
            rec.ended_at = now
            self.cordons.pop(rec.node_id, None)
            self.drains.pop(rec.node_id, None)
        self._prune()
        return out

    # -- operations -----------------------------------------------------------------------------
    def cordon(self, node_id: str, now: float, reason: str = "cordoned") -> Transition:
        """No new placements on the node (what runs there keeps running)."""
        rec = self._live(node_id)
        before = rec.status
        rec.cordoned, rec.cordon_reason = True, reason
        self.cordons[node_id] = reason
        return Transition(node_id, before, rec.status, now, reason, rec.pool)

    def uncordon(self, node_id: str, now: float) -> Transition:
        """Placements allowed again; also ends a drain (the node stays in service)."""
        rec = self._live(node_id)
        before = rec.status
        rec.cordoned, rec.cordon_reason = False, ""
        self.cordons.pop(node_id, None)
        if self.drains.pop(node_id, None) is not None or rec.state in ("draining", "drained"):
            rec.state = "ready"
            rec.drain_started = rec.drain_deadline = None
            rec.history.append(("ready", now, "uncordoned"))
        return Transition(node_id, before, rec.status, now, "uncordoned", rec.pool)

    def drain(
        self, node_id: str, now: float, deadline_s: float, busy: int, reason: str = "drain"
    ) -> Transition:
        """Cordon, then let the work there end until ``now + deadline_s``; after that the scheduler
        preempts what is left (``overdue``). A drain already under way keeps its earlier deadline
        unless the new one is sooner."""
        rec = self._live(node_id)
        before = rec.status
        deadline = now + deadline_s
        old = self.drains.get(node_id)
        if old is not None:
            deadline = min(deadline, old["deadline"])
        started = old["started"] if old else now
        self.drains[node_id] = {"started": started, "deadline": deadline, "reason": reason}
        rec.cordoned, rec.cordon_reason = True, reason
        self.cordons[node_id] = reason
        rec.drain_started, rec.drain_deadline = started, deadline
        if rec.state in ("registered", "ready"):
            rec.state = "draining"
            rec.history.append(("draining", now, reason))
        if rec.state == "draining" and not busy:
            rec.state = "drained"
            rec.history.append(("drained", now, "no Orion work left"))
        return Transition(node_id, before, rec.status, now, reason, rec.pool)

    def overdue(self, now: float) -> list[str]:
        """Draining nodes past their deadline (their remaining work is to be preempted)."""
        return [
            r.node_id
            for r in self.nodes.values()
            if r.state == "draining" and r.drain_deadline is not None and now >= r.drain_deadline
        ]

    def drained_done(self, node_id: str, now: float) -> Optional[Transition]:
        """Mark a draining node drained once its work is gone (called as work leaves)."""
        rec = self.nodes.get(node_id)
        if rec is None or rec.state != "draining":
            return None
        before = rec.state
        rec.state = "drained"
        rec.history.append(("drained", now, "no Orion work left"))
        return Transition(node_id, before, "drained", now, "no Orion work left", rec.pool)

    # -- views ----------------------------------------------------------------------------------
    def unschedulable(self) -> set[str]:
        """Nodes that take no new placements (cordoned, draining, drained)."""
        return {r.node_id for r in self.nodes.values() if r.state not in ENDED and not r.schedulable} | set(
            self.cordons
        )

    def ops(self) -> dict[str, Any]:
        """Operator intent to persist: cordons and drains."""
        return {"cordoned": dict(self.cordons), "draining": {k: dict(v) for k, v in self.drains.items()}}

    def get(self, node_id: str) -> Optional[NodeRecord]:
        return self.nodes.get(node_id)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.nodes.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out

    # -- internals ------------------------------------------------------------------------------
    def _live(self, node_id: str) -> NodeRecord:
        rec = self.nodes.get(node_id)
        if rec is None:
            raise KeyError(node_id)
        if rec.state in ENDED:
            raise LookupError(f"node {node_id} is {rec.state}")
        return rec

    @staticmethod
    def _move(
        rec: NodeRecord, state: str, now: float, reason: str, out: list[Any], before: Optional[str] = None
    ) -> None:
        prev = rec.status if before is None else before
        rec.state = state
        rec.history.append((state, now, reason))
        out.append(Transition(rec.node_id, prev, rec.status, now, reason, rec.pool))

    def _prune(self) -> None:
        ended = sorted((r for r in self.nodes.values() if r.state in ENDED), key=lambda r: r.ended_at or 0.0)
        for r in ended[: max(0, len(ended) - KEEP_ENDED)]:
            del self.nodes[r.node_id]
