"""Sliced and delta passes decide what one full pass decides; planning changes nothing it is given.

Generated scenarios (seeded, and with hypothesis, derandomised): random GPU nodes, tenants with
quotas, running work of every class, queued singles and gangs with runtimes, deadlines and long
waits (so preemption and reservations happen). A pass cut into slices by a fake clock must give the
very same plan as the uninterrupted pass; a delta pass over arrivals must admit what a full pass
over the whole queue admits; and the placer and fair share handed to the planner are unchanged.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from orion_ray.policy.admission import CyclePass, Plan, Running, plan_cycle
from orion_ray.policy.cycle import CyclePlanner
from orion_ray.policy.placement import get_policy

from .policy_builders import cand, capacity, fair, gpu_node, placer, running, settings, tenant


class Ticks:
    """A fake clock: every reading is one tick later."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def scenario(rng: random.Random, reserve_after_s: float = 50.0) -> dict[str, Any]:
    nodes = [
        gpu_node(
            f"n{i}",
            gpus=rng.choice([1, 2, 4, 8]),
            cpu=rng.choice([16, 64]),
            gpu_type=rng.choice(["H100", "A100"]),
        )
        for i in range(rng.randint(2, 6))
    ]
    tenants = []
    for t in "abcd"[: rng.randint(2, 4)]:
        limits: dict[str, Any] = {}
        if rng.random() < 0.7:
            limits["quota"] = {"gpu": rng.choice([1, 2, 4, 8])}
            if rng.random() < 0.5:
                limits["borrowing_limit"] = {"gpu": rng.choice([0, 2])}
        tenants.append(tenant(t, weight=rng.choice([1, 2]), cohort=rng.choice([None, "x"]), **limits))
    st_ = settings(*tenants, reserve_after_s=reserve_after_s)
    p = placer(*nodes)
    names = list(st_.tenants)
    runs = []
    for i in range(rng.randint(0, 8)):
        try:
            runs.append(
                running(
                    f"r{i}",
                    p,
                    tenant=rng.choice(names),
                    gpus=rng.choice([0.5, 1, 2]),
                    rank=rng.randint(0, 4),
                    started_at=rng.choice([0, 50, 90]),
                    expected_end=rng.choice([None, 150.0, 400.0]),
                )
            )
        except AssertionError:  # the cluster is full
            break
    queue = [
        cand(
            f"w{i}",
            rng.choice(names),
            gpus=rng.choice([0, 0.25, 0.5, 1, 1, 2, 4]),
            n=rng.choice([1, 1, 1, 2, 3]),
            rank=rng.randint(0, 4),
            queued_since=rng.choice([0.0, 90.0]),
            deadline=rng.choice([None, None, 120.0, 1000.0]),
            runtime_s=rng.choice([None, 10.0, 500.0]),
            strategy=rng.choice(["PACK", "SPREAD", "STRICT_SPREAD", "STRICT_PACK"]),
            gpu_type=rng.choice([None, None, "H100"]),
        )
        for i in range(rng.randint(5, 30))
    ]
    return {"placer": p, "queue": queue, "running": runs, "settings": st_, "fair": fair(rng.choice([0, 30]))}


def _ids(plan: Plan) -> list[Any]:
    return [(c.workload_id, [(h.node_id, h.gpu_indices) for h in held]) for c, held in plan.admitted]


def _same(a: Plan, b: Plan) -> None:
    assert _ids(a) == _ids(b)
    assert a.preempt == b.preempt
    assert a.reasons == b.reasons
    assert a.reservation == b.reservation
    assert a.order == b.order
    assert a.fair_delta == b.fair_delta


def _state(p: Any) -> tuple[Any, ...]:
    a = p.arr
    return (
        a.cpu.copy(),
        a.mem.copy(),
        a.gpu.copy(),
        a.version.copy(),
        {k: dict(v) for k, v in p.custom_free.items()},
    )


