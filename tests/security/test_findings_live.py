"""Tried: three findings of issue 14 again on the live Orion (the unit tests answer them without
Ray) — a task raising with a 200,000-character message and a Ray job printing ~2 MB (error text
and live job logs used to come back uncapped); alice's and bob's tasks, pinned and in a placement
group, run one after another with the same ``runtime_env`` (Ray used to hand one tenant's idle
worker process to the other); a queued row no reader can parse (``args`` 250 deep, as an older
Orion accepted) left in the store when the scheduler crashes (recovery used to retry it forever
while ``/health`` said 200).
Answered: the error is cut to 4,096 characters, marked "…[truncated by Orion: n more
characters]"; the job's logs (``GET …/logs`` while it runs, after it is stopped, ``orion logs``)
to ``max_log_bytes``, the tail kept and the cut marked; no worker pid ever serves both tenants,
while a tenant's own tasks do share one (the tenant marker in ``runtime_env`` separates them, not
a fresh process per task); the restarted scheduler quarantines the row (failed with the reason,
an audit entry, counted in ``/health``), finishes recovery and runs new work, and every listing
answers 200. Run with the marker or the caps removed, the first three fail.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orion_ray.config import SchedulerConfig
from orion_ray.input_limits import MAX_ERROR_CHARS

pytestmark = pytest.mark.e2e

ROOT = str(Path(__file__).resolve().parents[2])
QUICK = {"workload_type": "task", "function": "math:factorial", "args": [5], "resources": {"cpu": 0.5}}
MARK = "…[truncated by Orion: "


def _probe(live, tenant: str, function: str, args: list, **spec) -> str:
    """Run one of ``attacks.py``'s probes as ``tenant``'s task: the operator ships the code on
    PYTHONPATH and submits it on the tenant's behalf (a tenant may not set PYTHONPATH)."""
    body = {
        "workload_type": "task",
        "function": f"tests.security.attacks:{function}",
        "args": args,
        "runtime_env": {"env_vars": {"PYTHONPATH": ROOT}},
        "metadata": {"tenant_id": tenant},
        **spec,
    }
    r = live.submit("admin", body)
    assert r.status_code == 202, r.text
    return r.json()["workload_id"]


# -- 1. error text and logs capped --------------------------------------------------------------


def test_a_200k_error_text_is_capped_and_marked(live):
    wid = _probe(live, "alice", "raise_long", [200_000], resources={"cpu": 0.5})
    body = live.wait("alice", wid)
    assert body["status"] == "failed", body
    error = body["error"]
    assert error.startswith("ValueError: HEAD-OF-ERROR") and "TAIL-OF-ERROR" not in error
    assert MARK in error and len(error) <= MAX_ERROR_CHARS + len(MARK) + 40, len(error)


def test_a_job_printing_2mb_shows_its_capped_tail_live_and_stored(live):
    cap = SchedulerConfig().max_log_bytes  # the live Orion's (CONFIG leaves it at its default)
    # 21,000 numbered lines of 101 bytes (~2.1 MB), a last line, then it runs on to be read live
    spec = {"workload_type": "job", "entrypoint": "seq -f %0100g 21000; echo END-OF-OUTPUT; sleep 60"}
    r = live.submit("alice", spec)
    assert r.status_code == 202, r.text
    wid = r.json()["workload_id"]

    def capped_tail(text: str) -> None:
        assert text.startswith(MARK) and len(text) <= cap + len(MARK) + 40, len(text)
        # the tail kept (a stopped job's last lines may be Ray's report of the SIGTERM)
        assert "%0100d\nEND-OF-OUTPUT\n" % 21000 in text[-3000:], text[-3000:]
        assert "%0100d\n" % 1 not in text  # the head was cut

    with live.client("alice") as a:
        end, text, status = time.monotonic() + 90, "", "queued"
        while time.monotonic() < end:  # its output while it runs comes live from Ray
            status = a.get(f"/api/v1/workloads/{wid}").json()["status"]
            if status == "running":
                text = a.get(f"/api/v1/workloads/{wid}/logs").text
                if "END-OF-OUTPUT" in text:
                    break
            time.sleep(0.5)
        assert status == "running", status
        capped_tail(text)
        assert a.delete(f"/api/v1/workloads/{wid}").status_code == 202
        assert live.wait("alice", wid)["status"] == "cancelled"
        end = time.monotonic() + 30
        while "END-OF-OUTPUT" not in (text := a.get(f"/api/v1/workloads/{wid}/logs").text):
            if time.monotonic() > end:
                break
            time.sleep(0.3)
        capped_tail(text)  # what the store kept when it was stopped
    capped_tail(live.orion("logs", wid).stdout)


# -- 2. worker processes never shared between tenants -------------------------------------------


