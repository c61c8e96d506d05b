"""The multi-tenant policy, rule by rule, on small explicit scenarios (pure; no Ray)."""

from orion_ray.policy.admission import plan_cycle
from orion_ray.policy.forecast import forecast
from orion_ray.policy.quota import QuotaBook

from .policy_builders import cand, capacity, fair, gpu_node, placer, running, settings, tenant


def plan(p, cands, runs=(), st=None, now=100.0, fs=None, **kw):
    st = st or settings()
    return plan_cycle(p, cands, list(runs), st, fs or fair(), capacity(p), now, **kw)


def admitted(pl):
    return [c.workload_id for c, _ in pl.admitted]


# == quotas ========================================================================================
def test_nominal_quota_blocks_without_a_cohort_to_borrow_from():
    st = settings(tenant("a", quota={"gpu": 2}))
    pl = plan(placer(gpu_node("n")), [cand(f"a{i}") for i in range(4)], st=st)
    assert admitted(pl) == ["a0", "a1"]
    assert pl.reasons["a2"][0]["code"] == "quota" and "gpu" in pl.reasons["a2"][0]["message"]


def test_borrowing_uses_idle_quota_of_the_cohort_up_to_the_limits():
    st = settings(
        tenant("a", quota={"gpu": 2}, borrowing_limit={"gpu": 1}),
        tenant("b", quota={"gpu": 4}, lending_limit={"gpu": 3}),
    )
    pl = plan(placer(gpu_node("n", gpus=8)), [cand(f"a{i}", "a") for i in range(5)], st=st)
    assert admitted(pl) == ["a0", "a1", "a2"]  # 2 nominal + 1 borrowed (its limit)
    st = settings(tenant("a", quota={"gpu": 2}), tenant("b", quota={"gpu": 4}, lending_limit={"gpu": 1}))
    pl = plan(placer(gpu_node("n", gpus=8)), [cand(f"a{i}", "a") for i in range(5)], st=st)
    assert admitted(pl) == ["a0", "a1", "a2"]  # b lends at most 1


def test_cohorts_do_not_lend_to_each_other():
    st = settings(tenant("a", quota={"gpu": 1}, cohort="x"), tenant("b", quota={"gpu": 4}, cohort="y"))
    pl = plan(placer(gpu_node("n")), [cand("a0"), cand("a1")], st=st)
    assert admitted(pl) == ["a0"]


def test_a_tenant_without_quota_is_bounded_only_by_capacity():
    pl = plan(placer(gpu_node("n")), [cand(f"z{i}", "z") for i in range(6)])
    assert admitted(pl) == ["z0", "z1", "z2", "z3"]
    assert pl.reasons["z4"][-1]["code"] == "capacity"


def test_quota_per_gpu_type():
    st = settings(tenant("a", quota={"gpu:H100": 1}))
    p = placer(gpu_node("h"), gpu_node("x", gpu_type="A100"))
    pl = plan(
        p, [cand("h0", gpu_type="H100"), cand("h1", gpu_type="H100"), cand("any", gpu_type=None)], st=st
    )
    assert admitted(pl) == ["h0", "any"]


# == fair share ====================================================================================
def test_weighted_fair_share_within_one_cycle_with_entry_penalty():
    st = settings(tenant("a", weight=2), tenant("b", weight=1))
    # a submitted everything first: FIFO would give a all 9 GPUs
    cands = [cand(f"a{i}", "a") for i in range(10)] + [cand(f"b{i}", "b") for i in range(10)]
    pl = plan(placer(gpu_node("n1", gpus=5), gpu_node("n2", gpus=4)), cands, st=st)
    got = admitted(pl)
    assert len(got) == 9
    assert sum(w.startswith("a") for w in got) == 6 and sum(w.startswith("b") for w in got) == 3


def test_decayed_usage_forgets_an_idle_past():
    fs = fair(half_life_s=60)
    fs.advance(0, {"a": {"gpu": 8}})
    fs.advance(60, {})
    assert abs(fs.usage["a"]["gpu"] - 4) < 1e-9  # one half-life later: half
    fs.advance(600, {})
    assert fs.usage["a"]["gpu"] < 0.01
    fs.advance(601, {"a": {"gpu": 2}})
    assert fs.usage["a"]["gpu"] >= 2  # never below what it holds now


