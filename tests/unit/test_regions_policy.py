"""Dispatch to regions (orion_ray/policy/regions.py): filter, score, blocklist, batches (pure)."""

import pytest

from orion_ray.policy.regions import (
    Blocklist,
    DispatchWeights,
    RegionView,
    RunRequest,
    decide,
    plan_dispatch,
)


def region(name, gpus=8, gpu_type="A100", cpus=64, **kw):
    free = {gpu_type: gpus} if gpu_type else {}
    return RegionView(name=name, free_gpus=free, free_cpus=cpus, **kw)


def run(rid="r1", tenant="t", gpus=1, gpu_type="A100", cpus=1, **kw):
    return RunRequest(run_id=rid, tenant_id=tenant, gpus=gpus, gpu_type=gpu_type, cpus=cpus, **kw)


def codes(d, name):
    return [r["code"] for r in d.reasons[name]]


# == filter =======================================================================================
def test_only_active_regions_take_new_work():
    regs = [region("a", state="draining"), region("b", state="inactive"), region("c")]
    d = decide(run(), regs, now=0)
    assert d.region == "c"
    assert codes(d, "a") == ["state"] and "draining" in d.reasons["a"][0]["message"]
    assert codes(d, "b") == ["state"]
    assert codes(d, "c") == ["chosen"]


def test_nowhere_when_every_region_is_draining():
    d = decide(run(), [region("a", state="draining")], now=0)
    assert d.region is None and d.ranked == () and not d.queued


def test_tenant_must_be_allowed():
    regs = [region("a", allowed_tenants=frozenset({"x"})), region("b")]
    d = decide(run(tenant="t"), regs, now=0)
    assert d.region == "b" and codes(d, "a") == ["tenant"]
    assert decide(run(tenant="x", preference=["a"]), regs, now=0).region == "a"


def test_pin_wins_over_everything_else():
    regs = [region("a", gpus=8), region("b", gpus=1)]
    d = decide(run(region="b"), regs, now=0)
    assert d.region == "b" and codes(d, "a") == ["pin"]


def test_pin_to_an_unknown_region_says_so():
    d = decide(run(region="zz"), [region("a")], now=0)
    assert d.region is None and codes(d, "zz") == ["pin"] and "unknown" in d.reasons["zz"][0]["message"]


def test_pin_to_a_draining_region_places_nowhere():
    d = decide(run(region="a"), [region("a", state="draining"), region("b")], now=0)
    assert d.region is None and codes(d, "a") == ["state"]


def test_selector_labels_must_all_match():
    regs = [
        region("a", labels={"data": "s3-us-east", "tier": "gold"}),
        region("b", labels={"data": "s3-eu"}),
        region("c", labels={"data": "s3-us-east"}),
    ]
    d = decide(run(region_selector={"data": "s3-us-east", "tier": "gold"}), regs, now=0)
    assert d.region == "a"
    assert codes(d, "b") == ["selector"] and codes(d, "c") == ["selector"]
    assert "tier=gold" in d.reasons["c"][0]["message"]


def test_gpu_type_must_be_offered_even_if_all_busy():
    regs = [region("a", gpu_type="H100"), region("b", gpus=0, gpu_type="A100")]
    d = decide(run(gpu_type="A100"), regs, now=0)
    assert codes(d, "a") == ["gpu_type"]
    assert d.region == "b" and d.queued  # offered, none free: its queue


def test_a_region_without_gpus_takes_cpu_work_only():
    regs = [region("cpu", gpu_type=None, cpus=128)]
    assert decide(run(gpus=0, gpu_type=None, cpus=4), regs, now=0).region == "cpu"
    d = decide(run(gpu_type=None), regs, now=0)
    assert d.region is None and codes(d, "cpu") == ["gpu_type"]


def test_gpu_types_declared_count_as_offered():
    r = RegionView(name="a", gpu_types=frozenset({"H100"}), free_cpus=8)
    d = decide(run(gpu_type="H100"), [r], now=0)
    assert d.region == "a" and d.queued


def test_capacity_or_a_short_queue():
    full = region("a", gpus=0, queue_depth=5)
    w = DispatchWeights(max_queue_depth=5)
    d = decide(run(), [full], weights=w, now=0)
    assert (
        d.region is None
        and codes(d, "a") == ["capacity"]
        and "queue 5 is full" in d.reasons["a"][0]["message"]
    )
    d = decide(run(), [full], weights=DispatchWeights(queue_when_full=False, max_queue_depth=100), now=0)
    assert d.region is None
    d = decide(run(), [region("a", gpus=0, queue_depth=4)], weights=w, now=0)
    assert d.region == "a" and d.queued


def test_cpu_capacity_counts_too():
    d = decide(run(cpus=100), [region("a", cpus=64), region("b", cpus=128)], now=0)
    assert d.region == "b" and not d.queued


def test_any_gpu_type_uses_the_freest():
    r = RegionView(name="a", free_gpus={"A100": 1, "H100": 6}, free_cpus=64)
    [d] = plan_dispatch([run(gpus=4, gpu_type=None)], [r], now=0)
    assert d.region == "a" and not d.queued


# == score ========================================================================================
def test_fitting_beats_queueing_whatever_the_preference():
    regs = [region("a", gpus=0), region("b", gpus=2)]
    d = decide(run(preference=["a"]), regs, now=0)
    assert d.region == "b" and [n for n, _ in d.ranked] == ["b", "a"]


def test_preference_order_decides_between_equal_regions():
    regs = [region("a"), region("b"), region("c")]
    assert decide(run(preference=["c", "a"]), regs, now=0).region == "c"
    assert decide(run(preference=["b"]), regs, now=0).region == "b"


