"""Regions with real processes (issue 17): a control plane process and two regional `orion up`s.

The tests run in file order on one shared set-up; the last one kills a region for good. Every run
is a shell job appending to a marker file, so "ran once" is counted, not assumed.
"""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from tests.regions.live import LOST_TIMEOUT_S, Live, pause, resume, stop_region, wait_for

pytestmark = pytest.mark.timeout(600)


def _m() -> str:
    return uuid.uuid4().hex[:10]


def _done(live: Live, run_id: str, status: str = "completed"):
    return wait_for(
        lambda: (r := live.cp.run(run_id))["status"] == status and r, about=f"{run_id} {status}", within_s=240
    )


def _direct(live: Live, region: str, body: dict) -> str:
    """Submit straight to a region (not through the control plane); the region's workload id."""
    with live.regions[region].client() as c:
        r = c.post("/api/v1/workloads", json=body)
    assert r.status_code == 202, r.text
    return r.json()["workload_id"]


def _cancel_direct(live: Live, region: str, wid: str) -> None:
    with live.regions[region].client() as c:
        c.delete(f"/api/v1/workloads/{wid}")


def _region_status(live: Live, region: str, wid: str) -> str:
    with live.regions[region].client() as c:
        return c.get(f"/api/v1/workloads/{wid}").json()["status"]


def test_dispatch_by_pin_selector_and_capacity_and_direct_runs_show(live: Live):
    # east's GPUs are taken by a run submitted straight to east: it shows at the control plane
    blocker = _m()
    wid = _direct(live, "r-east", live.job(blocker, sleep_s=60, gpus=2))
    wait_for(lambda: live.cp.region("r-east")["free_gpus"].get("gpu") == 0, about="east full")
    pin, sel, cap = _m(), _m(), _m()
    r_pin = live.cp.submit(live.job(pin, region="r-west"))
    r_sel = live.cp.submit(live.job(sel, region_selector={"data": "s3-east"}))  # CPU only: fits
    r_cap = live.cp.submit(live.job(cap, gpus=1))  # only west has a free GPU
    assert [r.status_code for r in (r_pin, r_sel, r_cap)] == [202, 202, 202]
    assert r_pin.json()["region"] == "r-west" and r_sel.json()["region"] == "r-east"
    assert r_cap.json()["region"] == "r-west"
    for r in (r_pin, r_cap):
        _done(live, r.json()["workload_id"])
    direct = wait_for(
        lambda: next(
            (i for i in live.cp.listing() if i["workload_id"] == wid and i["status"] == "running"), None
        ),
        about="the direct run in the control plane's listing",
    )
    assert direct["origin"] == "region" and direct["region"] == "r-east" and direct["generation"] is None
    _cancel_direct(live, "r-east", wid)
    _done(live, r_sel.json()["workload_id"])
    items = {i["workload_id"]: i for i in live.cp.listing()}
    for r, region in ((r_pin, "r-west"), (r_sel, "r-east"), (r_cap, "r-west")):
        got = items[r.json()["workload_id"]]
        assert (got["region"], got["generation"], got["status"]) == (region, 1, "completed")
    assert [live.ran(m) for m in (pin, sel, cap)] == [1, 1, 1]
    wait_for(
        lambda: any(i["workload_id"] == wid and i["status"] == "cancelled" for i in live.cp.listing()),
        about="the direct run cancelled in the view",
    )


def test_a_draining_region_takes_nothing_new(live: Live):
    live.cp.set_state("r-east", "draining")
    try:
        r = live.cp.submit(live.job(_m()))
        assert r.status_code == 202 and r.json()["region"] == "r-west"
        pinned = live.cp.submit(live.job(_m(), region="r-east"))
        assert pinned.status_code == 429 and pinned.headers.get("Retry-After")
        assert "r-east" in pinned.text
        # the region itself refuses a dispatch once its agent heard it is draining (409, not 5xx)
        body = live.job(_m())
        body["metadata"]["request_id"] = "cp-fake-g1"

        def refused():
            with live.regions["r-east"].client() as c:
                return c.post("/api/v1/workloads", json=body).status_code == 409

        wait_for(refused, about="east refusing dispatches")
        _done(live, r.json()["workload_id"])
    finally:
        live.cp.set_state("r-east", "active")