def test_no_worker_process_serves_two_tenants(live):
    """alice's and bob's tasks, with the same ``runtime_env``, one at a time (each asks for 3 of
    the 4 CPUs): without the tenant marker Ray hands the idle worker of one to the next task
    whatever its tenant; with it, each tenant keeps its own worker."""
    pinned = {"resources": {"cpu": 3}}
    grouped = {"bundles": [{"cpu": 1.5}, {"cpu": 1.5}]}  # a gang: runs in a placement group
    order = [("alice", pinned), ("bob", pinned)] * 3 + [("alice", grouped), ("bob", grouped)]
    ids = [(who, _probe(live, who, "worker_pid", [], **spec)) for who, spec in order]
    pids: dict[str, list[int]] = {"alice": [], "bob": []}
    for who, wid in ids:
        body = live.wait(who, wid)
        assert body["status"] == "completed", body
        pids[who].append(body["result"])
    shared = set(pids["alice"]) & set(pids["bob"])
    assert shared == set(), pids
    # a tenant's own tasks do reuse a worker: the marker separates tenants, not fresh processes
    assert any(len(set(p)) < len(p) for p in pids.values()), pids


# -- 3. recovery with a row no reader can parse (last here: it restarts the shared scheduler) --

CRASH = """
import ray
ray.init(address="auto", namespace="orion")
ray.kill(ray.get_actor("orion-scheduler", namespace="orion"), no_restart=False)
print("killed")
"""


def _plant_unreadable_queued_row(live) -> str:
    """Turn a finished workload's row into a queued one that no reader can parse (``args`` 250
    deep, as an older Orion stored it). Its ``seq`` is behind the running scheduler's intake,
    so only a restart's recovery reads it: the finding's state exactly."""
    wid = live.submit("alice", QUICK).json()["workload_id"]
    assert live.wait("alice", wid)["status"] == "completed"
    db = sqlite3.connect(str(live.home / "orion.db"), timeout=10)
    try:
        (spec,) = db.execute("SELECT spec FROM workloads WHERE workload_id=?", (wid,)).fetchone()
        bad = json.loads(spec)
        bad["args"] = json.loads("[" * 250 + "]" * 250)
        with db:
            db.execute(
                "UPDATE workloads SET status='queued', spec=? WHERE workload_id=?", (json.dumps(bad), wid)
            )
    finally:
        db.close()
    return wid


def _row(live, wid: str) -> tuple[str, list[str]]:
    """The stored status of ``wid`` and the reasons of its transitions."""
    db = sqlite3.connect(str(live.home / "orion.db"), timeout=10)
    try:
        (status,) = db.execute("SELECT status FROM workloads WHERE workload_id=?", (wid,)).fetchone()
        reasons = [r for (r,) in db.execute("SELECT reason FROM transitions WHERE workload_id=?", (wid,))]
    finally:
        db.close()
    return status, reasons


def test_recovery_quarantines_an_unreadable_queued_row_and_completes(live):
    planted = _plant_unreadable_queued_row(live)
    # the scheduler crashes: killed by the operator's driver (Ray's token), restarted by Ray
    p = subprocess.run(
        [sys.executable, "-c", CRASH],
        env=dict(live.env, RAY_ADDRESS=f"127.0.0.1:{live.ports['ray']}"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0 and "killed" in p.stdout, p.stderr[-2000:]
    # only the restarted scheduler's recovery reads the row (ending it as failed): wait for that
    with live.client("admin") as adm:
        end = time.monotonic() + 120
        while True:
            r = adm.get("/health")
            status, reasons = _row(live, planted)
            if r.status_code == 200 and status == "failed" or time.monotonic() > end:
                break
            time.sleep(0.5)
        health = r.json()
        assert r.status_code == 200 and health["scheduler"] == "ok", health
        assert health["quarantined"] >= 1, health  # the new scheduler's count: it reports the row
        assert health["recovery"]["state"] == "recovered" and health["recovery"]["last_error"] is None
        audit = adm.get("/admin/v1/audit", params={"limit": 500}).json()["items"]
        assert any(e["action"] == "quarantine" and e["target"] == planted for e in audit)
    assert status == "failed" and any("quarantined" in (r or "") for r in reasons), (status, reasons)
    # new work runs to the end after the restart, and every tenant's listing answers
    fresh = live.submit("alice", QUICK)
    assert fresh.status_code == 202, fresh.text
    assert live.wait("alice", fresh.json()["workload_id"])["status"] == "completed"
    for who in ("alice", "bob", "admin"):
        with live.client(who) as c:
            r = c.get("/api/v1/workloads", params={"limit": 1000})
            assert r.status_code == 200, r.text
            assert planted not in {w["workload_id"] for w in r.json()["items"]}
