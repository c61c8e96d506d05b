"""The workload view in a real browser: what it shows matches REST for the same key (status,
history, placement, explain), a job's logs appear, Cancel works from the page, another tenant's
workload is a 404 message with nothing of it, and markup in a workload's data stays text."""

from __future__ import annotations

import pytest

from .test_queue_view import HOLD, submit, wait_status

pytestmark = pytest.mark.e2e

MARKUP = "<img src=x onerror=alert(1)>"
BIG = dict(HOLD, resources={"cpu": 1, "gpu": 4})  # more GPUs than the cluster has: stays queued


@pytest.fixture(scope="module")
def work(live):
    """alice: one running task and one queued (too big to place). Cancelled at the end."""
    ids = {"running": submit(live, "alice", HOLD)}
    wait_status(live, "alice", ids["running"], ("running",))
    ids["queued"] = submit(live, "alice", dict(BIG, metadata={"labels": {"note": MARKUP}}))
    yield ids
    with live.client("alice") as c:
        for wid in ids.values():
            c.delete(f"/api/v1/workloads/{wid}")


def shown_status(page) -> str:
    return page.get_attribute('[data-testid="wl-status"]', "data-status")


def test_a_running_workload_matches_rest(console, live, work):
    wid = work["running"]
    page = console("alice").open(f"w/{wid}", "workload")
    rest = live.rest("alice", f"/api/v1/workloads/{wid}")
    assert page.inner_text('[data-testid="wl-id"]') == wid
    assert shown_status(page) == rest["status"] == "running"
    assert page.inner_text('[data-testid="wl-tenant"]') == "alice"
    assert page.inner_text('[data-testid="wl-type"]') == rest["workload_type"]
    assert page.inner_text('[data-testid="wl-class"]') == rest["priority"]
    assert page.inner_text('[data-testid="wl-attempt"]') == str(rest["attempt"])
    entries = page.query_selector_all('[data-testid="history-entry"]')
    assert [e.get_attribute("data-status") for e in entries] == [h["status"] for h in rest["history"]]
    shown_reasons = [r.inner_text() for r in page.query_selector_all('[data-testid="history-reason"]')]
    assert shown_reasons == [h["reason"] for h in rest["history"] if h["reason"]]
    nodes = [r.get_attribute("data-node") for r in page.query_selector_all('[data-testid="placement-row"]')]
    assert nodes and nodes == [p["node_id"] for p in rest["placement"]]
    assert page.query_selector('[data-testid="cancel"]')  # not ended: cancel is offered


def test_explain_of_a_queued_workload_matches_rest(console, live, work):
    wid = work["queued"]
    page = console("alice").open(f"w/{wid}", "workload")
    rest = live.rest("alice", f"/api/v1/workloads/{wid}/explain")
    assert shown_status(page) == "queued"
    want = rest["position"]
    assert page.inner_text('[data-testid="explain-overall"]') == str(want["overall"])
    assert page.inner_text('[data-testid="explain-tenant"]') == str(want["tenant"])
    codes = [r.get_attribute("data-code") for r in page.query_selector_all('[data-testid="explain-reason"]')]
    assert codes == [r["code"] for r in rest["reasons"]]
    if rest["estimated_start"] is None:
        assert page.inner_text('[data-testid="explain-start"]') == "—"
    assert page.query_selector('[data-testid="placement-none"]')


def test_markup_in_a_workload_stays_text(console, live, work):
    dialogs: list[str] = []
    c = console("alice")
    c.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page = c.open(f"w/{work['queued']}", "workload")
    assert MARKUP in page.inner_text('[data-testid="wl-labels"]')
    assert page.query_selector("main img") is None
    assert not dialogs


def test_a_failed_workloads_error_and_reasons_show_as_text(console, live):
    # ipaddress.ip_address echoes its argument in the ValueError it raises: markup in the error
    spec = dict(HOLD, function="ipaddress:ip_address", args=[MARKUP], max_retries=0)
    wid = submit(live, "alice", spec)
    rest = wait_status(live, "alice", wid, ("failed", "completed", "cancelled"), timeout=120)
    assert rest["status"] == "failed"
    page = console("alice").open(f"w/{wid}", "workload")
    assert shown_status(page) == "failed"
    shown = page.inner_text('[data-testid="wl-error"]')
    assert MARKUP in shown
    err = rest["error"]
    assert (err if isinstance(err, str) else err.get("message", "")) in shown
    reasons = [h["reason"] for h in rest["history"] if h["reason"]]
    assert [r.inner_text() for r in page.query_selector_all('[data-testid="history-reason"]')] == reasons
    assert page.query_selector("main img") is None