def test_past_usage_orders_tenants():
    fs = fair(half_life_s=300)
    fs.advance(0, {"a": {"gpu": 4}})
    fs.advance(1, {})  # a used a lot recently, b nothing
    pl = plan(placer(gpu_node("n", gpus=1)), [cand("a0", "a"), cand("b0", "b")], fs=fs)
    assert admitted(pl) == ["b0"]


# == priority and preemption =======================================================================
def test_higher_class_preempts_exactly_what_it_needs_with_least_lost_work():
    p = placer(gpu_node("n"))
    runs = [
        running("old", p, started_at=0, rank=3),
        running("young", p, started_at=90, rank=3),
        running("mid", p, started_at=50, rank=3),
        running("normal", p, started_at=95, rank=2),
    ]
    pl = plan(p, [cand("crit", rank=0)], runs)
    assert pl.preempt == [("young", "crit")]  # lowest class first, then the least work lost
    assert admitted(pl) == [] and pl.reasons["crit"][-1]["code"] == "preempting"


def test_never_preempts_a_higher_or_equal_class_without_reclaim():
    p = placer(gpu_node("n", gpus=2))
    runs = [running("c", p, rank=0), running("n", p, rank=2)]
    pl = plan(p, [cand("h", rank=1, gpus=2)], runs)
    assert pl.preempt == [] and pl.reasons["h"][-1]["code"] == "capacity"
    pl = plan(p, [cand("n2", rank=2)], runs)
    assert pl.preempt == []


def test_preemptible_false_is_honoured_only_for_protected_classes():
    p = placer(gpu_node("n", gpus=2))
    runs = [running("hi", p, rank=1, preemptible=False), running("lo", p, rank=3, preemptible=False)]
    pl = plan(p, [cand("c", rank=0, gpus=2)], runs)
    assert pl.preempt == []  # 'hi' is protected, so freeing 2 GPUs is impossible
    pl = plan(p, [cand("c", rank=0, gpus=1)], runs)
    assert pl.preempt == [("lo", "c")]  # best_effort/low cannot opt out


def test_minimum_runtime_protects_young_work():
    p = placer(gpu_node("n", gpus=1))
    runs = [running("r", p, rank=4, started_at=95)]
    assert plan(p, [cand("c", rank=0)], runs, st=settings(min_runtime_s=10)).preempt == []
    assert plan(p, [cand("c", rank=0)], runs, st=settings(min_runtime_s=0)).preempt == [("r", "c")]


def test_reclaim_from_a_borrower_of_the_same_class_and_not_back():
    st = settings(tenant("a", quota={"gpu": 2}), tenant("b", quota={"gpu": 2}))
    p = placer(gpu_node("n"))
    runs = [running(f"b{i}", p, tenant="b", started_at=i) for i in range(4)]  # b borrows 2
    pl = plan(p, [cand("a0", "a")], runs, st=st)
    assert [v for v, _ in pl.preempt] == ["b3"]  # the youngest of the borrower's
    # once a holds its nominal, b (within its own nominal) cannot reclaim from a
    p2 = placer(gpu_node("n"))
    runs2 = [running("a0", p2, "a"), running("a1", p2, "a"), running("b0", p2, "b"), running("b1", p2, "b")]
    assert plan(p2, [cand("b2", "b")], runs2, st=st).preempt == []


def test_a_nominated_candidate_waits_for_its_victims_instead_of_preempting_again():
    p = placer(gpu_node("n", gpus=1))
    runs = [running("r", p, rank=4)]
    pl = plan(p, [cand("c", rank=0)], runs, nominated={"c": {"r"}})
    assert pl.preempt == [] and pl.reasons["c"][-1]["code"] == "preempting"


# == deadlines =====================================================================================
def test_earliest_deadline_first_within_a_class_and_at_risk_reported():
    p = placer(gpu_node("n", gpus=1))
    cands = [
        cand("late", deadline=500),
        cand("none"),
        cand("soon", deadline=300),
        cand("lost", deadline=120, runtime_s=60),
    ]
    pl = plan(p, cands, now=100)
    assert pl.order[:3] == ["lost", "soon", "late"] and pl.order[-1] == "none"
    assert any(r["code"] == "deadline_at_risk" for r in pl.reasons["lost"])


