"""Schedules and triggers through the real scheduler (its loop's pipeline tick, its intake) over
a SQLite file and the in-memory ``FakeRuntime``, with the clock driven by the test: once per slot
across a restart and a crash in the middle of a fire, each concurrency policy on real runs,
pause/resume, backfill, posted events, and the built-in ``pipeline.completed`` and
``workload.completed`` events. No Ray, no sleeps."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from orion_ray.errors import Conflict, NotFound, ValidationError
from orion_ray.pipelines import schedules_store
from orion_ray.runtime.fake import FakeRuntime

from .test_pipeline_scheduler import BIG, REFS, Clock, make, on_loop, until_done
from .test_pipeline_spec import ISSUE_YAML

H = 3600.0
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc).timestamp()
SUB = {"dag_spec": ISSUE_YAML, "refs": REFS}


def hourly(**kw):
    return {"name": kw.pop("name", "hourly"), "cron": "0 * * * *", "submission": SUB, **kw}


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "orion.db")


def at(t: float) -> Clock:
    c = Clock()
    c.t = t
    return c


def runs(s, tenant="default"):
    return [
        (sid, status)
        for sid, status in s.store._query(
            "SELECT submission_id, status FROM pipeline_runs WHERE tenant_id=? ORDER BY seq", (tenant,)
        )
    ]


async def call(s, op, args=None, tenant="default", who="admin"):
    return await s.schedule_call(op, args or {}, tenant, who)


@on_loop
async def test_a_schedule_fires_once_per_slot_and_a_restart_neither_loses_nor_repeats_one(db):
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    made = await call(s, "schedule_create", {"body": hourly()})
    assert made["created"] and made["next_slot"] == "2026-12-01T01:00:00Z" and made["fired"] == 0
    s.pipelines.tick(True)
    assert runs(s) == []  # a slot before its creation never fires
    clock.t = T0 + H + 1
    s.pipelines.tick(True)
    s.pipelines.tick(True)
    assert runs(s) == [("hourly-20261201T010000Z", "running")]
    await s.stop()
    again = make(db, rt, clock)  # a restarted scheduler over the same file, at the same time
    again.pipelines.tick(True)
    assert len(runs(again)) == 1
    clock.t = T0 + 2 * H + 1
    again.pipelines.tick(True)
    assert [sid for sid, _ in runs(again)] == ["hourly-20261201T010000Z", "hourly-20261201T020000Z"]
    got = await call(again, "schedule_get", {"name": "hourly"})
    assert got["fired"] == 2 and got["last_run"] == "hourly-20261201T020000Z"
    assert got["last_slot"] == "2026-12-01T02:00:00Z" and got["next_slot"] == "2026-12-01T03:00:00Z"
    run = again.store.get(
        next(iter(again.store._query("SELECT workload_id FROM node_runs WHERE workload_id IS NOT NULL", ())))[
            0
        ]
    )
    assert run.spec.metadata.labels["orion.schedule"] == "hourly"


@on_loop
async def test_a_crash_between_the_run_and_the_bookkeeping_leaves_neither_and_the_slot_fires_once(
    db, monkeypatch
):
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    await call(s, "schedule_create", {"body": hourly()})
    clock.t = T0 + H + 1
    real = schedules_store.runs_store.insert_run

    def crash_after_insert(*a, **kw):
        real(*a, **kw)
        raise RuntimeError("killed mid-transaction")

    monkeypatch.setattr(schedules_store.runs_store, "insert_run", crash_after_insert)
    s.pipelines.tick(True)  # logged; the transaction is rolled back
    assert runs(s) == []
    assert (await call(s, "schedule_get", {"name": "hourly"}))["last_slot"] == "2026-12-01T00:00:10Z"
    monkeypatch.setattr(schedules_store.runs_store, "insert_run", real)
    s.pipelines.tick(True)
    s.pipelines.tick(True)
    assert runs(s) == [("hourly-20261201T010000Z", "running")]


@on_loop
async def test_a_slot_whose_run_is_already_stored_is_not_run_again(db):
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    await call(s, "schedule_create", {"body": hourly()})
    clock.t = T0 + H + 1
    # as if the run had been stored and the schedule's bookkeeping lost: a backfill of that slot
    got = await call(s, "schedule_backfill", {"name": "hourly", "start": T0 + H, "end": T0 + H})
    assert got["submitted"] == 1
    s.pipelines.tick(True)
    assert runs(s) == [("hourly-20261201T010000Z", "running")]
    assert (await call(s, "schedule_get", {"name": "hourly"}))["last_slot"] == "2026-12-01T01:00:00Z"


@on_loop
async def test_downtime_fires_only_the_latest_slot_and_counts_the_missed_ones(db):
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    await call(s, "schedule_create", {"body": hourly(starting_deadline_seconds=600)})
    clock.t = T0 + 4 * H + 60  # slots 01:00-04:00 came while nothing ticked
    s.pipelines.tick(True)
    assert [sid for sid, _ in runs(s)] == ["hourly-20261201T040000Z"]
    assert (await call(s, "schedule_get", {"name": "hourly"}))["missed"] == 3
    clock.t = T0 + 5 * H + 601  # past the deadline
    s.pipelines.tick(True)
    got = await call(s, "schedule_get", {"name": "hourly"})
    assert len(runs(s)) == 1 and got["missed"] == 4


@on_loop
async def test_forbid_skips_while_a_run_is_active_and_replace_cancels_it(db):
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    await call(s, "schedule_create", {"body": hourly(name="f", concurrency_policy="forbid")})
    await call(s, "schedule_create", {"body": hourly(name="r", concurrency_policy="replace")})
    await call(s, "schedule_create", {"body": hourly(name="a")})
    clock.t = T0 + H + 1
    s.pipelines.tick(True)
    clock.t = T0 + 2 * H + 1
    s.pipelines.tick(True)  # every first run is still running
    s.pipelines.tick(True)
    states = dict(runs(s))
    assert "f-20261201T020000Z" not in states and states["f-20261201T010000Z"] == "running"
    assert (
        states["r-20261201T010000Z"] in ("cancelling", "cancelled")
        and states["r-20261201T020000Z"] == "running"
    )
    assert states["a-20261201T010000Z"] == states["a-20261201T020000Z"] == "running"
    f = await call(s, "schedule_get", {"name": "f"})
    assert f["skipped"] == 1 and f["last_skip"] == "forbid: the previous run is still active"


@on_loop
async def test_pause_fires_nothing_and_resume_passes_over_the_paused_slots(db):
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    await call(s, "schedule_create", {"body": hourly()})
    paused = await call(s, "schedule_pause", {"name": "hourly"})
    assert paused["paused"] and paused["next_slot"] is None
    clock.t = T0 + 3 * H + 1
    s.pipelines.tick(True)
    assert runs(s) == []
    resumed = await call(s, "schedule_resume", {"name": "hourly"})
    assert not resumed["paused"] and resumed["next_slot"] == "2026-12-01T04:00:00Z"
    s.pipelines.tick(True)
    assert runs(s) == []
    clock.t = T0 + 4 * H + 1
    s.pipelines.tick(True)
    assert [sid for sid, _ in runs(s)] == ["hourly-20261201T040000Z"]


@on_loop
async def test_backfill_is_idempotent_bounded_and_past_only(db):
    rt, clock = FakeRuntime(BIG), at(T0 + 10 * H)
    s = make(db, rt, clock)
    await call(s, "schedule_create", {"body": hourly()})
    got = await call(
        s,
        "schedule_backfill",
        {"name": "hourly", "start": "2026-12-01T01:00:00Z", "end": "2026-12-01T03:00:00Z"},
    )
    assert got["slots"] == 3 and got["submitted"] == 3
    again = await call(s, "schedule_backfill", {"name": "hourly", "start": T0 + H, "end": T0 + 3 * H})
    assert again["slots"] == 3 and again["submitted"] == 0
    assert len(runs(s)) == 3
    local = await call(  # a time without an offset is read in the schedule's zone (UTC here)
        s,
        "schedule_backfill",
        {"name": "hourly", "start": "2026-12-01T01:00:00", "end": "2026-12-01T01:00:00"},
    )
    assert local["submission_ids"] == ["hourly-20261201T010000Z"]
    for args, field in [
        ({"start": T0, "end": T0 + 2000 * H}, "end"),  # in the future, and over 1,000 slots
        ({"start": T0 - 2000 * H, "end": T0}, "end"),  # over 1,000 slots
        ({"start": T0 + 2 * H, "end": T0}, "start"),
        ({"start": "yesterday", "end": T0}, "start"),
        ({"start": T0, "end": None}, "end"),
    ]:
        with pytest.raises(ValidationError) as info:
            await call(s, "schedule_backfill", {"name": "hourly", **args})
        assert info.value.details[0]["field"] == field, (args, info.value.details)


@on_loop
async def test_create_is_idempotent_a_changed_definition_is_a_conflict_and_submissions_are_checked(db):
    rt, clock = FakeRuntime(BIG), at(T0)
    s = make(db, rt, clock)
    assert (await call(s, "schedule_create", {"body": hourly()}))["created"]
    assert not (await call(s, "schedule_create", {"body": hourly()}))["created"]
    with pytest.raises(Conflict):
        await call(s, "schedule_create", {"body": hourly(timezone="Europe/Paris")})
    with pytest.raises(Conflict):  # triggers and schedules share a tenant's names
        await call(s, "trigger_create", {"body": {"name": "hourly", "event_type": "x", "submission": SUB}})
    with pytest.raises(ValidationError) as info:  # the submission goes through the intake
        await call(s, "schedule_create", {"body": hourly(name="n", submission={"dag_spec": ISSUE_YAML})})
    assert info.value.details[0]["field"] == "submission.dag_spec.nodes.fetch_data.params.function"
    bad_ref = {**SUB, "refs": {**REFS, "fetch_data": "os:system"}}
    with pytest.raises(ValidationError) as info:
        await call(s, "schedule_create", {"body": hourly(name="n", submission=bad_ref)})
    assert info.value.details[0]["field"].startswith("submission.dag_spec.nodes.fetch_data")
    deleted = await call(s, "schedule_delete", {"name": "hourly"})
    assert deleted["deleted"]
    with pytest.raises(NotFound):
        await call(s, "schedule_get", {"name": "hourly"})


@on_loop
async def test_a_posted_event_fires_the_tenants_matching_triggers_only(db):
    rt, clock = FakeRuntime(BIG), at(T0)
    s = make(db, rt, clock)
    trig = {
        "name": "on-xs",
        "event_type": "dataset.ready",
        "match_labels": {"dataset": "xs"},
        "submission": SUB,
    }
    await call(s, "trigger_create", {"body": trig}, tenant="acme")
    await call(s, "trigger_create", {"body": {**trig, "name": "other"}}, tenant="bob")
    got = await call(
        s, "event_post", {"body": {"type": "dataset.ready", "labels": {"dataset": "xs"}}}, "acme"
    )
    assert got["fired"] == [
        {"trigger": "on-xs", "submission_id": f"on-xs-ev{got['event_id']}", "error": None}
    ]
    assert runs(s, "acme") == [(f"on-xs-ev{got['event_id']}", "running")] and runs(s, "bob") == []
    assert len(got["event_id"]) == 12 and int(got["event_id"], 16) >= 0  # random, not a counter
    miss = await call(
        s, "event_post", {"body": {"type": "dataset.ready", "labels": {"dataset": "ys"}}}, "acme"
    )
    assert miss["fired"] == [] and len(runs(s, "acme")) == 1
    s.pipelines.tick(True)  # handled events are not handled again
    assert len(runs(s, "acme")) == 1
    await call(s, "trigger_pause", {"name": "on-xs"}, tenant="acme")
    paused = await call(
        s, "event_post", {"body": {"type": "dataset.ready", "labels": {"dataset": "xs"}}}, "acme"
    )
    assert paused["fired"] == []
    with pytest.raises(ValidationError):
        await call(s, "event_post", {"body": {"type": "pipeline.completed"}}, "acme")


@on_loop
async def test_a_pipelines_completion_triggers_a_downstream_run_once(db):
    rt, clock = FakeRuntime(BIG), at(T0)
    s = make(db, rt, clock)
    down = {
        "name": "after-bt",
        "event_type": "pipeline.completed",
        "match_labels": {"pipeline_id": "bt_xs_bilstm_v1", "submission_id": "up-1"},
        "submission": SUB,
    }
    await call(s, "trigger_create", {"body": down})
    await s.pipeline_submit({**SUB, "runtime_params": {"submission_id": "up-1"}}, "default", "admin")
    done = await until_done(s, rt, clock, "up-1")
    assert done["state"] == "succeeded"
    s.pipelines.tick(True)
    s.pipelines.tick(True)
    fired = [sid for sid, _ in runs(s) if sid.startswith("after-bt-ev")]
    assert len(fired) == 1
    assert (await call(s, "trigger_get", {"name": "after-bt"}))["last_run"] == fired[0]
    # the downstream run completing matches nothing (its submission_id differs): no loop
    await until_done(s, rt, clock, fired[0])
    s.pipelines.tick(True)
    assert len([sid for sid, _ in runs(s) if sid.startswith("after-bt-ev")]) == 1


@on_loop
async def test_a_workloads_completion_is_an_event_with_its_labels(db):
    rt, clock = FakeRuntime(BIG), at(T0)
    s = make(db, rt, clock)
    trig = {
        "name": "after-train",
        "event_type": "workload.completed",
        "match_labels": {"project": "xs"},
        "submission": SUB,
    }
    await call(s, "trigger_create", {"body": trig})
    ack = await s.submit(
        {
            "workload_type": "task",
            "function": "tests.pipelines.nodes:fetch_data",
            "metadata": {"labels": {"project": "xs"}},
        },
        "default",
        "admin",
    )
    s.ingest.pull()
    s.run_cycle()
    for _ in range(50):
        await asyncio.sleep(0)
    rt.complete(ack["workload_id"], result={"dataset_uri": "x"})
    for _ in range(50):
        await asyncio.sleep(0)
    assert s.store.get(ack["workload_id"]).status.value == "completed"
    s.pipelines.tick(True)
    assert [sid for sid, _ in runs(s) if sid.startswith("after-train-ev")] != []


@on_loop
async def test_a_slot_whose_id_a_tenant_took_for_another_run_is_skipped_visibly(db):
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    await call(s, "schedule_create", {"body": hourly()})
    other = {**SUB, "runtime_params": {"submission_id": "hourly-20261201T010000Z", "labels": {"mine": "1"}}}
    await s.pipeline_submit(other, "default", "admin")
    clock.t = T0 + H + 1
    s.pipelines.tick(True)
    got = await call(s, "schedule_get", {"name": "hourly"})
    assert got["skipped"] == 1 and "already used" in got["last_error"] and got["fired"] == 0
    assert got["last_slot"] == "2026-12-01T01:00:00Z"  # handled: not tried at every tick
    clock.t = T0 + 2 * H + 1
    s.pipelines.tick(True)
    assert (await call(s, "schedule_get", {"name": "hourly"}))["fired"] == 1


@on_loop
async def test_a_tenants_schedule_is_checked_as_the_tenant_and_everything_is_audited(db):
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    env = {**SUB, "runtime_params": {"env": {"PYTHONPATH": "/tmp"}}}
    with pytest.raises(ValidationError) as info:  # a tenant's runtime_env passes the allowlist
        await call(s, "schedule_create", {"body": hourly(submission=env)}, tenant="acme", who="acme")
    assert info.value.details[0]["field"].startswith("submission.dag_spec.nodes.fetch_data.runtime_env")
    made = await call(s, "schedule_create", {"body": hourly(submission=env)}, tenant="acme", who="admin")
    assert made["tenant_id"] == "acme"  # the operator may, for the tenant
    await call(s, "schedule_pause", {"name": "hourly"}, tenant="acme", who="acme")
    await call(s, "event_post", {"body": {"type": "x.y"}}, tenant="acme", who="acme")
    log = await s.audit_log(limit=10)
    actions = [(e["who"], e["action"]) for e in log["items"]]
    assert ("admin", "schedule_create") in actions and ("acme", "schedule_pause") in actions
    assert ("acme", "event_post") in actions


@on_loop
async def test_a_burst_of_due_schedules_is_spread_over_ticks_each_slot_once(db, monkeypatch):
    from orion_ray.scheduler import schedules_host

    monkeypatch.setattr(schedules_host, "BUDGET_S", 0.0)  # one fire per tick
    rt, clock = FakeRuntime(BIG), at(T0 + 10)
    s = make(db, rt, clock)
    for i in range(3):
        await call(s, "schedule_create", {"body": hourly(name=f"h{i}")})
    clock.t = T0 + H + 1
    assert [s.pipelines.schedules.tick() for _ in range(4)] == [1, 1, 1, 0]
    assert sorted(sid for sid, _ in runs(s)) == [f"h{i}-20261201T010000Z" for i in range(3)]