def test_without_preference_more_free_capacity_wins():
    d = decide(run(), [region("a", gpus=2), region("b", gpus=8)], now=0)
    assert d.region == "b"


def test_shorter_queue_wins_when_capacity_is_equal():
    d = decide(run(), [region("a", queue_depth=50), region("b", queue_depth=3)], now=0)
    assert d.region == "b"


def test_cheaper_wins_when_all_else_is_equal():
    regs = [region("a", gpu_price={"A100": 4.0}), region("b", gpu_price={"A100": 2.5})]
    assert decide(run(), regs, now=0).region == "b"


def test_recent_launch_failures_lower_the_score():
    regs = [region("a", launch_failures=3), region("b")]
    assert decide(run(), regs, now=0).region == "b"


def test_weights_change_the_choice():
    regs = [region("a", gpus=8, gpu_price={"A100": 5.0}), region("b", gpus=2, gpu_price={"A100": 1.0})]
    assert decide(run(), regs, weights=DispatchWeights(price=0.0), now=0).region == "a"
    assert decide(run(), regs, weights=DispatchWeights(capacity=0.1, price=5.0), now=0).region == "b"


def test_ties_break_by_name_so_a_decision_is_reproducible():
    regs = [region("b"), region("a"), region("c")]
    assert decide(run(), regs, now=0).region == "a"
    assert decide(run(), list(reversed(regs)), now=0).region == "a"


def test_reasons_name_the_chosen_and_the_other_candidates():
    d = decide(run(), [region("a", gpus=8), region("b", gpus=1)], now=0)
    assert codes(d, "a") == ["chosen"] and codes(d, "b") == ["candidate"]
    assert "fits now" in d.reasons["a"][0]["message"]


# == blocklist ====================================================================================
def test_a_refusal_blocks_the_whole_region_until_it_expires():
    bl = Blocklist().block("a", kind="refused", now=100, weights=DispatchWeights(block_s=30))
    regs = [region("a", gpus=8), region("b", gpus=1)]
    d = decide(run(), regs, blocklist=bl, now=110)
    assert d.region == "b" and codes(d, "a") == ["blocked"] and "refused" in d.reasons["a"][0]["message"]
    assert decide(run(gpus=0, gpu_type=None), regs, blocklist=bl, now=110).region == "b"
    assert decide(run(), regs, blocklist=bl, now=130).region == "a"  # expired


def test_throttling_blocks_only_the_gpu_type_asked_for():
    bl = Blocklist().block("a", kind="throttled", gpu_type="A100", now=0)
    r = RegionView(name="a", free_gpus={"A100": 8, "H100": 8}, free_cpus=64)
    assert decide(run(gpu_type="A100"), [r], blocklist=bl, now=1).region is None
    assert decide(run(gpu_type="H100"), [r], blocklist=bl, now=1).region == "a"
    assert decide(run(gpus=0, gpu_type=None), [r], blocklist=bl, now=1).region == "a"


def test_repeated_failures_double_the_block_up_to_the_cap():
    w = DispatchWeights(block_s=10, max_block_s=35)
    bl = Blocklist().block("a", kind="timeout", now=0, weights=w)
    assert bl.entries[("a", "*")].until == 10
    bl = bl.block("a", kind="timeout", now=12, weights=w)
    e = bl.entries[("a", "*")]
    assert (e.strikes, e.until) == (2, 32)
    bl = bl.block("a", kind="timeout", now=40, weights=w)
    assert bl.entries[("a", "*")].until == 40 + 35  # capped


def test_strikes_are_forgotten_after_a_quiet_spell():
    w = DispatchWeights(block_s=10, max_block_s=100)
    bl = (
        Blocklist()
        .block("a", kind="launch_failed", now=0, weights=w)
        .block("a", kind="launch_failed", now=500, weights=w)
    )
    assert bl.entries[("a", "*")].strikes == 1


def test_block_never_mutates_the_old_list_and_prune_drops_old_entries():
    bl0 = Blocklist()
    bl1 = bl0.block("a", kind="refused", now=0, detail="403 tenant unknown")
    assert bl0.entries == {} and "403 tenant unknown" in bl1.entries[("a", "*")].reason
    assert bl1.prune(now=10).entries and not bl1.prune(now=10_000).entries


def test_unknown_failure_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Blocklist().block("a", kind="boom", now=0)  # type: ignore[arg-type]


# == batches ======================================================================================
def test_a_batch_deducts_what_it_placed():
    regs = [region("a", gpus=4), region("b", gpus=2)]
    ds = plan_dispatch([run(f"r{i}", gpus=2) for i in range(4)], regs, now=0)
    # most free first (a tie goes by name), then what is left; the fourth finds none and queues
    assert [d.region for d in ds] == ["a", "a", "b", "a"]
    assert [d.queued for d in ds] == [False, False, False, True]
    assert regs[0].free_gpus == {"A100": 4}  # the snapshot is untouched


def test_a_batch_queues_when_capacity_runs_out_and_counts_the_queue():
    regs = [region("a", gpus=1), region("b", gpus=1, queue_depth=0)]
    w = DispatchWeights(max_queue_depth=2)
    ds = plan_dispatch([run(f"r{i}") for i in range(7)], regs, weights=w, now=0)
    placed = [d.region for d in ds]
    assert sorted(placed[:2]) == ["a", "b"]
    assert all(d.queued for d in ds[2:6]) and placed[2:6].count("a") == 2
    assert ds[6].region is None  # both queues full


def test_a_batch_without_explain_keeps_only_the_ranking():
    [d] = plan_dispatch([run()], [region("a"), region("b", state="draining")], now=0)
    assert d.region == "a" and d.reasons == {}
    [d] = plan_dispatch([run()], [region("a"), region("b", state="draining")], now=0, explain=True)
    assert set(d.reasons) == {"a", "b"}
