"""The queue view in a real browser: what it shows matches the REST answers for the same key, a
tenant sees only its own workloads, and the filters narrow the list."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e

HOLD = {"workload_type": "task", "function": "time:sleep", "args": [600], "resources": {"cpu": 1}}


def submit(live, who, spec):
    with live.client(who) as c:
        r = c.post("/api/v1/workloads", json=spec)
        assert r.status_code == 202, r.text
        return r.json()["workload_id"]


def wait_status(live, who, wid, statuses, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        w = live.rest(who, f"/api/v1/workloads/{wid}")
        if w["status"] in statuses:
            return w
        time.sleep(0.3)
    raise AssertionError(f"{wid} never reached {statuses}: {w['status']}")


@pytest.fixture(scope="module")
def work(live):
    """alice: one running and two queued (more GPUs than the cluster has) at `low` and `normal`;
    bob: one running. Cancelled at the end."""
    ids = {
        "alice_running": submit(live, "alice", HOLD),
        "bob_running": submit(live, "bob", HOLD),
    }
    wait_status(live, "alice", ids["alice_running"], ("running",))
    wait_status(live, "bob", ids["bob_running"], ("running",))
    big = dict(HOLD, resources={"cpu": 1, "gpu": 4})  # more GPUs than the cluster has: stays queued
    ids["alice_queued_low"] = submit(live, "alice", dict(big, priority="low"))
    ids["alice_queued_normal"] = submit(live, "alice", big)
    yield ids
    for key, wid in ids.items():
        with live.client(key.split("_")[0]) as c:
            c.delete(f"/api/v1/workloads/{wid}")


def test_the_admin_sees_every_tenant_with_the_numbers_rest_gives(console, live, work):
    page = console("admin").open("queue", "queue")
    rest = live.rest("admin", "/api/v1/queue")
    assert page.inner_text('[data-testid="total-queued"]') == str(rest["total_queued"])
    assert page.inner_text('[data-testid="total-running"]') == str(rest["total_running"])
    rows = {r.get_attribute("data-tenant"): r for r in page.query_selector_all('[data-testid="tenant-row"]')}
    assert {"alice", "bob"} <= set(rows)
    for t in rest["tenants"]:
        row = rows[t["tenant_id"]]
        assert row.query_selector('[data-testid="queued"]').inner_text() == f"{t['queued']} queued"
        assert row.query_selector('[data-testid="running"]').inner_text() == f"{t['running']} running"
        shown = float(row.query_selector('[data-testid="fair-share-value"]').inner_text())
        assert shown == pytest.approx(t["fair_share"], abs=1e-4)
    # the depth by class is the sum over tenants
    bars = page.query_selector_all('[data-testid="depth"]')
    depth = {d.get_attribute("data-class"): d.inner_text().split("\n")[-1] for d in bars}
    want: dict[str, int] = {}
    for t in rest["tenants"]:
        for c, n in t["queued_by_priority"].items():
            want[c] = want.get(c, 0) + n
    assert {c: int(n) for c, n in depth.items() if int(n)} == want
    listed = {r.get_attribute("data-id") for r in page.query_selector_all('[data-testid="wl-row"]')}
    assert set(work.values()) <= listed


def test_a_tenant_sees_only_its_own_workloads(console, live, work):
    page = console("bob").open("queue", "queue")
    rows = page.query_selector_all('[data-testid="tenant-row"]')
    assert [r.get_attribute("data-tenant") for r in rows] == ["bob"]
    listed = {r.get_attribute("data-id") for r in page.query_selector_all('[data-testid="wl-row"]')}
    assert work["bob_running"] in listed
    assert not listed & {work["alice_running"], work["alice_queued_low"], work["alice_queued_normal"]}
    assert "alice" not in page.inner_text("main")


def test_filters_narrow_the_list(console, live, work):
    c = console("admin")
    page = c.open("queue?tenant=alice&status=queued&class=low", "queue")
    listed = [r.get_attribute("data-id") for r in page.query_selector_all('[data-testid="wl-row"]')]
    assert work["alice_queued_low"] in listed
    assert work["alice_queued_normal"] not in listed and work["bob_running"] not in listed
    rows = page.query_selector_all('[data-testid="wl-row"]')
    assert all(r.get_attribute("data-status") == "queued" for r in rows)
    # choosing another class in the page changes the route and the list
    page.select_option('[data-testid="filter-class"]', "normal")
    page.wait_for_selector(f'[data-testid="wl-row"][data-id="{work["alice_queued_normal"]}"]', timeout=30_000)
    assert not page.query_selector(f'[data-testid="wl-row"][data-id="{work["alice_queued_low"]}"]')


def test_the_queue_updates_live_without_a_reload(console, live, work):
    page = console("alice").open("queue", "queue")
    wid = submit(live, "alice", dict(HOLD, resources={"cpu": 1, "gpu": 4}, priority="low"))
    try:  # the stream says alice's workloads changed: the row appears without navigation
        page.wait_for_selector(f'[data-testid="wl-row"][data-id="{wid}"]', timeout=30_000)
    finally:
        with live.client("alice") as cl:
            cl.delete(f"/api/v1/workloads/{wid}")
    assert page.get_attribute("#live", "class") == "live"