def check_sliced_equals_unsliced(seed: int, budget: int) -> None:
    sc = scenario(random.Random(seed))
    p, fs, now = sc["placer"], sc["fair"], 100.0
    fs.penalise("a", {"gpu": 1.0})  # some history, so the order is not plain arrival
    before_p, before_f = _state(p), {t: dict(u) for t, u in fs.usage.items()}
    args = (sc["queue"], sc["running"], sc["settings"], fs, capacity(p), now)
    whole = plan_cycle(p, *args)
    sliced = CyclePass(p, *args)
    clock, parts = Ticks(), []
    while not sliced.done:
        parts.append(sliced.advance(clock, budget))
    merged = Plan()
    for part in parts:
        merged.merge(part)
    _same(whole, merged)
    _same(whole, sliced.plan)
    assert all(len(part.order) >= 1 for part in parts[:-1])
    if budget == 1 and len(sc["queue"]) > 1:
        assert len(parts) > 1  # it really was cut
    # planning changed neither the placer nor the fair share it was given
    after = _state(p)
    for x, y in zip(before_p[:4], after[:4]):
        assert np.array_equal(x, y)
    assert before_p[4] == after[4]
    assert {t: dict(u) for t, u in fs.usage.items()} == before_f


@pytest.mark.parametrize("seed", range(30))
def test_sliced_pass_equals_one_pass(seed):
    check_sliced_equals_unsliced(seed, budget=1 + seed % 4)


@hsettings(derandomize=True, max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), budget=st.integers(1, 6))
def test_sliced_pass_equals_one_pass_generated(seed, budget):
    check_sliced_equals_unsliced(seed, budget)


def _as_running(plan: Plan, now: float) -> list[Running]:
    return [Running(c.workload_id, c.tenant, c.rank, c.demand, held, now) for c, held in plan.admitted]


@pytest.mark.parametrize("seed", range(30))
def test_delta_pass_admits_what_a_full_pass_admits(seed):
    rng = random.Random(seed)
    sc = scenario(rng, reserve_after_s=1e9)
    st_, fs, p = sc["settings"], sc["fair"], sc["placer"]
    planner = CyclePlanner(clock=Ticks(), slice_s=3)
    planner.adopt(p)
    now = 100.0
    planner.full(sc["queue"], sc["running"], st_, fs, capacity(p), now, allow_preemption=False)
    first = Plan()
    while planner.busy:
        part = planner.plan_slice()
        planner.apply(part, fs)
        first.merge(part)
    runs = sc["running"] + _as_running(first, now)
    admitted = {c.workload_id for c, _ in first.admitted}
    waiting = [c for c in sc["queue"] if c.workload_id not in admitted]
    arrivals = scenario(random.Random(seed + 1000))["queue"]
    for c in arrivals:  # new workloads of this scenario's tenants
        c.workload_id, c.tenant = "new-" + c.workload_id, rng.choice(list(st_.tenants))
    assert not planner.needs_full(now + 1)
    planner.delta(arrivals, runs, st_, fs, capacity(p), now + 1, allow_preemption=False)
    delta = planner.plan_rest()
    full = plan_cycle(
        planner.state, waiting + arrivals, runs, st_, fs, capacity(p), now + 1, allow_preemption=False
    )
    assert _ids(delta) == _ids(full)
    assert {w: r for w, r in full.reasons.items() if w.startswith("new-")} == delta.reasons
    assert delta.order == [w for w in full.order if w.startswith("new-")]