# == head-of-line blocking and reservations ========================================================
def test_big_gang_does_not_block_small_work_before_its_reservation():
    p = placer(gpu_node("n1"), gpu_node("n2"))
    runs = [running("r", p, gpus=2, expected_end=200)]
    pl = plan(
        p,
        [cand("big", gpus=4, n=2, queued_since=90), cand("small")],
        runs,
        st=settings(reserve_after_s=60),
        now=100,
    )
    assert admitted(pl) == ["small"] and pl.reservation is None


def test_after_the_wait_capacity_is_reserved_and_only_short_work_backfills():
    p = placer(gpu_node("n1"), gpu_node("n2"))
    runs = [running("r", p, gpus=2, expected_end=200)]
    st = settings(reserve_after_s=60, preemption=False)
    cands = [
        cand("big", gpus=4, n=2, queued_since=0),
        cand("long", runtime_s=500),
        cand("unknown"),
        cand("short", runtime_s=50),
    ]
    pl = plan(p, cands, runs, st=st, now=100)
    assert pl.reservation["workload_id"] == "big" and pl.reservation["expected_at"] == 200
    assert admitted(pl) == ["short"]  # ends at 150, before the gang can start
    assert pl.reasons["long"][-1]["code"] == "reserved"


def test_many_admissions_per_cycle():
    p = placer(*[gpu_node(f"n{i}", gpus=8, cpu=64) for i in range(8)])
    pl = plan(p, [cand(f"w{i}") for i in range(60)])
    assert len(pl.admitted) == 60


def test_reasons_distinguish_capacity_from_never_fits_and_gpu_type():
    p = placer(gpu_node("n", gpus=2))
    runs = [running("r", p, gpus=2)]
    pl = plan(
        p,
        [cand("x", gpus=1), cand("huge", gpus=8), cand("a100", gpu_type="A100")],
        runs,
        st=settings(preemption=False),
    )
    assert pl.reasons["x"][-1]["code"] == "capacity"
    assert pl.reasons["huge"][-1]["code"] == "no_fit"
    assert pl.reasons["a100"][-1]["code"] == "no_fit"


# == forecast ======================================================================================
def test_forecast_starts_work_in_waves_as_running_work_ends():
    p = placer(gpu_node("n", gpus=2))
    runs = [running("r1", p, expected_end=110), running("r2", p, expected_end=130)]
    q = [cand("q1", runtime_s=100), cand("q2", runtime_s=10), cand("q3", runtime_s=10)]
    got = forecast(p, q, runs, {}, now=100, default_runtime_s=3600)
    assert got["q1"] == (110, 210) and got["q2"] == (130, 140) and got["q3"] == (140, 150)
    assert p.arr.gpu.sum() == 0  # the live placer is untouched


def test_forecast_says_never_for_work_that_cannot_fit():
    p = placer(gpu_node("n", gpus=2))
    got = forecast(p, [cand("huge", gpus=8)], [], {}, now=0, default_runtime_s=10)
    assert got["huge"] == (None, None)


def test_quota_book_borrowing_flags():
    st = settings(tenant("a", quota={"gpu": 1}), tenant("b", quota={"gpu": 3}))
    book = QuotaBook(st.tenants, {"a": {"gpu": 2}})
    assert book.is_borrowing("a") and not book.is_borrowing("b")
    assert book.within_nominal("b", {"gpu": 3}) and not book.within_nominal("b", {"gpu": 4})


def test_serving_gpus_count_against_the_tenants_quota():
    st = settings(tenant("a", quota={"gpu": 3}))
    pl = plan(
        placer(gpu_node("n")), [cand("a0"), cand("a1")], st=st, extra_usage={"a": {"gpu": 2}}
    )  # two GPUs in the tenant's serving replicas
    assert admitted(pl) == ["a0"] and pl.reasons["a1"][0]["code"] == "quota"


def test_work_kept_off_reserved_nodes_does_not_preempt_instead():
    # 'long' would fit on free GPUs that are held for the gang: it waits, it does not preempt
    p = placer(gpu_node("n1"), gpu_node("n2"))
    runs = [
        running("r", p, gpus=2, rank=2, expected_end=200),
        running("low", p, gpus=1, rank=3, expected_end=300),
    ]  # 'long' may preempt this
    cands = [cand("big", gpus=4, n=2, queued_since=0), cand("long", runtime_s=500)]
    pl = plan(p, cands, runs, st=settings(reserve_after_s=60), now=100)
    assert pl.reservation["workload_id"] == "big"
    assert pl.preempt == [] and pl.reasons["long"][-1]["code"] == "reserved"