def test_a_partitioned_region_loses_its_queued_run_and_the_stale_copy_is_fenced(live: Live):
    blocker, run = _m(), _m()
    wid = _direct(live, "r-east", live.job(blocker, sleep_s=90, gpus=2))
    wait_for(lambda: live.cp.region("r-east")["free_gpus"].get("gpu") == 0, about="east full")
    # a region that fits always wins over one that would only queue: west drains for the submit
    live.cp.set_state("r-west", "draining")
    try:
        r = live.cp.submit(live.job(run, gpus=1, regions=["r-east", "r-west"]))
    finally:
        live.cp.set_state("r-west", "active")
    assert r.status_code == 202 and r.json()["region"] == "r-east", r.text
    rid = r.json()["workload_id"]
    copy = wait_for(lambda: next((c for c in live.cp.run(rid)["copies"] if c["status"] == "queued"), None))
    agent = live.regions["r-east"].agent_pid()
    pause(agent)  # a partition: east runs on, the control plane hears nothing
    try:
        wait_for(lambda: live.cp.region("r-east")["state"] == "inactive", within_s=LOST_TIMEOUT_S + 30)
        done = _done(live, rid)
        assert (done["region"], done["generation"]) == ("r-west", 2)
    finally:
        resume(agent)
    # back: east hears that generation 1 is stale and cancels its copy
    wait_for(
        lambda: _region_status(live, "r-east", copy["region_workload_id"]) == "cancelled", about="fenced"
    )
    assert live.cp.region("r-east")["state"] == "active"
    _cancel_direct(live, "r-east", wid)
    assert live.ran(run) == 1


def test_a_control_plane_restart_loses_nothing(live: Live):
    marker = _m()
    r = live.cp.submit(live.job(marker, sleep_s=4, region="r-west"))
    assert r.status_code == 202
    rid = r.json()["workload_id"]
    wait_for(lambda: live.cp.run(rid)["status"] == "running", about="running")
    live.cp.down()
    wait_for(lambda: live.ran(marker) == 1, about="the run went on without the control plane")
    with sqlite3.connect(f"file:{live.cp.home / 'control-plane.db'}?mode=ro", uri=True) as db:
        (held,) = db.execute("SELECT state FROM quota_reservations WHERE key=?", (f"cp-{rid}-g1",)).fetchone()
    assert held == "committed"  # the hold is on disk while the control plane is away
    live.cp.up()
    got = _done(live, rid)  # the region's outbox delivered what happened meanwhile
    assert (got["region"], got["generation"]) == ("r-west", 1)
    with sqlite3.connect(f"file:{live.cp.home / 'control-plane.db'}?mode=ro", uri=True) as db:
        (held,) = db.execute("SELECT state FROM quota_reservations WHERE key=?", (f"cp-{rid}-g1",)).fetchone()
    assert held == "released" and live.ran(marker) == 1


def test_config_push_reaches_the_region(live: Live):
    with live.regions["r-west"].client() as c:
        if c.get("/admin/v1/config/applied").status_code == 404:
            pytest.skip("the region has no config apply yet (apply_config_snapshot, branch rg-config)")
    pool = {"resources": {"CPU": 2}, "max_size": 2, "labels": {"tier": "extra"}}
    with live.cp.client() as c:
        r = c.put("/api/v1/config", json={"sections": {"pools": {"cpu-extra": pool}}})
        assert r.status_code == 200, r.text
        v = r.json()["version"]
    wait_for(lambda: live.cp.region("r-west")["applied_config_version"] == v, about="applied")
    with live.regions["r-west"].client() as c:  # the region's own view: the new pool, no restart
        applied = c.get("/admin/v1/config/applied").json()
    assert applied["version"] == v and "cpu-extra" in str(applied), applied


def test_a_killed_region_redispatches_retryable_work_and_fails_the_rest(live: Live):
    running, queued = _m(), _m()
    r_run = live.cp.submit(live.job(running, sleep_s=120, gpus=2, region="r-west"))
    rid_run = r_run.json()["workload_id"]
    wait_for(lambda: live.cp.run(rid_run)["status"] == "running", about="running at west")
    wait_for(lambda: live.ran(running) == 1, about="its entrypoint started (Ray says running a bit before)")
    wait_for(lambda: live.cp.region("r-west")["free_gpus"].get("gpu") == 0, about="west full")
    live.cp.set_state("r-east", "draining")  # so the run queues at west rather than fit at east
    try:
        r_q = live.cp.submit(live.job(queued, gpus=1, regions=["r-west", "r-east"]))
    finally:
        live.cp.set_state("r-east", "active")
    assert r_q.json()["region"] == "r-west", r_q.text
    rid_q = r_q.json()["workload_id"]
    wait_for(lambda: live.cp.run(rid_q)["status"] == "queued", about="queued at west")
    west = live.regions["r-west"]
    pause(west.agent_pid())  # silent from now on; then its Orion goes for good
    stop_region(west)
    done = _done(live, rid_q)
    assert (done["region"], done["generation"]) == ("r-east", 2)
    failed = _done(live, rid_run, "failed")
    assert failed["reason"].startswith("region_lost: r-west")
    assert live.ran(queued) == 1 and live.ran(running) == 1
