"""Autoscaling policy: decide() with an injected clock (no Ray, no actor)."""

import copy
import datetime as dt
import json
import random
import subprocess
import sys

import pytest

from orion_ray.policy.autoscaling import (
    AutoscaleContext,
    AutoscaleState,
    HistoryPoint,
    NodeSample,
    PendingGang,
    PoolObservation,
    PoolSpec,
    PoolState,
    ScalingParams,
    ScheduleWindow,
    assign_pending,
    decide,
    hybrid,
    nodes_for,
    params_from_config,
    parse_window,
    predictive,
    reactive,
    record_point,
    schedule,
)
from orion_ray.policy.fit import ACCELERATOR_LABEL


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()


MON_0855 = utc(2026, 11, 23, 8, 55)  # 2026-11-23 is a Monday
TUE_1000 = utc(2026, 11, 24, 10, 0)
SAT_1000 = utc(2026, 11, 28, 10, 0)
NOW = TUE_1000
SHAPE = {"CPU": 2, "GPU": 4}


def node(
    nid, running=0, free=None, state="ready", idle_for=1000.0, frag=0.0, shape=SHAPE, pool="gpu", now=NOW
):
    """A node of ``shape``; idle (idle_for seconds) unless it runs work."""
    total = {k: float(v) for k, v in shape.items()}
    idle_since = None if running else now - idle_for
    return NodeSample(
        nid, pool, total, dict(total) if free is None else free, running, state, idle_since, frag
    )


def busy_node(nid, free=None, **kw):
    return node(nid, running=1, free=free if free is not None else {"CPU": 0.0, "GPU": 0.0}, **kw)


def pool(name="gpu", lo=0, hi=10, policy="reactive", shape=SHAPE, labels=None, schedule=(), **params):
    return PoolSpec(
        name,
        dict(shape),
        dict(labels or {"orion.io/pool": name}),
        lo,
        hi,
        policy,
        ScalingParams(**params),
        tuple(schedule),
    )


def gang(n, res, strategy="PACK", **kw):
    return PendingGang(tuple(dict(res) for _ in range(n)), strategy, **kw)


def run(p, nodes=(), pending=(), state=None, now=NOW, history=(), **obs):
    o = PoolObservation(p.name, tuple(nodes), tuple(pending), **obs)
    ctx = AutoscaleContext((p,), {p.name: o}, tuple(history))
    decision, new_state = decide(ctx, state or AutoscaleState(), now)
    return decision.pools[0], new_state.pools[p.name]


