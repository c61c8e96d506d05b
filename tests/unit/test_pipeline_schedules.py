"""Schedules and triggers, the pure parts: cron slots in a time zone (across both DST changes),
the CronJob policy (deadline, catch-up, allow/forbid/replace), backfill bounds, the definitions'
refusals, and event matching. No store, no Ray, no clock."""

from __future__ import annotations

import datetime as dt

import pytest

from orion_ray.errors import ValidationError
from orion_ray.pipelines.cron import iso, latest_slot, next_slot, parse_cron, slot_name, slots_after
from orion_ray.pipelines.schedule_policy import MAX_BACKFILL, MAX_SCAN, backfill_slots, plan
from orion_ray.pipelines.schedule_spec import Event, ScheduleSpec, TriggerSpec, matches, parse

SUB = {"dag_spec": "version: 1", "refs": {}}


def utc(*a: int) -> float:
    return dt.datetime(*a, tzinfo=dt.timezone.utc).timestamp()


def isos(ts):
    return [iso(t) for t in ts]


# -- cron slots --------------------------------------------------------------------------------------
def test_a_daily_time_in_the_repeated_autumn_hour_fires_once():
    c = parse_cron("30 2 * * *", "Europe/Paris")  # 25 Oct 2026: 03:00 CEST → 02:00 CET
    got = slots_after(c, utc(2026, 10, 24), until=utc(2026, 10, 27), limit=10)
    assert isos(got) == ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]


def test_a_daily_time_in_the_skipped_spring_hour_fires_right_after_the_jump():
    c = parse_cron("30 2 * * *", "Europe/Paris")  # 29 Mar 2026: 02:00 CET → 03:00 CEST
    got = slots_after(c, utc(2026, 3, 28), until=utc(2026, 3, 31), limit=10)
    assert isos(got) == ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]


def test_an_hourly_schedule_fires_every_real_hour_across_the_autumn_change():
    c = parse_cron("30 * * * *", "Europe/Paris")
    got = slots_after(c, utc(2026, 10, 24, 23), until=utc(2026, 10, 25, 3), limit=10)
    # 02:30 CEST (00:30Z) and 02:30 CET (01:30Z) are both real hours
    assert isos(got) == [
        "2026-10-24T23:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:30:00Z",
        "2026-10-25T02:30:00Z",
    ]


def test_an_hourly_schedule_skips_nothing_but_the_hour_that_does_not_exist_in_spring():
    c = parse_cron("15 * * * *", "America/New_York")  # 8 Mar 2026: 02:00 EST → 03:00 EDT
    got = slots_after(c, utc(2026, 3, 8, 6), until=utc(2026, 3, 8, 9), limit=10)
    assert isos(got) == ["2026-03-08T06:15:00Z", "2026-03-08T07:15:00Z", "2026-03-08T08:15:00Z"]


def test_weekdays_at_nine_in_tokyo_are_midnight_utc():
    c = parse_cron("0 9 * * 1-5", "Asia/Tokyo")
    got = slots_after(c, utc(2026, 12, 4), until=utc(2026, 12, 9), limit=10)  # Fri 4 Dec
    # Mon, Tue, Wed (Fri 4 Dec 09:00 JST was at 00:00Z, not after it; the end is inclusive)
    assert isos(got) == ["2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z", "2026-12-09T00:00:00Z"]


def test_six_fields_have_seconds_first():
    c = parse_cron("*/5 * * * * *")
    assert slots_after(c, 100.0, until=121.0, limit=10) == [105.0, 110.0, 115.0, 120.0]
    assert latest_slot(c, 122.0) == 120.0 and next_slot(c, 120.0) == 125.0


def test_macros_and_slot_names():
    c = parse_cron("@daily", "UTC")
    assert slots_after(c, utc(2026, 1, 1), until=utc(2026, 1, 3), limit=5) == [
        utc(2026, 1, 2),
        utc(2026, 1, 3),
    ]
    assert slot_name(utc(2026, 12, 7, 1, 2, 3)) == "20261207T010203Z"


@pytest.mark.parametrize(
    "expr", ["", "* * * *", "* * * * * * *", "61 * * * *", "a * * * *", "@reboot", "x" * 300, "* * 32 * *"]
)
def test_bad_cron_expressions_are_refused_with_the_reason(expr):
    with pytest.raises(ValueError):
        parse_cron(expr)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd", "x" * 80])
def test_unknown_time_zones_are_refused(tz):
    with pytest.raises(LookupError):
        parse_cron("* * * * *", tz)


# -- the policy --------------------------------------------------------------------------------------
def spec(**kw) -> ScheduleSpec:
    return ScheduleSpec(name="s", cron=kw.pop("cron", "0 * * * *"), submission=SUB, **kw)


H = 3600.0
T0 = utc(2026, 12, 1)


def decide(s: ScheduleSpec, *, last: float, now: float, active: bool = False):
    return plan(s, parse_cron(s.cron, s.timezone), last_slot=last, now=now, active_run=active)


def test_nothing_due_says_when_to_look_again():
    p = decide(spec(), last=T0, now=T0 + 10)
    assert p.idle and p.next_at == T0 + H and p.last_slot == T0


def test_a_due_slot_fires_once_and_moves_last_slot():
    p = decide(spec(), last=T0, now=T0 + H + 5)
    assert p.fire == [T0 + H] and p.last_slot == T0 + H and p.next_at == T0 + 2 * H
    again = decide(spec(), last=p.last_slot, now=T0 + H + 6)
    assert again.idle  # the same slot never fires twice


def test_after_downtime_only_the_latest_slot_fires_by_default():
    p = decide(spec(), last=T0, now=T0 + 5 * H + 60)
    assert p.fire == [T0 + 5 * H] and p.missed == 4 and p.last_slot == T0 + 5 * H


