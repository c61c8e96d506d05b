"""A region's full listing after its status outbox overflowed (issue 17): the pure reconciliation
(policy/status_resync.py), the agent's listing and when it sends one (agent.py, agent_resync.py),
and the agent against a real control plane service end to end — idempotent, nothing lost, nothing
moved back. No Ray, no sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from orion_ray.control_plane.agent import RegionAgent
from orion_ray.control_plane.runs import RunBook
from orion_ray.control_plane.server import LockedPlane
from orion_ray.control_plane.service import ControlPlane
from orion_ray.errors import Conflict
from orion_ray.policy.region_state import Assignment, Heartbeat
from orion_ray.policy.status_resync import ENDED_UNSEEN, plan_resync
from orion_ray.store.sqlite import SQLiteStore
from tests.unit.test_region_agent import ADMIN, FakeHttp, _add, _dispatched


# == pure ==========================================================================================
def _plan(items, assignments=None, direct_open=(), last=3, through=9):
    return plan_resync(
        region="east",
        last_seq=last,
        through_seq=through,
        items=items,
        assignments=assignments or {},
        direct_open=direct_open,
        now=500.0,
    )


def _item(wid, status, gen=None, at=100.0):
    return {"workload_id": wid, "status": status, "generation": gen, "at": at, "region_workload_id": wid}


def test_a_listing_at_or_below_the_applied_sequence_is_a_replay():
    assert _plan([_item("r1", "running", 1)], last=9, through=9).replay
    assert _plan([_item("r1", "running", 1)], last=12, through=9).apply == []


def test_runs_are_applied_only_when_they_move_forward_at_their_generation():
    a = {
        "fwd": Assignment("fwd", "east", 2, "queued"),
        "same": Assignment("same", "east", 1, "running"),
        "ended": Assignment("ended", "east", 1, "completed"),
        "old": Assignment("old", "east", 3, "queued"),
        "moved": Assignment("moved", "west", 1, "queued"),
    }
    items = [
        _item("fwd", "running", 2),
        _item("same", "running", 1),
        _item("ended", "running", 1),
        _item("old", "running", 2),
        _item("moved", "running", 1),
        _item("gone", "completed", 4),
    ]
    p = _plan(items, a)
    assert [c["workload_id"] for c in p.apply] == ["fwd", "gone"]
    assert all(c["seq"] == 9 for c in p.apply)
    assert sorted(c["workload_id"] for c in p.stale) == ["moved", "old"]


def test_direct_runs_are_applied_and_held_ones_not_listed_end_unseen():
    p = _plan([_item("wl-1", "running")], direct_open=["wl-1", "wl-2"])
    assert [(c["workload_id"], c["status"]) for c in p.apply] == [("wl-1", "running"), ("wl-2", "cancelled")]
    assert p.apply[1]["reason"] == ENDED_UNSEEN and p.apply[1]["at"] == 500.0


def test_a_started_run_not_listed_is_reported_missing_and_left_alone():
    a = {
        "r1": Assignment("r1", "east", 1, "running"),
        "r2": Assignment("r2", "east", 1, "submitted"),  # may be a dispatch racing the listing
        "r3": Assignment("r3", "west", 1, "running"),
    }
    p = _plan([], a)
    assert p.missing == ["r1"] and p.apply == [] and p.stale == []


# == the agent =====================================================================================
@pytest.fixture
def env(tmp_path: Path):
    path = str(tmp_path / "orion.db")
    store = SQLiteStore(path)
    http = FakeHttp()

    def agent(keep: int = 3, clock: Any = lambda: 5000.0) -> RegionAgent:
        return RegionAgent(
            region="east",
            control_plane="http://cp",
            region_key="region-key",
            region_url="http://east",
            admin_key=ADMIN,
            store_path=path,
            state_file=tmp_path / "outbox.json",
            http=http,
            outbox_keep=keep,
            resync_terminal_s=3600,
            clock=clock,
        )

    return {"store": store, "http": http, "agent": agent, "tmp": tmp_path}


def _away(b: Any) -> tuple[int, Any]:
    raise httpx.ConnectError("the control plane is away")


def test_an_overflowed_outbox_sends_a_listing_instead_and_the_flag_survives_a_restart(env):
    store, http = env["store"], env["http"]
    http.routes[("POST", "/api/v1/regions/east/status")] = _away
    _dispatched(store, "wl-1", "r1", 1, "queued")
    _add(store, "wl-2", "queued")
    _add(store, "wl-2", "running")
    _add(store, "wl-3", "completed", at=4990.0)
    _add(store, "wl-4", "completed", at=10.0)  # ended long ago: not listed
    a = env["agent"]()
    a.tail()
    assert a.outbox.resync_due and len(a.outbox.pending) == 3
    b = env["agent"]()  # restarted before it could send: still owes a listing
    assert b.outbox.resync_due
    listings = []
    http.routes[("POST", "/api/v1/regions/east/resync")] = lambda body: (
        listings.append(body) or (200, {"last_seq": body["through_seq"]})
    )
    b.send()
    (sent,) = listings
    assert sent["through_seq"] == 5
    by = {i["region_workload_id"]: i for i in sent["items"]}
    assert sorted(by) == ["wl-1", "wl-2", "wl-3"]
    assert (by["wl-1"]["workload_id"], by["wl-1"]["generation"], by["wl-1"]["status"]) == ("r1", 1, "queued")
    assert by["wl-2"]["status"] == "running" and "generation" not in by["wl-2"]
    assert by["wl-2"]["demand"] == {"cpu": 1.0}
    assert b.outbox.pending == () and not b.outbox.resync_due and b.outbox.acked == 5
    c = env["agent"]()
    assert not c.outbox.resync_due and c.tail() == 0  # the cursor moved past what was listed


def test_a_gap_older_than_the_outbox_holds_is_filled_by_a_listing(env):
    store, http = env["store"], env["http"]
    for i in range(3):
        _add(store, f"wl-{i}", "queued")
    a = env["agent"](keep=100)
    a.tail()
    a.outbox = a.outbox.ack(2)  # 1 and 2 acknowledged, then the control plane lost them
    http.routes[("POST", "/api/v1/regions/east/status")] = lambda b: (
        409,
        {"error": {"details": [{"resync_from": 1}]}},
    )
    listings = []
    http.routes[("POST", "/api/v1/regions/east/resync")] = lambda body: (
        listings.append(body) or (200, {"last_seq": body["through_seq"]})
    )
    a.send()
    assert len(listings) == 1 and listings[0]["through_seq"] == 3 and len(listings[0]["items"]) == 3
    assert a.outbox.pending == ()


# == the agent against the control plane ===========================================================
class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _wire(http: FakeHttp, plane: LockedPlane) -> None:
    def status(b: Any) -> tuple[int, Any]:
        try:
            return 200, plane.status("east", b["changes"])
        except Conflict as exc:
            return 409, {"error": {"details": exc.details}}

    http.routes[("POST", "/api/v1/regions/east/status")] = status
    http.routes[("POST", "/api/v1/regions/east/resync")] = lambda b: (
        200,
        plane.resync("east", b["through_seq"], b["items"]),
    )


def test_the_control_plane_reconciles_a_listing_once_and_later_changes_go_on(env, tmp_path):
    import threading

    clock = Clock()
    cp_store = SQLiteStore(str(tmp_path / "cp.db"))
    plane = ControlPlane(cp_store, lost_timeout_s=60, clock=clock)
    book = RunBook(cp_store)
    locked = LockedPlane(plane, book, threading.RLock())
    plane.add_region("east")
    plane.heartbeat("east", Heartbeat(free_gpus={"gpu": 4}, free_cpus=8))
    from orion_ray.policy.regions import RunRequest

    plane.dispatch(RunRequest("r1", "acme", gpus=1, cpus=1))
    plane.outcome("r1", accepted=True)
    store, http = env["store"], env["http"]
    http.routes[("POST", "/api/v1/regions/east/status")] = _away
    _dispatched(store, "wl-1", "r1", 1, "queued")
    _dispatched(store, "wl-1", "r1", 1, "starting")
    _dispatched(store, "wl-1", "r1", 1, "running")
    _add(store, "wl-2", "queued")
    _add(store, "wl-2", "running")
    a = env["agent"](keep=2, clock=clock)
    a.tail()
    assert a.outbox.resync_due
    _wire(http, locked)
    a.send()
    assert plane.assignments["r1"].status == "running" and plane.regions["east"].status_seq == 5
    assert ("east", "wl-2") in plane.direct
    held = plane.tables.get("rg-east-wl-2")
    assert held is not None and held.state == "committed"
    again = plane.resync("east", 5, [])  # a resent listing: nothing changes
    assert again["replay"] and ("east", "wl-2") in plane.direct
    view = {c["region_workload_id"]: c["status"] for c in book.direct()}
    assert view == {"wl-2": "running"}
    _add(store, "wl-2", "completed", at=1000.0)  # afterwards: ordinary changes from seq 6
    a.tail()
    a.send()
    assert plane.regions["east"].status_seq == 6 and plane.direct == {}
    assert plane.tables.get("rg-east-wl-2").state == "released"
    assert {c["region_workload_id"]: c["status"] for c in book.direct()} == {"wl-2": "completed"}


def test_a_listing_releases_a_direct_run_that_ended_unseen(tmp_path):
    import threading

    clock = Clock()
    cp_store = SQLiteStore(str(tmp_path / "cp.db"))
    plane = ControlPlane(cp_store, lost_timeout_s=60, clock=clock)
    locked = LockedPlane(plane, RunBook(cp_store), threading.RLock())
    plane.add_region("east")
    ch = {"seq": 1, "workload_id": "wl-9", "status": "running", "at": 900.0, "tenant_id": "acme"}
    locked.status("east", [{**ch, "region_workload_id": "wl-9", "demand": {"gpu": 1}}])
    assert ("east", "wl-9") in plane.direct
    out = locked.resync("east", 7, [])
    assert out["applied"] == 1 and plane.direct == {}
    assert plane.tables.get("rg-east-wl-9").state == "released"
    assert plane.tables.usage("acme", now=1000.0, window_s=86_400).gpu_hours["gpu"] == pytest.approx(
        100 / 3600
    )