def test_delta_pass_honours_the_reservation_in_effect():
    p = placer(gpu_node("n1", gpus=2), gpu_node("n2", gpus=2))
    runs = [running("r1", p, gpus=2, expected_end=200.0)]
    st_ = settings(reserve_after_s=10)
    planner = CyclePlanner(clock=Ticks(), slice_s=100)
    planner.adopt(p)
    gang = cand("gang", gpus=2, n=2, strategy="STRICT_SPREAD", queued_since=0.0)
    planner.full([gang], runs, st_, fair(), capacity(p), 100.0)
    plan = planner.plan_rest()
    assert plan.reservation and plan.reservation["workload_id"] == "gang"
    long = cand("long", gpus=2, runtime_s=1000.0)
    short = cand("short", gpus=2, runtime_s=10.0)
    planner.delta([long], runs, st_, fair(), capacity(p), 101.0)
    part = planner.plan_rest()
    assert part.admitted == [] and part.reasons["long"][-1]["code"] == "reserved"
    assert part.reservation == plan.reservation  # still in effect
    planner.delta([short], runs, st_, fair(), capacity(p), 101.0)
    assert [c.workload_id for c, _ in planner.plan_rest().admitted] == ["short"]


def test_planner_state_follows_deltas_and_keeps_caches_warm():
    nodes = [gpu_node("n1", gpus=4), gpu_node("n2", gpus=4)]
    policy = get_policy("orion")
    planner = CyclePlanner(clock=Ticks())
    planner.sync(policy, nodes, [])
    assert planner.needs_full(0.0)
    stamps = planner.state.arr.version.copy()
    planner.full([cand("a", gpus=1)], [], settings(), fair(), {"gpu": 8.0, "cpu": 32.0}, 0.0)
    plan = planner.plan_rest()
    assert planner.state.arr.version.tolist() == stamps.tolist()  # planning changed nothing
    fs = fair()
    planner.apply(plan, fs)
    assert fs.usage["a"]["gpu"] == 1.0
    assert int(planner.state.arr.gpu.sum()) == 7000
    assert not planner.needs_full(1.0)
    # a rebuild from the same cluster keeps every node's stamp (so its cached scores)
    held = [h for _, hs in plan.admitted for h in hs]
    views = [gpu_node("n1", gpus=4), gpu_node("n2", gpus=4)]
    for v in views:
        for h in held:
            if h.node_id == v.node_id:
                v.free["GPU"] -= h.bundle["GPU"]
                v.free["CPU"] -= h.bundle["CPU"]
    before = planner.state.arr.version.copy()
    planner.sync(policy, views, held)
    assert planner.state.arr.version.tolist() == before.tolist()
    assert not planner.needs_full(1.0)
    planner.released(held)
    assert planner.needs_full(1.0) and int(planner.state.arr.gpu.sum()) == 8000
    assert planner.needs_full(100.0)  # and at least every full_every_s anyway


def test_plan_slice_needs_a_pass_and_a_state():
    planner = CyclePlanner(clock=Ticks())
    with pytest.raises(RuntimeError):
        planner.plan_slice()
    with pytest.raises(RuntimeError):
        planner.full([], [], settings(), fair(), {}, 0.0)


@pytest.mark.parametrize("seed", range(40))
def test_victim_index_orders_victims_as_may_preempt_and_the_cost_sort_do(seed):
    """The per-pass index gives each candidate exactly the victims ``may_preempt`` allows, in the
    order cheapest first (class, borrowers, least lost work, id)."""
    from orion_ray.policy.admission import usage_of
    from orion_ray.policy.preemption import VictimIndex, _size, may_preempt
    from orion_ray.policy.quota import QuotaBook

    rng = random.Random(seed)
    sc = scenario(rng)
    st_, now = sc["settings"], 100.0
    st_.min_runtime_s = rng.choice([0.0, 20.0])
    runs = sc["running"]
    for r in runs:
        r.preemptible = rng.random() < 0.7
        r.stopping = rng.random() < 0.1
    quota = QuotaBook(st_.tenants, usage_of(runs))
    index = VictimIndex([r for r in runs if not r.stopping], st_, now)
    for c in sc["queue"]:
        want = [r for r in runs if not r.stopping and may_preempt(c, r, quota, st_, now)]
        want.sort(
            key=lambda r: (
                -r.rank,
                not quota.is_borrowing(r.tenant),
                (now - r.started_at) * _size(r),
                r.workload_id,
            )
        )
        assert [r.workload_id for r in index.eligible(c, quota)] == [r.workload_id for r in want]