def test_a_slot_past_its_starting_deadline_is_missed_not_fired():
    p = decide(spec(starting_deadline_seconds=30), last=T0, now=T0 + H + 60)
    assert p.fire == [] and p.missed == 1 and p.last_slot == T0 + H and p.next_at == T0 + 2 * H


def test_catch_up_fires_every_slot_within_the_deadline_oldest_first():
    s = spec(catch_up=True, starting_deadline_seconds=int(2.5 * H))
    p = decide(s, last=T0, now=T0 + 5 * H + 60)
    assert p.fire == [T0 + 3 * H, T0 + 4 * H, T0 + 5 * H] and p.missed == 2


def test_catch_up_without_a_deadline_fires_them_all_in_pages():
    s = spec(cron="* * * * * *", catch_up=True)
    p = decide(s, last=T0, now=T0 + 150)
    assert len(p.fire) == 100 and p.last_slot == T0 + 100 and p.next_at == T0 + 150  # more next tick


def test_forbid_skips_while_the_previous_run_is_active():
    s = spec(concurrency_policy="forbid")
    p = decide(s, last=T0, now=T0 + H + 1, active=True)
    assert p.fire == [] and p.skipped == [(T0 + H, "forbid: the previous run is still active")]
    assert p.last_slot == T0 + H
    assert decide(s, last=T0, now=T0 + H + 1, active=False).fire == [T0 + H]


def test_replace_cancels_the_active_run_and_fires():
    s = spec(concurrency_policy="replace")
    p = decide(s, last=T0, now=T0 + H + 1, active=True)
    assert p.fire == [T0 + H] and p.cancel_active
    assert not decide(s, last=T0, now=T0 + H + 1, active=False).cancel_active


def test_replace_with_catch_up_fires_only_the_latest():
    s = spec(concurrency_policy="replace", catch_up=True)
    p = decide(s, last=T0, now=T0 + 3 * H + 1, active=True)
    assert p.fire == [T0 + 3 * H] and [x for x, _ in p.skipped] == [T0 + H, T0 + 2 * H]


def test_allow_fires_even_with_a_run_active():
    p = decide(spec(), last=T0, now=T0 + H + 1, active=True)
    assert p.fire == [T0 + H] and not p.cancel_active


def test_a_long_downtime_of_a_frequent_schedule_is_counted_without_walking_every_slot():
    s = spec(cron="* * * * * *")
    p = decide(s, last=T0, now=T0 + 86400)
    assert p.fire == [T0 + 86400] and p.missed >= MAX_SCAN


def test_backfill_covers_both_ends_and_is_bounded():
    c = parse_cron("0 * * * *")
    assert backfill_slots(c, T0, T0 + 3 * H) == [T0, T0 + H, T0 + 2 * H, T0 + 3 * H]
    assert len(backfill_slots(c, T0, T0 + (MAX_BACKFILL - 1) * H)) == MAX_BACKFILL
    with pytest.raises(ValueError, match="more than 1000 slots"):
        backfill_slots(c, T0, T0 + MAX_BACKFILL * H)


# -- definitions and events --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": "n", "cron": "61 * * * *", "submission": SUB}, "cron"),
        ({"name": "n", "cron": "* * * * *", "timezone": "Mars/X", "submission": SUB}, "timezone"),
        ({"name": "-bad", "cron": "* * * * *", "submission": SUB}, "name"),
        ({"name": "n" * 65, "cron": "* * * * *", "submission": SUB}, "name"),
        (
            {"name": "n", "cron": "* * * * *", "submission": SUB, "concurrency_policy": "x"},
            "concurrency_policy",
        ),
        (
            {"name": "n", "cron": "* * * * *", "submission": SUB, "starting_deadline_seconds": 0},
            "starting_deadline_seconds",
        ),
        ({"name": "n", "cron": "* * * * *"}, "submission"),
        ({"name": "n", "cron": "* * * * *", "submission": SUB, "extra": 1}, "extra"),
        (
            {
                "name": "n",
                "cron": "* * * * *",
                "submission": {**SUB, "runtime_params": {"submission_id": "x"}},
            },
            "submission",
        ),
    ],
)
def test_bad_schedules_are_422s_naming_the_field(body, field):
    with pytest.raises(ValidationError) as info:
        parse(ScheduleSpec, body)
    assert info.value.details[0]["field"] == field, info.value.details


def test_events_of_orions_own_types_cannot_be_posted_and_labels_are_bounded():
    for bad, field in [
        ({"type": "pipeline.completed"}, "type"),
        ({"type": "workload.failed"}, "type"),
        ({"type": "a b"}, "type"),
        ({"type": "x", "labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
        ({"type": "x", "labels": {"k": "v" * 300}}, "labels"),
        ({"type": "x", "labels": {"k": 1}}, "labels.k"),
        ({"type": "x", "extra": 1}, "extra"),
    ]:
        with pytest.raises(ValidationError) as info:
            parse(Event, bad)
        assert info.value.details[0]["field"] == field, (bad, info.value.details)
    with pytest.raises(ValidationError):
        parse(Event, ["not", "an", "object"])


def test_a_trigger_matches_its_type_and_every_label_it_selects():
    t = TriggerSpec(name="t", event_type="dataset.ready", match_labels={"dataset": "xs"}, submission=SUB)
    assert matches(t, "dataset.ready", {"dataset": "xs", "other": "1"})
    assert not matches(t, "dataset.ready", {"dataset": "ys"})
    assert not matches(t, "dataset.ready", {})
    assert not matches(t, "dataset.gone", {"dataset": "xs"})
    anything = TriggerSpec(name="t", event_type="dataset.ready", submission=SUB)
    assert matches(anything, "dataset.ready", {})
