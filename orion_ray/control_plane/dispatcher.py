"""The control plane's dispatcher: sends each reserved assignment to its region and reports the
outcome (docs/regions.md, "Dispatch").

A run the service placed (``region`` set, status ``dispatched``) is submitted to the region's own
``POST /api/v1/workloads`` with ``request_id = cp-<run>-g<generation>`` (a resend returns the first
workload) and the generation as a label; 202 commits the reservation, anything else releases it and
blocks the region (``ControlPlane.outcome``), and the next tick places the run elsewhere. The
signature label lets the region's agent tell the control plane's runs from a tenant's own run that
merely borrowed the key's shape (a tenant does not know the region's dispatch key).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import replace
from typing import Any, Callable, Optional

import httpx

from ..policy.region_state import Assignment
from ..policy.regions import FailureKind
from .runs import CpRun, Endpoint, RunBook
from .service import ControlPlane, dispatch_key

log = logging.getLogger("orion.control_plane")
GENERATION_LABEL = "orion.assignment_generation"
SIGNATURE_LABEL = "orion.dispatch_sig"
# a body every region refuses as invalid (4xx other than 409/429) is not worth a tour of all regions
MAX_GENERATIONS = 12


def signature(key: str, tenant_id: str, request_id: str) -> str:
    """The dispatch signature of ``request_id`` for ``tenant_id`` under the region's dispatch key."""
    msg = f"{tenant_id}\n{request_id}".encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()[:32]


def region_body(run: CpRun, a: Assignment, key: str) -> dict[str, Any]:
    """The workload body the region receives for generation ``a.generation`` of ``run``."""
    spec = dict(run.spec)
    meta = dict(spec.get("metadata") or {})
    rid = dispatch_key(run.run_id, a.generation)
    labels = dict(meta.get("labels") or {})
    labels[GENERATION_LABEL] = str(a.generation)
    labels[SIGNATURE_LABEL] = signature(key, run.tenant_id, rid)
    meta.update(tenant_id=run.tenant_id, request_id=rid, labels=labels)
    spec["metadata"] = meta
    return spec


def _same_placement(current: Optional[Assignment], a: Assignment) -> bool:
    """Whether ``current`` is still the placement ``a`` was sent as (status reports from the
    region may have moved its status on; a cancel or a move to another region/generation not)."""
    return (
        current is not None
        and current.region == a.region
        and current.generation == a.generation
        and current.status not in ("cancelled", "failed")
    )


def fail_run(plane: ControlPlane, book: RunBook, run_id: str, reason: str, status: str = "failed") -> None:
    """End a run at the control plane (its hold released) with ``reason``."""
    a = plane.assignments.get(run_id)
    if a is None:
        return
    ended = replace(a, status=status)
    plane.tables.write(now=plane.clock(), assignments=[ended], release=[dispatch_key(run_id, a.generation)])
    plane.assignments[run_id] = ended
    book.set_reason(run_id, reason)


class Dispatcher:
    """Sends what ``plane`` placed; ``lock`` guards the plane against the API's threads."""

    def __init__(
        self,
        plane: ControlPlane,
        book: RunBook,
        lock: threading.RLock,
        *,
        timeout_s: float = 10.0,
        http: Optional[Callable[..., httpx.Response]] = None,
    ) -> None:
        self.plane, self.book, self.lock = plane, book, lock
        self.timeout_s = timeout_s
        self._client = httpx.Client(timeout=timeout_s)
        self.http = http or self._client.request

    def pending(self) -> list[Assignment]:
        """Assignments placed and not yet sent, oldest run id first."""
        with self.lock:
            return [
                a
                for _, a in sorted(self.plane.assignments.items())
                if a.region is not None and a.status == "dispatched"
            ]

    def send_all(self) -> dict[str, str]:
        """Send every pending assignment; ``run_id → outcome`` (accepted or the failure kind)."""
        return {a.run_id: self.send(a) for a in self.pending()}

    def send(self, a: Assignment) -> str:
        """Submit ``a`` to its region (outside the lock: a slow region holds nothing else up)."""
        assert a.region is not None
        with self.lock:
            if not _same_placement(self.plane.assignments.get(a.run_id), a):  # cancelled or moved
                return "skipped"
        run = self.book.get(a.run_id)
        if run is None:  # placed but its body never stored (a crash in between): it cannot run
            with self.lock:
                fail_run(self.plane, self.book, a.run_id, "lost: no stored body to dispatch")
            return "failed"
        ep = self.book.endpoint(a.region)
        if ep is None:
            return self._outcome(a, "refused", "the region has not joined (no endpoint)")
        kind, detail = self._post(ep, run, a)
        if kind == "accepted":
            return "accepted"
        if kind == "invalid" or a.generation >= MAX_GENERATIONS:
            with self.lock:
                self.plane.outcome(a.run_id, accepted=False, kind="refused", detail=detail)
                fail_run(self.plane, self.book, a.run_id, f"refused: {detail}")
            return "failed"
        return self._outcome(a, kind, detail)  # type: ignore[arg-type]

    def _post(self, ep: Endpoint, run: CpRun, a: Assignment) -> tuple[str, str]:
        body = region_body(run, a, ep.key)
        try:
            r = self.http(
                "POST",
                ep.url.rstrip("/") + "/api/v1/workloads",
                json=body,
                headers={"Authorization": f"Bearer {ep.key}"},
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:  # unreachable or too slow: the next region
            return "timeout", f"{type(exc).__name__}: {exc}"[:500]
        if r.status_code == 202:
            wid = str(r.json().get("workload_id", ""))
            with self.lock:
                self.book.accepted(str(a.region), wid, a.run_id, a.generation, now=self.plane.clock())
                current = self.plane.assignments.get(a.run_id)
                if current is not None and _same_placement(current, a):
                    if current.status == "dispatched":
                        self.plane.outcome(a.run_id, accepted=True)
                    else:  # the region's status reports came in before its 202: keep them
                        self.plane.tables.commit(
                            dispatch_key(a.run_id, a.generation), now=self.plane.clock(), assignment=current
                        )
                    return "accepted", wid
            # cancelled or moved while the request was out: this copy must not run
            self._cancel_copy(ep, wid)
            return "accepted", wid
        detail = f"{r.status_code}: {r.text[:400]}"
        if r.status_code == 429:
            return "throttled", detail
        if r.status_code in (400, 422):
            return "invalid", detail
        if r.status_code >= 500:
            return "timeout", detail
        return "refused", detail  # 401/403/409 (draining) and the like: this region, not the run

    def _cancel_copy(self, ep: Endpoint, wid: str) -> None:
        try:
            self.http(
                "DELETE",
                f"{ep.url.rstrip('/')}/api/v1/workloads/{wid}",
                headers={"Authorization": f"Bearer {ep.key}"},
                timeout=self.timeout_s,
            )
        except httpx.HTTPError:  # the heartbeat's fencing cancels it when the region reports it
            log.warning("could not cancel %s at its region; fencing will", wid)

    def _outcome(self, a: Assignment, kind: FailureKind, detail: str) -> str:
        with self.lock:
            if not _same_placement(self.plane.assignments.get(a.run_id), a):
                return "skipped"  # cancelled or moved meanwhile: nothing to release or block
        gpu_type = None
        req = self.plane.requests.get(a.run_id) or {}
        if kind in ("throttled", "launch_failed"):
            gpu_type = req.get("gpu_type")
        with self.lock:
            self.plane.outcome(a.run_id, accepted=False, kind=kind, detail=detail, gpu_type=gpu_type)
        log.info("dispatch of %s to %s: %s (%s)", a.run_id, a.region, kind, detail)
        return kind

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
