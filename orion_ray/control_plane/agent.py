"""The region agent: joins a regional Orion to a control plane (docs/regions.md, "Protocol").

It is its own small process on the head's host, started by ``orion up --control-plane URL --region
NAME --region-key KEY`` and stopped by ``orion down``, rather than a part of the scheduler actor or
a detached actor: the region key never enters a Ray worker process (where tenant code runs), the
scheduler's loop stays as it is, and "the region is cut off from the control plane" is exactly
"this process is stopped" (the partition tests SIGSTOP it while the region keeps running).

Each ``heartbeat_s`` it: tails the store's transitions (every workload: the control plane's and
those submitted here directly) into the status outbox and sends it; heartbeats its capacity, queue,
launch health, applied config and the control plane's runs it holds; obeys the answer — cancels
stale generations (fencing), records the state (a draining region refuses new dispatches), pulls
and applies a wanted config snapshot. The outbox and the transition cursor are written together to
one file after each change, so a restarted agent resends what was not acknowledged (the control
plane ignores a resent sequence) and skips nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

import httpx

from ..names import REGION_GATE_SETTING as GATE
from ..policy import config_snapshot as cfg
from ..policy.direct_usage import demand_of
from ..policy.fit import ACCELERATOR_LABEL
from ..policy.status_outbox import Outbox
from ..store.files import write_private
from ..store.sqlite import SQLiteStore
from .agent_resync import listing, spec_of
from .dispatcher import GENERATION_LABEL, SIGNATURE_LABEL, signature

log = logging.getLogger("orion.region_agent")
DISPATCHED = re.compile(r"^cp-(?P<run>[A-Za-z0-9_.\-]{1,128})-g(?P<gen>[0-9]{1,9})$")

STATUSES = {"submitted", "queued", "starting", "running", "preempted", "completed", "failed", "cancelled"}
TERMINAL = ("completed", "failed", "cancelled")


def origin_of(
    request_id: Optional[str], tenant_id: str, labels: dict[str, Any], key: str
) -> Optional[tuple[str, int]]:
    """``(run_id, generation)`` when the workload is a control-plane dispatch (its request id has the
    dispatch shape and its signature checks out under the region's dispatch key), else None."""
    m = DISPATCHED.match(request_id or "")
    if m is None:
        return None
    want = signature(key, tenant_id, str(request_id))
    if str(labels.get(SIGNATURE_LABEL, "")) != want or str(labels.get(GENERATION_LABEL)) != m["gen"]:
        return None
    return m["run"], int(m["gen"])


class RegionAgent:
    """One region's side of the protocol; ``step`` is one pass (the loop calls it forever)."""

    def __init__(
        self,
        *,
        region: str,
        control_plane: str,
        region_key: str,
        region_url: str,
        admin_key: str,
        store_path: str,
        state_file: Path,
        labels: Optional[dict[str, str]] = None,
        heartbeat_s: float = 5.0,
        outbox_keep: int = 10_000,
        resync_terminal_s: float = 86_400.0,
        http: Optional[Callable[..., httpx.Response]] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.region, self.cp, self.region_url = region, control_plane.rstrip("/"), region_url.rstrip("/")
        self.region_key, self.admin_key = region_key, admin_key
        self.store_path = store_path
        self._store: Optional[SQLiteStore] = None
        self.state_file = state_file
        self.labels = dict(labels or {})
        self.heartbeat_s = heartbeat_s
        self._client = httpx.Client(timeout=10)
        self.http = http or self._client.request
        self.clock = clock
        self.joined = False
        self.state = "active"
        self._capacity: dict[str, Any] = {}
        self._applied: dict[str, Any] = {}
        # the region's own API answers within this, or the last answer stands (heartbeats first)
        self.region_timeout_s = max(1.0, min(5.0, 2 * heartbeat_s))
        st = self._load()
        self.cursor: int = int(st.get("cursor", 0))
        self.outbox = Outbox(
            tuple(st.get("pending", ())),
            int(st.get("next_seq", 1)),
            int(st.get("acked", 0)),
            keep=outbox_keep,
            resync_due=bool(st.get("resync_due", False)),
        )
        # ended workloads this recent go into a resync listing (with every one not ended)
        self.resync_terminal_s = resync_terminal_s

    # -- persistence ----------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        body = {
            "cursor": self.cursor,
            "next_seq": self.outbox.next_seq,
            "acked": self.outbox.acked,
            "pending": list(self.outbox.pending),
            "resync_due": self.outbox.resync_due,
        }
        write_private(tmp, json.dumps(body))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)  # the cursor and the outbox move together, or not at all

    @property
    def store(self) -> SQLiteStore:
        if self._store is None:
            self._store = SQLiteStore(self.store_path, busy_timeout_ms=2000)
        return self._store

    # -- the steps --------------------------------------------------------------------------------
    def tail(self, limit: int = 2000) -> int:
        """Append the store's new transitions to the outbox (cursor and outbox saved together)."""
        rows = self.store._query(
            "SELECT t.id, t.workload_id, t.status, t.at, t.reason, w.request_id, w.tenant_id, w.spec"
            " FROM transitions t JOIN workloads w ON w.workload_id = t.workload_id"
            " WHERE t.id > ? ORDER BY t.id LIMIT ?",
            (self.cursor, limit),
        )
        if not rows:
            return 0
        box = self.outbox
        for tid, wid, status, at, reason, rid, tenant, spec in rows:
            self.cursor = int(tid)
            if status not in STATUSES:
                continue
            change: dict[str, Any] = {
                "workload_id": wid,
                "status": status,
                "at": float(at),
                "reason": (reason or "")[:2000],
                "tenant_id": tenant,
                "region_workload_id": wid,
                "demand": demand_of(spec_of(spec)),
            }
            who = origin_of(rid, tenant, _labels(spec), self.admin_key)
            if who is not None:
                change.update(workload_id=who[0], generation=who[1])
            box = box.append(change)
        self.outbox = box
        self._save()
        return len(rows)

    def send(self) -> int:
        """Send the unacknowledged changes (a gap answered with where to resend from); a full
        listing instead when the outbox overflowed or the gap is older than what it holds."""
        sent = 0
        for _ in range(20):  # bounded: what is left goes on the next pass
            if self.outbox.resync_due:
                sent += self.resync()
                continue
            batch = self.outbox.batch(500)
            if not batch:
                break
            r = self._cp("POST", f"/api/v1/regions/{self.region}/status", {"changes": batch})
            if r.status_code == 200:
                self.outbox = self.outbox.ack(int(r.json()["last_seq"]))
            elif r.status_code == 409:
                details = (r.json().get("error") or {}).get("details") or r.json().get("details") or []
                at = next((d.get("resync_from") for d in details if "resync_from" in d), None)
                if at is None:
                    raise RuntimeError(f"status refused: {r.text[:300]}")
                box, again = self.outbox.resend_from(int(at))
                # the control plane is behind what we still hold: it acknowledged up to at-1
                self.outbox = box
                if not again:  # dropped, or the control plane lost what we hold as acknowledged
                    log.warning("status resync from %s asked, older than the outbox holds: a listing", at)
                    self.outbox = replace(box, resync_due=True)
                self._save()
                continue
            else:
                raise RuntimeError(f"status: {r.status_code} {r.text[:300]}")
            sent += len(batch)
            self._save()
        return sent

    def resync(self) -> int:
        """Send a full listing as of the last sequence appended (``policy/status_resync.py``):
        every workload not ended and the recently ended ones; the changes it covers are dropped
        and the cursor moves past what it saw. The items sent."""
        through = self.outbox.next_seq - 1
        if through < 1:  # nothing was ever appended: nothing to make up for
            self.outbox = replace(self.outbox, resync_due=False)
            return 0
        top, items = self.listing()
        body = {"through_seq": through, "items": items}
        r = self._cp("POST", f"/api/v1/regions/{self.region}/resync", body)
        if r.status_code != 200:
            raise RuntimeError(f"resync: {r.status_code} {r.text[:300]}")
        # later transitions (past ``top``) go out as changes after ``through``: forward only
        self.outbox = self.outbox.resynced(through)
        self.cursor = max(self.cursor, top)
        self._save()
        log.info("status resync through %s: %s workloads listed", through, len(items))
        return len(items)

    def listing(self) -> tuple[int, list[dict[str, Any]]]:
        """The last transition id and the region's listing (``agent_resync.listing``)."""
        since = self.clock() - self.resync_terminal_s
        return listing(
            self.store, lambda rid, t, spec: origin_of(rid, t, _labels(spec), self.admin_key), since
        )

    def heartbeat(self) -> dict[str, Any]:
        """Report capacity, queue, config and held runs; act on the answer."""
        if not self.joined:
            r = self._cp(
                "POST",
                f"/api/v1/regions/{self.region}/join",
                {"url": self.region_url, "dispatch_key": self.admin_key},
            )
            r.raise_for_status()
            self.joined = True
        held = self.held()
        applied = self.applied_config()
        try:
            self._capacity = self.capacity()
        except Exception as exc:
            # a busy region API must not make a live region look lost (its queue still runs):
            # the heartbeat goes out with the last capacity known
            log.warning("region agent capacity: %s: %s (last known sent)", type(exc).__name__, exc)
        body = {**self._capacity, "labels": self.labels, "status_seq": self.outbox.next_seq - 1}
        body.update(
            applied_config_version=int(applied.get("version") or 0),
            applied_config_sha256=str(applied.get("sha256") or ""),
            assigned=[[run, gen] for run, gen in held],
        )
        r = self._cp("POST", f"/api/v1/regions/{self.region}/heartbeat", body)
        if r.status_code == 404:  # the control plane forgot us (a new store): join again
            self.joined = False
        r.raise_for_status()
        ans = r.json()
        self.obey(ans, held)
        return ans

    def obey(self, ans: dict[str, Any], held: dict[tuple[str, int], str]) -> None:
        """Cancel stale generations; keep the state for the submit gate; pull a wanted config."""
        for c in ans.get("cancel") or []:
            wid = held.get((str(c["workload_id"]), int(c["generation"])))
            if wid is not None:
                log.info(
                    "fencing: cancelling %s (run %s generation %s)", wid, c["workload_id"], c["generation"]
                )
                self._region("DELETE", f"/api/v1/workloads/{wid}")
        state = str(ans.get("state") or "active")
        if state != self.state:
            self.store.put_setting(GATE, {"state": state, "at": self.clock()})
            self.state = state
        wanted = ans.get("wanted_config") or None
        if wanted and int(wanted.get("version") or 0) != int(self.applied_config().get("version") or 0):
            self.apply_config(int(wanted["version"]))

    def held(self) -> dict[tuple[str, int], str]:
        """The control plane's runs this region holds, not ended: ``(run, generation) → workload``."""
        rows = self.store._query(
            "SELECT workload_id, request_id, tenant_id, spec FROM workloads WHERE request_id LIKE 'cp-%'"
            " AND status NOT IN ('completed', 'failed', 'cancelled')",
            (),
        )
        out: dict[tuple[str, int], str] = {}
        for wid, rid, tenant, spec in rows:
            who = origin_of(rid, tenant, _labels(spec), self.admin_key)
            if who is not None:
                out[who] = wid
        return out

    def capacity(self) -> dict[str, Any]:
        """Free GPUs by type, free CPUs, queue depth and launch health, from the region's API."""
        free_gpus: dict[str, float] = {}
        types: set[str] = set()
        cpus = 0.0
        nodes = self._region("GET", "/admin/v1/infrastructure/nodes?include_ended=false").json()
        for n in nodes.get("items", []):
            if not n.get("schedulable", True):
                continue
            free = n.get("free") or {}
            gtype = n.get("gpu_type") or "gpu"
            if (n.get("resources") or {}).get("GPU"):
                types.add(gtype)
                free_gpus[gtype] = free_gpus.get(gtype, 0.0) + float(free.get("GPU", 0.0))
            cpus += float(free.get("CPU", 0.0))
        types |= self.pool_gpu_types()
        queue = self._region("GET", "/api/v1/queue").json()
        return {
            "free_gpus": free_gpus,
            "gpu_types": sorted(types),
            "free_cpus": cpus,
            "queue_depth": int(queue.get("total_queued", 0)),
            "launch_failures": self.launch_failures(),
            "launch_p95_s": self.launch_p95_s(),
        }

    def launch_failures(self, window_s: float = 600.0) -> int:
        """Workloads that failed before running in the last ``window_s`` (launch health)."""
        rows = self.store._query(
            "SELECT COUNT(*) FROM transitions t WHERE t.status='failed' AND t.at > ? AND NOT EXISTS"
            " (SELECT 1 FROM transitions r WHERE r.workload_id=t.workload_id AND r.status='running')",
            (self.clock() - window_s,),
        )
        return int(rows[0][0]) if rows else 0

    def launch_p95_s(self, window_s: float = 600.0) -> Optional[float]:
        """p95 of submit → running over the runs that started in the last ``window_s``."""
        rows = self.store._query(
            "SELECT MIN(CASE WHEN status='running' THEN at END)"
            " - MIN(CASE WHEN status='submitted' THEN at END)"
            " FROM transitions WHERE workload_id IN (SELECT workload_id FROM transitions WHERE"
            " status='running' AND at > ?) GROUP BY workload_id",
            (self.clock() - window_s,),
        )
        waits = sorted(float(r[0]) for r in rows if r[0] is not None)
        return waits[min(len(waits) - 1, int(0.95 * len(waits)))] if waits else None

    def applied_config(self) -> dict[str, Any]:
        """The region's applied snapshot (version 0 when the region cannot say)."""
        try:
            r = self._region("GET", "/admin/v1/config/applied", check=False)
        except httpx.HTTPError:
            return self._applied  # the last answer: a busy region has not changed its config
        self._applied = dict(r.json()) if r.status_code == 200 else {}
        return self._applied

    def apply_config(self, version: int) -> bool:
        """Pull snapshot ``version``, verify its hash, hand it to the region's apply route (the
        scheduler's ``apply_config_snapshot``); a region without it keeps its config and says so."""
        r = self._cp("GET", f"/api/v1/config/snapshots/{version}")
        r.raise_for_status()
        snap = r.json()
        cfg.verify(int(snap["version"]), str(snap["sha256"]), str(snap["text"]))
        body = {"version": snap["version"], "sha256": snap["sha256"], "text": snap["text"]}
        a = self._region("POST", "/admin/v1/config/apply", body, check=False)
        if a.status_code in (404, 405):
            log.warning("config %s not applied: this region has no config apply route yet", version)
            return False
        if a.status_code >= 400:
            log.warning("config %s refused by the region: %s %s", version, a.status_code, a.text[:300])
            return False
        return True

    def step(self) -> None:
        """One pass; each part's failure is logged and the others still run."""
        for part in (self.tail, self.send, self.heartbeat):
            try:
                part()
            except Exception as exc:  # the control plane away, the region busy: next pass
                log.warning("region agent %s: %s: %s", part.__name__, type(exc).__name__, exc)

    def run_forever(self) -> None:
        """``step`` every ``heartbeat_s``, for ever."""
        while True:
            started = time.monotonic()
            self.step()
            time.sleep(max(0.05, self.heartbeat_s - (time.monotonic() - started)))

    # -- HTTP ------------------------------------------------------------------------------------
    def _cp(self, method: str, path: str, body: Optional[dict[str, Any]] = None) -> httpx.Response:
        return self.http(
            method, self.cp + path, json=body, headers={"Authorization": f"Bearer {self.region_key}"}
        )

    def pool_gpu_types(self) -> set[str]:
        """GPU types the region's worker pools can launch (``max_size`` > 0), from its autoscaler's
        last report: a region whose GPU pool is at zero nodes still offers that type, so the
        control plane may send it a run that its autoscaler then launches capacity for. A region
        without the report (no autoscaler, an older region) offers only the nodes it has."""
        r = self._region("GET", "/admin/v1/infrastructure/health", check=False)
        if r.status_code != 200:
            return set()
        types: set[str] = set()
        for pool in ((r.json().get("autoscaler") or {}).get("pools")) or []:
            spec = pool.get("spec") or {}
            if (spec.get("node_resources") or {}).get("GPU") and int(spec.get("max_size") or 0) > 0:
                types.add(str((spec.get("labels") or {}).get(ACCELERATOR_LABEL) or "gpu"))
        return types

    def _region(
        self, method: str, path: str, body: Optional[dict[str, Any]] = None, check: bool = True
    ) -> httpx.Response:
        r = self.http(
            method,
            self.region_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=self.region_timeout_s,
        )
        if check and r.status_code >= 400 and not (method == "DELETE" and r.status_code == 404):
            raise RuntimeError(f"region {method} {path}: {r.status_code} {r.text[:300]}")
        return r


def _labels(spec_text: str) -> dict[str, Any]:
    try:
        return dict(((json.loads(spec_text) or {}).get("metadata") or {}).get("labels") or {})
    except (ValueError, AttributeError):
        return {}
