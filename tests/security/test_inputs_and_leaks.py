"""Tried: inputs that used to break Orion for everyone (``args`` nested 200 deep, NaN in ``args``,
a 400-digit ``memory``, a task returning NaN, a stored row no reader can parse) and reading
another tenant's workload ids out of the queue, explain and a preempted workload's reason.
Answered: a 422 naming the field path at the door; a NaN result stored as a failed run with its
reason (its GET, DELETE and the admin's list answer 2xx); an unreadable row quarantined (skipped
by every listing, counted in ``/health``); another tenant's ids never in a tenant's answers
(a preemption names "a higher-priority workload of another tenant").
Issue 14, items 4 and 6. The many edge cases are unit tests (``tests/unit/test_input_limits.py``).
"""

from __future__ import annotations

import json
import sqlite3

import pytest

pytestmark = pytest.mark.e2e

TASK = {"workload_type": "task", "function": "math:factorial", "args": [5], "resources": {"cpu": 0.5}}


def _raw_post(live, who: str, body: str):
    with live.client(who) as c:
        return c.post("/api/v1/workloads", content=body, headers={"Content-Type": "application/json"})


def test_args_nested_200_deep_is_a_422_naming_the_path(live):
    deep = "[" * 200 + "]" * 200
    r = _raw_post(live, "alice", '{"workload_type": "task", "function": "math:floor", "args": %s}' % deep)
    assert r.status_code == 422, r.text
    (detail,) = r.json()["error"]["details"]
    assert detail["field"].startswith("args.0.0") and "nested deeper" in detail["problem"]
    with live.client("alice") as a, live.client("admin") as adm:
        assert a.get("/api/v1/workloads").status_code == 200
        assert adm.get("/api/v1/workloads").status_code == 200


@pytest.mark.parametrize(
    "fragment,field",
    [
        ('"args": [1, NaN]', "args.1"),
        ('"kwargs": {"x": {"y": -Infinity}}', "kwargs.x.y"),
        ('"args": [123456789012345678901234567890]', "args.0"),
        ('"resources": {"memory": %s}' % ("9" * 400), "resources.memory"),
        ('"resources": {"cpu": NaN}', "resources.cpu"),
    ],
)
def test_nan_infinity_and_huge_numbers_are_422s_not_nulls_or_500s(live, fragment, field):
    r = _raw_post(live, "alice", '{"workload_type": "task", "function": "math:floor", %s}' % fragment)
    assert r.status_code == 422, r.text
    assert field in {d["field"] for d in r.json()["error"]["details"]}


def test_a_task_returning_nan_is_a_failed_run_and_every_read_of_it_answers(live):
    # json.loads("NaN") returns float("nan"): a result JSON cannot carry
    r = live.submit("alice", {**TASK, "function": "json:loads", "args": ["NaN"]})
    assert r.status_code == 202, r.text
    wid = r.json()["workload_id"]
    body = live.wait("alice", wid)
    assert body["status"] == "failed" and body["result"] is None
    assert "not valid JSON" in body["error"]
    with live.client("alice") as a, live.client("admin") as adm:
        assert a.get(f"/api/v1/workloads/{wid}").status_code == 200
        assert a.delete(f"/api/v1/workloads/{wid}").status_code == 202
        assert adm.get("/api/v1/workloads", params={"limit": 1000}).status_code == 200


def test_a_stored_row_no_reader_can_parse_is_quarantined_not_a_500(live):
    """A row an older Orion accepted (``args`` 250 deep), written straight into the store: every
    listing skips it, other workloads read as before, ``/health`` counts it."""
    good = live.submit("alice", TASK).json()["workload_id"]
    db = sqlite3.connect(str(live.home / "orion.db"), timeout=10)
    try:
        spec, state = db.execute("SELECT spec, state FROM workloads WHERE workload_id=?", (good,)).fetchone()
        bad_spec = json.loads(spec)
        bad_spec["args"] = json.loads("[" * 250 + "]" * 250)
        with db:
            db.execute(
                "INSERT INTO workloads(workload_id, tenant_id, request_id, status, spec, state, rank) "
                "VALUES (?,?,?,?,?,?,?)",
                ("wl-unreadable-0001", "alice", None, "completed", json.dumps(bad_spec), state, 2),
            )
    finally:
        db.close()
    with live.client("alice") as a, live.client("admin") as adm:
        for c in (a, adm):
            r = c.get("/api/v1/workloads", params={"limit": 1000})
            assert r.status_code == 200, r.text
            ids = {w["workload_id"] for w in r.json()["items"]}
            assert good in ids and "wl-unreadable-0001" not in ids
        assert a.get(f"/api/v1/workloads/{good}").status_code == 200
        assert a.get("/api/v1/workloads/wl-unreadable-0001").status_code == 404
        health = adm.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["quarantined_reads"] >= 1


def _texts(client, wid: str) -> str:
    parts = [client.get(f"/api/v1/workloads/{wid}").text, client.get(f"/api/v1/workloads/{wid}/explain").text]
    return "\n".join(parts)


def test_no_other_tenants_ids_in_the_queue_explain_or_a_preemption_reason(live):
    """bob's high-priority gang preempts alice's low one on the only 2 GPUs: alice learns that
    she was preempted, not for which workload (the admin's audit log keeps that)."""
    hold = {"workload_type": "task", "function": "time:sleep", "args": [120], "priority": "low"}
    mine = live.submit("alice", {**hold, "resources": {"cpu": 0.5, "gpu": 2}}).json()["workload_id"]
    live.wait("alice", mine, done=("running",))
    # bob's tenant is not granted `high` (issue 14, item 3): the operator submits it on his behalf
    theirs = live.submit(
        "admin",
        {
            **hold,
            "args": [1],
            "priority": "high",
            "resources": {"cpu": 0.5, "gpu": 2},
            "metadata": {"tenant_id": "bob"},
        },
    ).json()["workload_id"]
    try:
        seen = live.wait("alice", mine, done=("preempted", "queued"))
        assert seen["status"] in ("preempted", "queued"), seen
        with live.client("alice") as a:
            texts = _texts(a, mine) + a.get("/api/v1/queue").text + a.get("/api/v1/workloads").text
        assert theirs not in texts
        assert "another tenant" in (seen["reason"] or "") + texts
        with live.client("bob") as b:
            assert mine not in b.get("/api/v1/queue").text + _texts(b, theirs)
        with live.client("admin") as adm:  # the admin still sees who made room for whom
            audit = adm.get("/admin/v1/audit", params={"limit": 200}).json()["items"]
            assert any(e["action"] == "preempt" and e["details"].get("for") == theirs for e in audit)
    finally:
        with live.client("admin") as adm:
            adm.delete(f"/api/v1/workloads/{mine}")
            adm.delete(f"/api/v1/workloads/{theirs}")