def test_autoscaling_policy_imports_no_heavy_dependency():
    code = (
        "import sys, orion_ray.policy.autoscaling\n"
        "bad = [m for m in ('ray', 'fastapi', 'boto3', 'kubernetes') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# -- cooldowns -----------------------------------------------------------------------------------
def test_utilisation_scale_up_is_held_within_the_cooldown_then_goes():
    p = pool(scale_up_cooldown_s=60)
    nodes = [busy_node("a"), busy_node("b")]
    state = AutoscaleState({"gpu": PoolState(last_up_at=NOW - 10, target=2)})
    d, s = run(p, nodes, state=state, cpu_utilization=95.0)
    assert (d.target, d.direction, d.trigger, d.held_by_cooldown) == (2, "none", "cooldown", True)
    assert s.last_up_at == NOW - 10  # a held decision does not restart the cooldown
    d, s = run(p, nodes, state=state, now=NOW + 51, cpu_utilization=95.0)
    assert (d.target, d.direction, d.trigger, d.held_by_cooldown) == (3, "up", "utilization", False)
    assert s.last_up_at == NOW + 51 and s.target == 3


def test_queue_scale_up_ignores_the_cooldown_but_utilisation_beyond_it_waits():
    p = pool(scale_up_cooldown_s=60)
    nodes = [busy_node("a"), busy_node("b")]
    state = AutoscaleState({"gpu": PoolState(last_up_at=NOW - 10, target=2)})
    d, _ = run(p, nodes, [gang(1, {"GPU": 4})], state=state)
    assert (d.target, d.direction, d.trigger, d.held_by_cooldown) == (3, "up", "queue", False)
    # queue needs 3, utilisation 4 (ceil(2 * 140 / 70)): the queued gang's node goes, the rest waits
    d, _ = run(p, nodes, [gang(1, {"GPU": 4})], state=state, cpu_utilization=140.0)
    assert (d.target, d.trigger, d.held_by_cooldown) == (3, "queue", True)


def test_nodes_in_flight_are_not_cancelled_by_a_held_scale_up():
    p = pool(scale_up_cooldown_s=60)
    state = AutoscaleState({"gpu": PoolState(last_up_at=NOW - 10, target=4)})
    d, _ = run(p, [busy_node("a"), busy_node("b")], state=state, cpu_utilization=300.0)
    assert (d.target, d.direction, d.held_by_cooldown) == (4, "up", True)  # 2 still provisioning


def test_scale_down_is_held_within_the_cooldown_then_releases():
    p = pool(scale_down_cooldown_s=300)
    nodes = [busy_node("a"), node("b"), node("c"), node("d")]
    for last in (PoolState(last_down_at=NOW - 100), PoolState(last_up_at=NOW - 100)):
        d, s = run(p, nodes, state=AutoscaleState({"gpu": last}))
        assert (d.target, d.direction, d.trigger, d.release) == (4, "none", "cooldown", ())
        assert d.held_by_cooldown and s.last_down_at == last.last_down_at
    d, s = run(p, nodes, state=AutoscaleState({"gpu": PoolState(last_down_at=NOW - 301)}))
    assert (d.target, d.direction, d.trigger) == (1, "down", "idle")
    assert sorted(d.release) == ["b", "c", "d"] and s.last_down_at == NOW and s.target == 1


# -- bounds --------------------------------------------------------------------------------------
def test_min_size_is_a_floor_without_demand():
    d, _ = run(pool(lo=2, hi=5))
    assert (d.current, d.target, d.direction, d.trigger) == (0, 2, "up", "min_size")
    d, _ = run(pool(lo=2, hi=5), [node("a"), node("b"), node("c")])
    assert (d.target, d.trigger, len(d.release)) == (2, "min_size", 1)


def test_bounds_are_not_held_by_cooldowns():
    state = AutoscaleState({"gpu": PoolState(last_up_at=NOW - 1, last_down_at=NOW - 1)})
    d, _ = run(pool(lo=3, hi=5), [node("a")], state=state)
    assert (d.target, d.trigger, d.held_by_cooldown) == (3, "min_size", False)
    d, _ = run(pool(lo=0, hi=2), [node("a"), node("b"), node("c"), busy_node("d")], state=state)
    assert (d.target, d.trigger, len(d.release)) == (2, "cooldown", 2)  # max_size 2, not 1 yet
    # min_size passes a held utilisation increase; the rest of the increase waits
    d, _ = run(pool(lo=3, hi=9), [busy_node("a")], state=state, cpu_utilization=500.0)
    assert (d.target, d.trigger, d.held_by_cooldown) == (3, "min_size", True)
    # down to max_size while in cooldown: nothing held beyond the bound
    d, _ = run(pool(lo=0, hi=1), [busy_node("a"), node("b")], state=state, cpu_utilization=500.0)
    assert (d.target, d.trigger, d.held_by_cooldown, d.release) == (1, "max_size", False, ("b",))
    d, _ = run(pool(lo=0, hi=1), [busy_node("a"), busy_node("b")])
    assert (d.target, d.direction, d.release) == (2, "none", ())  # running work stays
    assert "only 0 of 1 node(s) can go" in d.reason


def test_max_size_caps_huge_demand():
    d, _ = run(pool(lo=0, hi=5), pending=[gang(1, {"GPU": 4})] * 100, queue_depth=100_000)
    assert (d.target, d.direction, d.trigger) == (5, "up", "max_size")
    assert d.candidates["reactive"] == 1000


# -- reactive packing ----------------------------------------------------------------------------
def test_queue_depth_asks_a_node_per_target_depth():
    d, _ = run(pool(target_queue_depth=100), queue_depth=250)
    assert (d.target, d.trigger, "queue depth 250" in d.reason) == (3, "queue", True)
    d, _ = run(pool(target_queue_depth=100), queue_depth=1)
    assert (d.target, d.trigger) == (1, "queue")


def test_serving_gpus_add_nodes_beyond_those_in_use():
    d, _ = run(pool(), [busy_node("a")], serving_gpus=6.0)
    assert (d.target, d.trigger) == (3, "serving")  # 6 GPUs = 2 nodes of 4 GPUs, plus "a"


def test_strict_spread_gangs_need_distinct_nodes():
    p = pool()
    gangs = [gang(2, {"GPU": 4}, "STRICT_SPREAD")] * 3
    assert nodes_for(p, [], gangs) == 6
    n, trigger, reason = reactive(p, PoolObservation("gpu", pending=tuple(gangs)), (), None, NOW)
    assert (n, trigger) == (6, "queue")
    assert "3 pending gang(s) (24 GPUs)" in reason and "6 new node(s) of {CPU:2,GPU:4}" in reason


def test_pack_gang_shares_one_node():
    assert nodes_for(pool(), [], [gang(4, {"GPU": 1})]) == 1
    assert nodes_for(pool(), [], [gang(4, {"GPU": 1}, "STRICT_PACK")]) == 1
    assert nodes_for(pool(), [], [gang(5, {"GPU": 1})]) == 2  # best effort overflows
    assert nodes_for(pool(), [], [gang(4, {"GPU": 1}, "STRICT_SPREAD")]) == 4


def test_gangs_fill_free_space_on_existing_nodes_first():
    half = {"CPU": 1.0, "GPU": 2.0}
    nodes = [busy_node("a", free=dict(half)), busy_node("b", free=dict(half))]
    assert nodes_for(pool(), nodes, [gang(2, {"GPU": 2}, "STRICT_SPREAD")]) == 2
    assert nodes_for(pool(), nodes, [gang(2, {"GPU": 1})]) == 2
    assert nodes_for(pool(), nodes, [gang(1, {"GPU": 4})]) == 3  # no room: one new node
    # an idle ready node is used before a new one, and busy nodes before idle ones
    idle = node("0-idle")  # sorts before "a": busy nodes must still come first
    assert nodes_for(pool(), [idle] + nodes, [gang(1, {"GPU": 4})]) == 3
    assert nodes_for(pool(), [idle] + nodes, [gang(1, {"GPU": 2})]) == 2
    # cordoned nodes take nothing new but their work still counts
    cordoned = busy_node("z", free=dict(half), state="cordoned")
    assert nodes_for(pool(), [cordoned], [gang(1, {"GPU": 2})]) == 2


def test_first_fit_decreasing_places_big_gangs_first():
    gangs = [gang(1, {"GPU": 1}), gang(1, {"GPU": 1}), gang(1, {"GPU": 3}), gang(1, {"GPU": 3})]
    assert nodes_for(pool(), [], gangs) == 2  # 3+1, 3+1 — in arrival order it would be 1+1, 3, 3


def test_assign_pending_by_shape_labels_and_explicit_pool():
    cpu = pool("cpu", shape={"CPU": 8})
    a10 = pool("a10", shape={"CPU": 8, "GPU": 4}, labels={ACCELERATOR_LABEL: "A10G"}, hi=4)
    a100 = pool("a100", shape={"CPU": 16, "GPU": 8}, labels={ACCELERATOR_LABEL: "A100"})
    g_a100 = gang(1, {"GPU": 1}, gpu_type="A100")
    g_gpu = gang(1, {"GPU": 4})
    g_big = gang(1, {"GPU": 16})
    g_pack = gang(2, {"GPU": 4}, "STRICT_PACK")
    g_spread = gang(5, {"GPU": 1}, "STRICT_SPREAD")  # a10 has max_size 4
    g_explicit = gang(1, {"CPU": 1}, pool="a100")
    g_nowhere = gang(1, {"CPU": 1}, pool="nope")
    g_wrong_type = gang(1, {"GPU": 1}, gpu_type="H100")
    out = assign_pending(
        [cpu, a10, a100], [g_a100, g_gpu, g_big, g_pack, g_spread, g_explicit, g_nowhere, g_wrong_type]
    )
    assert out["a100"] == [g_a100, g_pack, g_spread, g_explicit]
    assert out["a10"] == [g_gpu]
    assert out["cpu"] == []
    assert out[""] == [g_big, g_nowhere, g_wrong_type]


# -- scale-down: which nodes go ------------------------------------------------------------------
def test_scale_down_never_releases_running_work_and_prefers_drained_emptiest_fragmented():
    nodes = [
        busy_node("busy", free=dict(SHAPE)),
        NodeSample("odd", "gpu", dict(SHAPE), dict(SHAPE), 2, "ready", NOW - 999),
        node("part", free={"CPU": 2.0, "GPU": 2.0}, frag=0.9),  # emptiness before frag
        node("frag", frag=0.5),
        node("empty"),
        node("drained", state="drained", idle_for=0),
    ]
    order = []
    for lo in (5, 4, 3, 2):
        d, _ = run(pool(lo=lo), nodes)
        assert d.direction == "down" and len(d.release) == d.current - d.target == 6 - lo
        order = list(d.release)
    assert order == ["drained", "frag", "empty", "part"]
    d, _ = run(pool(lo=0), nodes)
    assert d.target == 2 and "busy" not in d.release and "odd" not in d.release


def test_nodes_idle_less_than_idle_s_stay():
    nodes = [busy_node("a"), node("b", idle_for=30), node("c", idle_for=90)]
    d, _ = run(pool(idle_s=60), nodes)
    assert (d.target, d.direction, d.release) == (2, "down", ("c",))
    assert "only 1 of 2 node(s) can go" in d.reason
    d, _ = run(pool(idle_s=60), nodes[:2])
    assert (d.target, d.direction, d.release) == (2, "none", ())


# -- predictive ----------------------------------------------------------------------------------
def weekly_history(end, weeks=2, busy=8, quiet=1, pool_name="gpu"):
    """5-minute points: weekdays 09:00-17:00 UTC need ``busy`` nodes, otherwise ``quiet``."""
    out = []
    t = end - weeks * 7 * 86400
    while t < end:
        moment = dt.datetime.fromtimestamp(t, tz=dt.timezone.utc)
        office = moment.weekday() < 5 and 9 <= moment.hour < 17
        out.append(HistoryPoint(t, pool_name, busy if office else quiet))
        t += 300
    return out


def test_predictive_follows_a_weekly_pattern():
    p = pool(predictive_lead_s=600)
    hist = weekly_history(MON_0855)
    empty = PoolObservation("gpu")
    n, trigger, reason = predictive(p, empty, hist, None, MON_0855)  # forecast for 09:05
    assert (n, trigger) == (8, "forecast") and "Mon 09:00-09:59" in reason
    assert predictive(p, empty, hist, None, MON_0855 - 3600)[0] == 1  # 07:55 -> 08:05
    sat = utc(2026, 11, 28, 12, 0)
    assert predictive(p, empty, weekly_history(sat), None, sat)[0] == 1
    assert predictive(p, empty, [], None, MON_0855) == (0, "forecast", "forecast in 10m: no history")


def test_predictive_ignores_history_older_than_the_lookback():
    hist = weekly_history(MON_0855)
    three_weeks_ago = weekly_history(MON_0855 - 14 * 86400, weeks=1, busy=20)  # -21d..-14d
    empty = PoolObservation("gpu")
    assert predictive(pool(), empty, three_weeks_ago + hist, None, MON_0855)[0] == 8
    assert predictive(pool(lookback_s=21 * 86400), empty, three_weeks_ago + hist, None, MON_0855)[0] == 20
    assert (
        predictive(pool(), empty, [HistoryPoint(MON_0855 + 60, "gpu", 9)] + hist, None, MON_0855)[0] == 8
    )  # nor points from the future
    other_pool = weekly_history(MON_0855, busy=30, pool_name="cpu")
    assert predictive(pool(), empty, other_pool + hist, None, MON_0855)[0] == 8


def test_predictive_falls_back_to_the_same_hour_on_any_day():
    tuesday_9 = [HistoryPoint(utc(2026, 11, 17, 9, m), "gpu", 5) for m in range(0, 60, 5)]
    n, _, reason = predictive(pool(), PoolObservation("gpu"), tuesday_9, None, MON_0855)
    assert n == 5 and "any day" in reason


def test_decide_with_the_predictive_policy_scales_ahead_but_keeps_running_work():
    p = pool(policy="predictive", hi=10)
    d, _ = run(p, now=MON_0855, history=weekly_history(MON_0855))
    assert (d.target, d.trigger, d.candidates["predictive"]) == (8, "forecast", 8)
    sat = utc(2026, 11, 28, 12, 0)
    nodes = [busy_node(f"n{i}", now=sat) for i in range(3)]
    d, _ = run(p, nodes, now=sat, history=weekly_history(sat))
    assert (d.target, d.trigger, d.release) == (3, "in_use", ())


# -- schedule ------------------------------------------------------------------------------------
def test_schedule_window_office_hours():
    w = parse_window({"cron": "0 9 * * 1-5", "duration": "8h", "size": 4})
    assert (w.duration_s, w.size) == (8 * 3600, 4)
    assert w.is_open(TUE_1000)
    assert w.is_open(utc(2026, 11, 24, 9, 0)) and w.is_open(utc(2026, 11, 24, 16, 59, 59))
    assert not w.is_open(SAT_1000)
    assert not w.is_open(utc(2026, 11, 24, 17, 0)) and not w.is_open(utc(2026, 11, 24, 8, 59))


def test_cron_steps_lists_ranges_and_sunday_seven():
    quarter = ScheduleWindow("*/15 * * * *", 60, 1)
    assert quarter.is_open(utc(2026, 11, 24, 10, 15, 30))
    assert not quarter.is_open(utc(2026, 11, 24, 10, 16, 30))
    twice = ScheduleWindow("0 9,18 * * *", 3600, 1)
    assert twice.is_open(utc(2026, 11, 24, 18, 30)) and not twice.is_open(utc(2026, 11, 24, 12))
    ranged = ScheduleWindow("0-30/10 * * * *", 60, 1)
    assert ranged.is_open(utc(2026, 11, 24, 10, 20, 1))
    assert not ranged.is_open(utc(2026, 11, 24, 10, 40, 1))
    sunday = utc(2026, 11, 29, 12, 0)
    assert ScheduleWindow("0 12 * * 7", 60, 1).is_open(sunday)
    assert ScheduleWindow("0 12 * * 0", 60, 1).is_open(sunday)
    assert not ScheduleWindow("0 12 * * 1-6", 60, 1).is_open(sunday)
    # day-of-month and day-of-week both restricted: either matches (Vixie cron)
    first_or_monday = ScheduleWindow("0 12 1 * 1", 60, 1)
    assert first_or_monday.is_open(utc(2026, 12, 1, 12, 0))  # a Tuesday, the 1st
    assert first_or_monday.is_open(utc(2026, 11, 30, 12, 0))  # a Monday
    assert not first_or_monday.is_open(utc(2026, 12, 2, 12, 0))
    assert not ScheduleWindow("0 12 1 * *", 60, 1).is_open(utc(2026, 11, 30, 12, 0))
    # a week-long window opened last Saturday is still open on Friday
    week = ScheduleWindow("0 0 * * 6", 7 * 86400, 1)
    assert week.is_open(utc(2026, 11, 27, 23, 59)) and week.opened_at(utc(2026, 11, 27, 23, 59)) == utc(
        2026, 11, 21
    )


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"cron": "0 9 * *", "duration": "8h", "size": 4}, "cron"),
        ({"cron": "61 9 * * *", "duration": "8h", "size": 4}, "cron"),
        ({"cron": "*/0 9 * * *", "duration": "8h", "size": 4}, "cron"),
        ({"cron": "0 9 * * mon", "duration": "8h", "size": 4}, "cron"),
        ({"cron": "0 9 * * *", "duration": "8x", "size": 4}, "duration"),
        ({"cron": "0 9 * * *", "duration": "8h", "size": -1}, "size"),
        ({"cron": "0 9 * * *", "size": 1}, "duration"),
    ],
)
def test_bad_windows_name_the_field(raw, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        parse_window(raw)


def test_schedule_policy_opens_and_closes():
    win = (parse_window({"cron": "0 9 * * 1-5", "duration": "8h", "size": 4}),)
    p = pool(policy="schedule", schedule=win)
    d, _ = run(p)
    assert (d.target, d.direction, d.trigger) == (4, "up", "schedule")
    assert schedule(p, PoolObservation("gpu"), (), None, SAT_1000)[0] == 0
    nodes = [
        busy_node("a", now=SAT_1000),
        busy_node("b", now=SAT_1000),
        node("c", now=SAT_1000),
        node("d", now=SAT_1000),
    ]
    d, _ = run(p, nodes, now=SAT_1000)
    assert (d.target, d.direction, sorted(d.release)) == (2, "down", ["c", "d"])


# -- hybrid --------------------------------------------------------------------------------------
def test_hybrid_is_the_max_of_its_parts_and_bounded():
    win = (ScheduleWindow("0 9 * * 1-5", 8 * 3600, 4),)
    hist = weekly_history(TUE_1000)  # Tuesday 10:10 needs 8
    three = [gang(1, {"GPU": 4})] * 3
    on = pool(policy="hybrid", schedule=win, predictive_enabled=True, hi=10)
    off = pool(policy="hybrid", schedule=win, predictive_enabled=False, hi=10)
    obs = PoolObservation("gpu", pending=tuple(three))
    assert hybrid(on, obs, hist, None, NOW)[:2] == (8, "forecast")
    assert hybrid(off, obs, hist, None, NOW)[:2] == (4, "schedule")
    assert hybrid(off, PoolObservation("gpu", pending=tuple(three * 2)), hist, None, NOW)[0] == 6
    d, _ = run(on, pending=three, history=hist)
    assert d.candidates == {"reactive": 3, "predictive": 8, "schedule": 4} and d.target == 8
    d, _ = run(
        pool(policy="hybrid", schedule=win, predictive_enabled=True, hi=6), pending=three, history=hist
    )
    assert (d.target, d.trigger) == (6, "max_size")
    d, _ = run(off, pending=three, history=hist)
    assert "predictive" not in d.candidates and d.target == 4


# -- state, config, purity, actuation ------------------------------------------------------------
def test_state_round_trips_through_json():
    state = AutoscaleState({"gpu": PoolState(1.5, None, 3), "cpu": PoolState(None, 2.0, None)})
    back = AutoscaleState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state
    assert AutoscaleState.from_dict(None) == AutoscaleState() == AutoscaleState.from_dict({})
    _, new = decide(AutoscaleContext((pool(),), {}), AutoscaleState(), NOW)
    assert AutoscaleState.from_dict(json.loads(json.dumps(new.to_dict()))) == new


def test_params_from_config_with_overrides():
    defaults = {
        "target_cpu_utilization": 70,
        "target_queue_depth": 100,
        "scale_up_cooldown": "60s",
        "scale_down_cooldown": "300s",
        "predictive_scaling": {"enabled": True, "lookback_period": "14d"},
        "idle_time": "60s",
        "predictive_lead": "10m",
        "policy": "hybrid",
    }
    prm = params_from_config(
        defaults,
        {"scale_down_cooldown": "1h", "idle_time": 90, "predictive_scaling": {"lookback_period": "7d"}},
    )
    assert prm == ScalingParams(70.0, 100, 60.0, 3600.0, True, 7 * 86400, 600.0, 90.0)
    assert params_from_config({}, {}) == ScalingParams()
    assert params_from_config({"scale_up_cooldown": "1.5m"}, {}).scale_up_cooldown_s == 90.0


@pytest.mark.parametrize(
    "override, message",
    [
        ({"scale_up_cooldown": "5x"}, "scale_up_cooldown: '5x' is not a duration"),
        ({"scale_down_cooldown": -1}, "scale_down_cooldown: -1 is not a duration"),
        ({"idle_time": True}, "idle_time: True is not a duration"),
        ({"predictive_lead": "m10"}, "predictive_lead: 'm10' is not a duration"),
        (
            {"predictive_scaling": {"lookback_period": "2w"}},
            "predictive_scaling.lookback_period: '2w' is not a duration",
        ),
        ({"predictive_scaling": {"enabled": "yes"}}, "predictive_scaling.enabled: 'yes'"),
        ({"target_cpu_utilization": 0}, "target_cpu_utilization: 0"),
        ({"target_cpu_utilization": "70%"}, "target_cpu_utilization: '70%'"),
        ({"target_queue_depth": 0}, "target_queue_depth: 0"),
    ],
)
def test_params_from_config_bad_values_name_the_field(override, message):
    with pytest.raises(ValueError) as e:
        params_from_config({"scale_up_cooldown": "60s"}, override)
    assert str(e.value).startswith(message)


def test_decide_does_not_mutate_its_inputs():
    p = pool(policy="hybrid", predictive_enabled=True, schedule=(ScheduleWindow("0 9 * * 1-5", 8 * 3600, 4),))
    obs = PoolObservation(
        "gpu",
        (busy_node("a"), node("b"), node("c", state="drained")),
        (gang(2, {"GPU": 4}, "STRICT_SPREAD"),),
        3,
        95.0,
        50.0,
        2.0,
        3,
    )
    ctx = AutoscaleContext((p,), {"gpu": obs}, tuple(weekly_history(NOW, weeks=1)))
    state = AutoscaleState({"gpu": PoolState(NOW - 30, NOW - 500, 3)})
    ctx_before, state_before = copy.deepcopy(ctx), copy.deepcopy(state)
    decision, new_state = decide(ctx, state, NOW)
    assert ctx == ctx_before and state == state_before
    assert new_state is not state and new_state.pools["gpu"] is not state.pools["gpu"]
    assert decide(ctx, state, NOW) == (decision, new_state)  # deterministic


def test_request_bundles_carry_label_selectors():
    gpu = pool("gpu", lo=2, labels={ACCELERATOR_LABEL: "A100", "orion.io/pool": "gpu"})
    cpu = pool("cpu", lo=1, shape={"CPU": 8}, labels={"orion.io/pool": "cpu"})
    decision, _ = decide(AutoscaleContext((gpu, cpu), {}), AutoscaleState(), NOW)
    bundles, selectors = decision.request_bundles()
    assert bundles == [SHAPE, SHAPE, {"CPU": 8}]
    assert selectors == [{ACCELERATOR_LABEL: "A100", "orion.io/pool": "gpu"}] * 2 + [{"orion.io/pool": "cpu"}]
    bundles[0]["GPU"] = 0  # copies: the decision itself is untouched
    assert decision.request_bundles()[0][0] == SHAPE


def test_record_point_stores_reactive_demand_before_clamping():
    p = pool(hi=2, policy="schedule")
    ctx = AutoscaleContext((p,), {"gpu": PoolObservation("gpu", pending=(gang(5, {"GPU": 4}),))})
    decision, _ = decide(ctx, AutoscaleState(), NOW)
    assert decision.pools[0].target == 0  # schedule policy, nothing open, nothing running
    assert record_point(ctx, decision, NOW) == [HistoryPoint(NOW, "gpu", 5.0)]


# -- properties and size -------------------------------------------------------------------------
def random_case(rng):
    shapes = [{"CPU": 8}, {"CPU": 2, "GPU": 4}, {"CPU": 16, "GPU": 8}]
    pools, obs = [], {}
    for i in range(rng.randint(1, 4)):
        lo = rng.randint(0, 3)
        shape = rng.choice(shapes)
        p = pool(
            f"p{i}",
            lo=lo,
            hi=lo + rng.randint(0, 8),
            shape=shape,
            policy=rng.choice(["reactive", "predictive", "schedule", "hybrid"]),
            predictive_enabled=rng.random() < 0.5,
            idle_s=rng.choice([0, 60, 600]),
            schedule=(ScheduleWindow("0 9 * * 1-5", 8 * 3600, rng.randint(0, 6)),),
        )
        pools.append(p)
        nodes = []
        for j in range(rng.randint(0, 10)):
            running = rng.choice([0, 0, 1, 2])
            free = {k: v * rng.choice([0, 0.5, 1]) for k, v in shape.items()}
            nodes.append(
                NodeSample(
                    f"p{i}-n{j}",
                    p.name,
                    dict(shape),
                    free,
                    running,
                    rng.choice(["ready", "ready", "cordoned", "draining", "drained"]),
                    None if running and rng.random() < 0.8 else NOW - rng.uniform(0, 1200),
                    rng.random(),
                )
            )
        obs[p.name] = nodes
    gangs = [
        gang(
            rng.randint(1, 4),
            {"GPU": rng.choice([1, 2, 4])} if rng.random() < 0.6 else {"CPU": rng.choice([1, 2])},
            rng.choice(["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]),
        )
        for _ in range(rng.randint(0, 12))
    ]
    assigned = assign_pending(pools, gangs)
    observations = {
        p.name: PoolObservation(
            p.name,
            tuple(obs[p.name]),
            tuple(assigned[p.name]),
            rng.randint(0, 500),
            rng.choice([None, 30.0, 95.0]),
        )
        for p in pools
    }
    history = [
        HistoryPoint(NOW - rng.uniform(0, 14 * 86400), p.name, rng.uniform(0, 12))
        for p in pools
        for _ in range(rng.randint(0, 30))
    ]
    state = AutoscaleState(
        {
            p.name: PoolState(
                rng.choice([None, NOW - 30, NOW - 1000]),
                rng.choice([None, NOW - 30, NOW - 1000]),
                rng.choice([None, rng.randint(0, 10)]),
            )
            for p in pools
        }
    )
    return AutoscaleContext(tuple(pools), observations, tuple(history)), state


def test_property_bounds_and_safe_release():
    rng = random.Random(20261125)
    for _ in range(200):
        ctx, state = random_case(rng)
        decision, new_state = decide(ctx, state, NOW)
        for p, d in zip(ctx.pools, decision.pools):
            nodes = {n.node_id: n for n in ctx.observations[p.name].nodes}
            releasable = [
                n
                for n in nodes.values()
                if n.running == 0
                and (
                    n.state == "drained"
                    or (n.idle_since is not None and NOW - n.idle_since >= p.params.idle_s)
                )
            ]
            assert p.min_size <= d.target <= max(p.max_size, d.current), d
            if d.target > p.max_size:  # only nodes that cannot go keep a pool above max_size
                assert d.direction != "up" and len(d.release) == len(releasable), d
            assert all(nodes[r].running == 0 for r in d.release), d
            assert len(set(d.release)) == len(d.release)
            if d.direction == "down":
                assert len(d.release) == d.current - d.target > 0
            else:
                assert d.release == ()
            assert new_state.pools[p.name].target == d.target


def test_a_big_cluster_decides():
    rng = random.Random(7)
    big = {"CPU": 16, "GPU": 8}
    pools = [
        pool(f"p{i}", lo=1, hi=400, policy="hybrid", predictive_enabled=True, shape=big) for i in range(10)
    ]
    gangs = [
        gang(
            rng.randint(1, 8),
            {"GPU": rng.choice([1, 2, 4, 8]), "CPU": 1},
            rng.choice(["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]),
            pool=f"p{rng.randrange(10)}",
        )
        for _ in range(1000)
    ]
    assigned = assign_pending(pools, gangs)
    too_big = [g for g in gangs if g.strategy == "STRICT_PACK" and sum(b["GPU"] for b in g.bundles) > 8]
    assert assigned[""] == too_big
    observations = {}
    for p in pools:
        nodes = tuple(
            node(f"{p.name}-{j}", running=j % 2, shape=big, free={"CPU": 8.0, "GPU": float(j % 5)})
            for j in range(200)
        )
        observations[p.name] = PoolObservation(p.name, nodes, tuple(assigned[p.name]), 50, 80.0)
    history = tuple(pt for p in pools[:2] for pt in weekly_history(NOW, weeks=1, pool_name=p.name))
    decision, _ = decide(AutoscaleContext(tuple(pools), observations, history), AutoscaleState(), NOW)
    assert [d.pool for d in decision.pools] == [p.name for p in pools]
    for d in decision.pools:
        assert d.current == 200 and 100 <= d.target <= 400
        assert d.direction == "up" and d.trigger in ("queue", "max_size")