def test_a_jobs_logs_appear(console, live):
    line = f"hello-console {MARKUP}"
    spec = {"workload_type": "job", "entrypoint": f'python -c "print(\'{line}\')"', "resources": {"cpu": 1}}
    wid = submit(live, "alice", spec)
    wait_status(live, "alice", wid, ("completed", "failed", "cancelled"), timeout=180)
    page = console("alice").open(f"w/{wid}", "workload")
    rest = live.rest("alice", f"/api/v1/workloads/{wid}")
    assert shown_status(page) == rest["status"] == "completed"
    page.wait_for_selector('[data-testid="logs"]:has-text("hello-console")', timeout=30_000)
    assert line in page.inner_text('[data-testid="logs"]')
    assert page.query_selector("main img") is None  # the printed markup is text
    assert page.query_selector('[data-testid="wl-result"]')
    assert not page.query_selector('[data-testid="cancel"]')  # ended: nothing to cancel


def test_a_running_jobs_logs_are_followed_without_a_reload(console, live):
    loop = "[print(f'line-{i}', flush=True) or time.sleep(0.25) for i in range(480)]"
    spec = {
        "workload_type": "job",
        "entrypoint": f'python -u -c "import time; {loop}"',
        "resources": {"cpu": 1},
    }
    wid = submit(live, "alice", spec)
    try:
        wait_status(live, "alice", wid, ("running",), timeout=180)
        page = console("alice").open(f"w/{wid}", "workload")
        page.wait_for_selector('[data-testid="logs"]:has-text("line-2")', timeout=60_000)
        # later lines arrive by the stream's refreshes: the same page, no navigation
        page.wait_for_selector('[data-testid="logs"]:has-text("line-30")', timeout=90_000)
        assert shown_status(page) == "running"
        logs = page.query_selector('[data-testid="logs"]')
        gap = "e => e.scrollHeight - e.scrollTop - e.clientHeight"
        assert logs.evaluate(
            "e => e.scrollHeight > e.clientHeight"
        )  # it overflows: there is a tail to follow
        assert logs.evaluate(gap) < 8  # at the tail, following it
        # a reader who scrolled up keeps their place while lines keep coming
        logs.evaluate("e => { e.scrollTop = 0; }")
        page.wait_for_selector('[data-testid="logs"]:has-text("line-45")', timeout=90_000)
        assert logs.evaluate("e => e.scrollTop") == 0
        logs.evaluate("e => { e.scrollTop = e.scrollHeight; }")  # back at the tail: followed again
        page.wait_for_selector('[data-testid="logs"]:has-text("line-60")', timeout=90_000)
        assert logs.evaluate(gap) < 8
    finally:
        with live.client("alice") as c:
            c.delete(f"/api/v1/workloads/{wid}")


def test_cancel_from_the_page(console, live):
    wid = submit(live, "alice", BIG)
    page = console("alice").open(f"w/{wid}", "workload")
    page.click('[data-testid="cancel"]')
    page.click('[data-testid="cancel-keep"]')  # the confirm step can be backed out of
    assert live.rest("alice", f"/api/v1/workloads/{wid}")["status"] == "queued"
    page.click('[data-testid="cancel"]')
    page.click('[data-testid="cancel-confirm"]')
    page.wait_for_selector('[data-testid="wl-status"][data-status="cancelled"]', timeout=30_000)
    assert live.rest("alice", f"/api/v1/workloads/{wid}")["status"] == "cancelled"
    assert not page.query_selector('[data-testid="cancel"]')


def test_another_tenants_workload_is_a_404_and_nothing_of_it(console, live, work):
    wid = work["running"]
    page = console("bob").open(f"w/{wid}", "workload")
    assert "404" in page.inner_text('[data-testid="not-found"]')
    assert page.query_selector('[data-testid="wl-status"]') is None
    assert page.query_selector('[data-testid="history-entry"]') is None
    text = page.inner_text("main")
    assert "alice" not in text and "running" not in text
