"""Schedules and event triggers on a live Orion (`orion up` in a subprocess, real Ray): a schedule
firing every few seconds (a six-field cron, seconds first) keeps firing across a SIGKILL of the
scheduler, with every slot fired exactly once (catch-up on: the slots of the restart fire when it
is back); a posted event fires a trigger's run; a pipeline's completion fires a downstream run."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time

import pytest

from orion_ray.pipelines.cron import parse_cron, slot_name, slots_after
from tests.pipelines.live import Live, runs_of
from tests.pipelines.test_run_live import scheduler_pid

pytestmark = pytest.mark.e2e

ONE_NODE = """\
version: 1
pipeline_id: tick
nodes:
  - {id: fetch_data, kind: python_task, resources: {cpu: "0.25", mem: "64Mi"}, outs: [dataset_uri]}
"""
REFS = {"fetch_data": "tests.pipelines.nodes:fetch_data"}


def seconds(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def poll(fn, within_s: float = 120, every_s: float = 0.5):
    """``fn()`` until it is truthy or ``within_s`` passes (a bound on waiting, not a timing
    assertion); its last value."""
    end = time.monotonic() + within_s
    while True:
        got = fn()
        if got or time.monotonic() > end:
            return got
        time.sleep(every_s)


def test_a_schedule_fires_every_slot_once_across_a_sigkill_of_the_scheduler(live, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    body = {
        "name": "every4s",
        "cron": "*/4 * * * * *",
        "catch_up": True,  # the slots of the restart fire when the scheduler is back: none is lost
        "submission": {"dag_spec": ONE_NODE, "refs": REFS, "runtime_params": {"env": Live.node_env(runs)}},
    }
    with live.client("admin") as admin, live.client("alice") as alice:
        r = admin.post("/api/orch/schedules?tenant_id=alice", json=body)
        assert r.status_code == 201, r.text
        try:

            def fired(at_least: int):
                got = alice.get("/api/orch/schedules/every4s").json()
                return got if got["fired"] >= at_least else None

            before = poll(lambda: fired(2))
            assert before, "the schedule never fired twice"
            old = scheduler_pid(live)
            assert old, "no scheduler actor"
            os.kill(old, signal.SIGKILL)  # the actor Orion started for this test; Ray restarts it
            after = poll(lambda: fired(before["fired"] + 3), within_s=180)
            assert after, f"no fire after the restart: {before}"
            assert scheduler_pid(live) not in (0, old)
            assert alice.post("/api/orch/schedules/every4s/pause").status_code == 200
            final = alice.get("/api/orch/schedules/every4s").json()
            cron = parse_cron(body["cron"])
            slots = slots_after(
                cron, seconds(final["created_at"]), until=seconds(final["last_slot"]), limit=1000
            )
            sids = [f"every4s-{slot_name(s)}" for s in slots]
            assert final["fired"] == len(sids) and final["missed"] == 0 and final["skipped"] == 0, final

            def ended():
                states = [alice.get(f"/api/orch/status/{sid}").json().get("state") for sid in sids]
                return states if all(s in ("succeeded", "failed", "cancelled") for s in states) else None

            states = poll(ended, within_s=180)
            assert states and set(states) == {"succeeded"}, states
            assert runs_of(runs) == {"fetch_data": len(sids)}  # each slot's node ran once: none twice
            assert alice.get("/api/orch/schedules/every4s").json()["fired"] == len(sids)  # paused: no more
        finally:  # the shared live Orion must not keep firing it for the other tests
            admin.delete("/api/orch/schedules/every4s?tenant_id=alice")


def test_a_posted_event_and_a_pipelines_completion_each_fire_a_run(live, tmp_path):
    env = Live.node_env(tmp_path)
    sub = {"dag_spec": ONE_NODE, "refs": REFS, "runtime_params": {"env": env}}
    on_event = {
        "name": "on-ready",
        "event_type": "dataset.ready",
        "match_labels": {"dataset": "xs"},
        "submission": sub,
    }
    downstream = {
        "name": "after-up",
        "event_type": "pipeline.completed",
        "match_labels": {"submission_id": "up-live", "pipeline_id": "tick"},
        "submission": sub,
    }
    with live.client("admin") as admin, live.client("alice") as alice, live.client("bob") as bob:
        for trig in (on_event, downstream):
            r = admin.post("/api/orch/triggers?tenant_id=alice", json=trig)
            assert r.status_code == 201, r.text
        event = {"type": "dataset.ready", "labels": {"dataset": "xs"}}
        assert (
            bob.post("/api/orch/events", json=event).json()["fired"] == []
        )  # bob's event: not alice's trigger
        r = alice.post("/api/orch/events", json=event)
        assert r.status_code == 202, r.text
        fired = r.json()["fired"]
        assert [f["trigger"] for f in fired] == ["on-ready"] and fired[0]["error"] is None, fired
        done = live.wait_run(fired[0]["submission_id"])
        assert done["state"] == "succeeded", json.dumps(done, indent=1)

        live.submit({**sub, "runtime_params": {**sub["runtime_params"], "submission_id": "up-live"}})
        assert live.wait_run("up-live")["state"] == "succeeded"
        got = poll(lambda: alice.get("/api/orch/triggers/after-up").json()["last_run"])
        assert got and got.startswith("after-up-ev"), got
        assert live.wait_run(got)["state"] == "succeeded"
        assert alice.get("/api/orch/triggers/after-up").json()["fired"] == 1
        for name in ("on-ready", "after-up"):
            assert admin.delete(f"/api/orch/triggers/{name}?tenant_id=alice").status_code == 200
