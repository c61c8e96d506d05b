"""Global quotas across real regions, the ledger across a control-plane restart, and the agent's
resync after its outbox overflowed (issue 17), on the package's processes (``conftest.py``).

Runs before ``test_regions_live.py`` (file order), which ends by killing a region for good.
"""

from __future__ import annotations

import uuid

import pytest

from tests.regions.live import Live, wait_for

pytestmark = pytest.mark.timeout(600)


def _m() -> str:
    return uuid.uuid4().hex[:10]


def _direct(live: Live, region: str, body: dict) -> str:
    """Submit straight to a region; retried under one request id (a loaded machine's region can
    answer past the client's timeout: the retry returns the first workload, never a second)."""
    body["metadata"]["request_id"] = f"direct-{uuid.uuid4().hex[:12]}"

    def post() -> str:
        with live.regions[region].client() as c:
            r = c.post("/api/v1/workloads", json=body)
        assert r.status_code == 202, r.text
        return r.json()["workload_id"]

    return wait_for(post, within_s=240, every_s=1, about=f"a direct submit to {region}")


def _region_status(live: Live, region: str, wid: str) -> str:
    with live.regions[region].client() as c:
        return c.get(f"/api/v1/workloads/{wid}").json()["status"]


def _listed(live: Live, wid: str, status: str) -> bool:
    return any(i["workload_id"] == wid and i["status"] == status for i in live.cp.listing())


def test_a_global_quota_counts_a_direct_run_survives_a_restart_and_a_resync(live: Live):
    # beta may hold 2 GPUs over every region: one run straight to east, one through the
    # control plane to west — a third is refused wherever it would go
    direct, via_cp = _m(), _m()
    wid = _direct(live, "r-east", live.job(direct, sleep_s=300, gpus=1, tenant="beta"))
    wait_for(lambda: _listed(live, wid, "running"), about="the direct run counted at the control plane")
    r2 = live.cp.submit(live.job(via_cp, sleep_s=300, gpus=1, tenant="beta", region="r-west"))
    assert r2.status_code == 202, r2.text
    rid = r2.json()["workload_id"]
    wait_for(lambda: live.cp.run(rid)["status"] == "running", about="beta's second run running at west")
    third = live.job(_m(), gpus=1, tenant="beta")
    r3 = live.cp.submit(third)
    assert r3.status_code == 429 and "global limit" in r3.text, r3.text
    assert live.cp.submit(live.job(_m(), gpus=1)).status_code == 202  # acme is not beta

    # the control plane goes away; east runs on and its outbox (12 kept) overflows meanwhile
    live.cp.down()
    shorts = [_m() for _ in range(4)]
    short_ids = [_direct(live, "r-east", live.job(s)) for s in shorts]
    wait_for(lambda: all(_region_status(live, "r-east", w) == "completed" for w in short_ids), about="shorts")
    live.cp.up()
    r3 = live.cp.submit(third)  # the holds are rows: the restarted control plane still refuses
    assert r3.status_code == 429 and "global limit" in r3.text, r3.text
    # east sent a listing instead of the changes it dropped; the view has every short run ended
    wait_for(lambda: all(_listed(live, w, "completed") for w in short_ids), about="the shorts via resync")
    assert any(a["action"].startswith("resync") for a in live.cp.audit("r-east"))
    assert [live.ran(s) for s in shorts] == [1, 1, 1, 1]

    # the direct run ends at its region: its hold goes back and beta's next run is granted
    with live.regions["r-east"].client() as c:
        c.delete(f"/api/v1/workloads/{wid}")
    wait_for(lambda: _listed(live, wid, "cancelled"), about="the direct run's end seen")
    fourth = _m()
    r4 = live.cp.submit(live.job(fourth, gpus=1, tenant="beta"))
    assert r4.status_code == 202, r4.text
    wait_for(lambda: live.cp.run(r4.json()["workload_id"])["status"] == "completed", about="fourth ran")
    wait_for(  # asked again until the region confirmed it (a 429 meanwhile)
        lambda: live.cp.cancel(rid) or live.cp.run(rid)["status"] == "cancelled", about="west run cancelled"
    )
    for name in ("r-east", "r-west"):  # the next tests start with every GPU free
        wait_for(lambda n=name: live.cp.region(n)["free_gpus"].get("gpu") == 2, about=f"{name} free")
    assert [live.ran(direct), live.ran(via_cp), live.ran(fourth)] == [1, 1, 1]


def test_a_run_not_started_within_the_launch_budget_moves_and_its_region_is_blocked(live: Live):
    # the control plane again, with a 10 s launch budget (restored below: the blocklist goes too)
    live.cp.down()
    live.cp.settings["launch_budget_s"] = 10
    live.cp.up()
    try:
        blocker, run = _m(), _m()
        wid = _direct(live, "r-east", live.job(blocker, sleep_s=120, gpus=2))
        wait_for(lambda: live.cp.region("r-east")["free_gpus"].get("gpu") == 0, about="east full")
        live.cp.set_state("r-west", "draining")  # so the run queues at east: it would launch there
        try:
            r = live.cp.submit(live.job(run, gpus=1, regions=["r-east", "r-west"]))
        finally:
            live.cp.set_state("r-west", "active")
        assert r.status_code == 202 and r.json()["region"] == "r-east", r.text
        rid = r.json()["workload_id"]
        copy = wait_for(lambda: next((c for c in live.cp.run(rid)["copies"] if c["generation"] == 1), None))
        wait_for(lambda: live.cp.run(rid)["generation"] == 2, about="moved after the budget", within_s=120)
        pinned = live.cp.submit(live.job(_m(), region="r-east"))  # east is blocked for a while
        assert pinned.status_code == 429 and "blocked" in pinned.text, pinned.text
        done = wait_for(
            lambda: (x := live.cp.run(rid))["status"] == "completed" and x, about="run at west", within_s=240
        )
        assert (done["region"], done["generation"]) == ("r-west", 2)
        wait_for(  # the first copy is stale: east cancels it when its heartbeat hears so
            lambda: _region_status(live, "r-east", copy["region_workload_id"]) == "cancelled", about="fenced"
        )
        assert live.ran(run) == 1
        with live.regions["r-east"].client() as c:
            c.delete(f"/api/v1/workloads/{wid}")
    finally:
        live.cp.down()
        live.cp.settings.pop("launch_budget_s", None)
        live.cp.up()
    wait_for(lambda: live.cp.region("r-east")["free_gpus"].get("gpu") == 2, about="east free again")
