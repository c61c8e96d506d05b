"""Regions at the control plane (orion_ray/policy/region_state.py): heartbeats, loss, fencing,
sequenced status (pure)."""

import pytest

from orion_ray.policy.region_state import (
    Assignment,
    Heartbeat,
    apply_status_batch,
    fence,
    on_heartbeat,
    plan_region_loss,
    register,
    set_state,
    sweep,
    view,
)


def test_register_validates_the_name():
    assert register("us-east-1", now=5).state == "active"
    with pytest.raises(ValueError, match="region"):
        register("", now=0)


def test_silence_past_the_timeout_is_lost_and_a_heartbeat_brings_it_back():
    r = register("a", now=0)
    r, _ = on_heartbeat(r, Heartbeat(free_gpus={"A100": 4}), now=10)
    [r], newly = sweep([r], now=70, lost_timeout_s=60, started_at=0)
    assert newly == [] and not r.lost  # exactly at the timeout: not yet
    [r], newly = sweep([r], now=71, lost_timeout_s=60, started_at=0)
    assert newly == ["a"] and r.state == "inactive"
    [r], newly = sweep([r], now=500, lost_timeout_s=60, started_at=0)
    assert newly == []  # lost once, reported once
    r, returned = on_heartbeat(r, Heartbeat(), now=501)
    assert returned and r.state == "active"


def test_a_region_that_never_heartbeats_is_lost_from_registration():
    [r], newly = sweep([register("a", now=100)], now=161, lost_timeout_s=60, started_at=0)
    assert newly == ["a"]


def test_a_restarted_control_plane_waits_one_timeout_from_its_start():
    r, _ = on_heartbeat(register("a", now=0), Heartbeat(), now=10)
    [r], newly = sweep([r], now=1000, lost_timeout_s=60, started_at=990)
    assert newly == []
    [r], newly = sweep([r], now=1051, lost_timeout_s=60, started_at=990)
    assert newly == ["a"]


def test_draining_survives_a_loss():
    r = set_state(register("a", now=0), "draining")
    [r], _ = sweep([r], now=100, lost_timeout_s=60, started_at=0)
    assert r.state == "inactive"
    r = set_state(r, "active")  # operator's wish is kept while lost
    assert r.state == "inactive"
    r, _ = on_heartbeat(r, Heartbeat(), now=101)
    assert r.state == "active"
    r2 = set_state(register("b", now=0), "draining")
    [r2], _ = sweep([r2], now=100, lost_timeout_s=60, started_at=0)
    r2, _ = on_heartbeat(r2, Heartbeat(), now=101)
    assert r2.state == "draining"


def test_set_state_rejects_unknown_states():
    with pytest.raises(ValueError, match="state"):
        set_state(register("a", now=0), "paused")


def test_view_carries_the_heartbeat_and_the_prices():
    hb = Heartbeat(
        labels={"data": "us"}, free_gpus={"H100": 2}, free_cpus=96, queue_depth=3, launch_failures=1
    )
    r, _ = on_heartbeat(register("a", now=0), hb, now=1)
    v = view(r, gpu_price={"H100": 3.5}, allowed_tenants=frozenset({"t"}))
    assert (v.state, v.labels, v.free_gpus, v.free_cpus, v.queue_depth) == (
        "active",
        {"data": "us"},
        {"H100": 2},
        96,
        3,
    )
    assert v.gpu_price == {"H100": 3.5} and v.allowed_tenants == {"t"} and v.launch_failures == 1


def test_loss_redispatches_what_can_run_elsewhere_and_fails_the_rest():
    runs = [
        Assignment("q", "a", 1, "queued"),
        Assignment("s", "a", 2, "starting"),
        Assignment("r", "a", 1, "running", retries_left=0, restartable=True),
        Assignment("ok", "a", 1, "running", retries_left=2, restartable=True),
        Assignment("nr", "a", 1, "running", retries_left=3),
        Assignment("done", "a", 1, "completed"),
        Assignment("other", "b", 1, "queued"),
    ]
    plan = plan_region_loss(runs, "a")
    redo = {a.run_id: a for a in plan.redispatch}
    assert set(redo) == {"q", "s", "ok"}
    assert redo["s"].generation == 3 and redo["s"].region is None and redo["s"].status == "dispatched"
    assert redo["ok"].retries_left == 1
    failed = dict(plan.fail)
    assert set(failed) == {"r", "nr"} and failed["nr"].startswith("region_lost: a")


def test_fencing_cancels_older_generations_and_runs_moved_elsewhere():
    current = {
        "x": Assignment("x", "b", 2, "running"),
        "y": Assignment("y", "a", 1, "running"),
        "z": Assignment("z", "b", 1, "running"),
    }
    reported = [("x", 1), ("y", 1), ("z", 1), ("direct", 0)]
    assert fence(current, "a", reported) == [("x", 1), ("z", 1)]


def test_status_batch_applies_in_order_and_skips_resends():
    ch = [{"seq": s, "workload_id": f"w{s}"} for s in (3, 1, 2)]
    b = apply_status_batch(0, ch, {})
    assert [c["seq"] for c in b.apply] == [1, 2, 3] and b.last_seq == 3 and b.resync_from is None
    b = apply_status_batch(3, ch + [{"seq": 4, "workload_id": "w4"}], {})
    assert [c["seq"] for c in b.apply] == [4] and b.duplicates == 3


def test_status_batch_stops_at_a_gap_and_asks_for_a_resync():
    ch = [{"seq": s, "workload_id": "w"} for s in (6, 7, 9, 10)]
    b = apply_status_batch(5, ch, {})
    assert [c["seq"] for c in b.apply] == [6, 7] and b.last_seq == 7 and b.resync_from == 8
    b = apply_status_batch(2, [{"seq": 9, "workload_id": "w"}], {})
    assert b.apply == [] and b.last_seq == 2 and b.resync_from == 3


def test_status_from_an_old_generation_is_kept_apart():
    ch = [
        {"seq": 1, "workload_id": "w", "generation": 1, "status": "running"},
        {"seq": 2, "workload_id": "w", "generation": 2, "status": "running"},
        {"seq": 3, "workload_id": "direct", "status": "running"},
    ]
    b = apply_status_batch(0, ch, {"w": 2})
    assert [c["seq"] for c in b.stale] == [1] and [c["seq"] for c in b.apply] == [2, 3]
    assert b.last_seq == 3  # a stale change still advances the sequence


def test_a_redispatched_run_starts_its_new_generation_without_a_start_time():
    a = Assignment("x", "a", 3, "running", retries_left=1, restartable=True, started_at=50.0)
    [redo] = plan_region_loss([a], "a").redispatch
    assert (redo.generation, redo.started_at, redo.retries_left) == (4, None, 0)
