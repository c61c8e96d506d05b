"""Budgets at admission and cost-aware placement: the pure policy (docs/cost.md)."""

from __future__ import annotations

from orion_ray.policy import NodeView
from orion_ray.policy.admission import plan_cycle
from orion_ray.policy.budget import Budget, BudgetBook, BudgetUse, day_start, month_end, month_start
from orion_ray.policy.markets import MARKET_LABEL, POOL_LABEL, avoid_first, with_market
from orion_ray.policy.node_lifecycle import POOL_LABEL as LIFECYCLE_POOL_LABEL

from .policy_builders import LABEL, cand, capacity, fair, placer, settings, tenant

NOV_3 = 1_793_664_000.0  # 2026-11-03 00:00 UTC


def node(nid: str, market: str | None, gpus: int = 4) -> NodeView:
    total = {"CPU": 16.0, "GPU": float(gpus)}
    labels = {LABEL: "A100", POOL_LABEL: f"pool-{market}"}
    if market:
        labels[MARKET_LABEL] = market
    return NodeView(nid, dict(total), total, labels)


def plan(cands, nodes, budgets=None, now=NOV_3 + 3600):
    p = placer(*nodes)
    s = settings(tenant("a"), tenant("b"), budgets=budgets)
    return plan_cycle(p, cands, [], s, fair(), capacity(p), now)


# -- budgets ------------------------------------------------------------------------------------
def test_windows_are_utc_day_and_month():
    assert day_start(NOV_3 + 5000) == NOV_3
    assert month_start(NOV_3) == NOV_3 - 2 * 86400
    assert month_end(NOV_3) == month_start(NOV_3) + 30 * 86400


def test_under_budget_is_admitted_and_over_waits_with_the_figures():
    book = BudgetBook({"a": Budget(gpu_hours_per_day=10)}, {"a": BudgetUse(day=8.0, month=8.0)})
    ok = cand("fits", "a", gpus=1, runtime_s=3600)  # 8 + 1 = 9 <= 10
    over = cand("over", "a", gpus=2, runtime_s=3600)  # 9 + 2 = 11 > 10 once "fits" is in
    other = cand("b1", "b", gpus=4, runtime_s=36000)  # b has no budget
    p = plan([ok, over, other], [node("n1", None), node("n2", None)], book)
    assert {c.workload_id for c, _ in p.admitted} == {"fits", "b1"}
    (why,) = p.reasons["over"]
    assert why["code"] == "budget"
    assert "used 9 of its daily budget of 10 GPU-hours" in why["message"] and "needs 2 more" in why["message"]
    assert book.use["a"].day == 8.0  # the pass charged its own copy


def test_budget_spent_blocks_work_of_unknown_length_and_cpu_work_passes():
    book = BudgetBook({"a": Budget(gpu_hours_per_day=10)}, {"a": BudgetUse(day=10.0, month=10.0)})
    p = plan([cand("gpu", "a", gpus=1), cand("cpu", "a", gpus=0)], [node("n1", None)], book)
    assert [c.workload_id for c, _ in p.admitted] == ["cpu"]
    assert p.reasons["gpu"][0]["code"] == "budget"


def test_monthly_budget_and_work_larger_than_the_budget():
    book = BudgetBook({"a": Budget(gpu_hours_per_day=100, gpu_hours_per_month=50)}, {"a": BudgetUse(1, 49.5)})
    p = plan(
        [cand("m", "a", gpus=1, runtime_s=3600), cand("huge", "a", gpus=4, runtime_s=30 * 3600)],
        [node("n1", None)],
        book,
    )
    assert not p.admitted
    assert "monthly budget of 50" in p.reasons["m"][0]["message"]
    assert "exceed tenant a's whole daily GPU-hour budget of 100" in p.reasons["huge"][0]["message"]


def test_no_budget_changes_nothing():
    p = plan([cand("x", "a", gpus=4, runtime_s=10**6)], [node("n1", None)], None)
    assert [c.workload_id for c, _ in p.admitted] == ["x"]


# -- cost-aware placement ----------------------------------------------------------------------
def test_spot_ok_prefers_spot_and_the_rest_on_demand():
    nodes = [node("od1", None), node("sp1", "spot")]
    spot_ok = cand("s", "a", gpus=1)
    spot_ok.spot_ok = True
    standard = cand("d", "b", gpus=1)
    p = plan([spot_ok, standard], nodes)
    where = {c.workload_id: held[0].node_id for c, held in p.admitted}
    assert where == {"s": "sp1", "d": "od1"}


def test_preference_falls_back_to_the_other_market():
    nodes = [node("od1", None, gpus=1), node("sp1", "spot", gpus=1)]
    first, second = cand("d1", "a", gpus=1), cand("d2", "a", gpus=1)  # two standard, one on-demand GPU
    s1, s2 = cand("s1", "b", gpus=1), cand("s2", "b", gpus=1)
    s1.spot_ok = s2.spot_ok = True
    p = plan([first, second], nodes)
    assert sorted(h[0].node_id for _, h in p.admitted) == ["od1", "sp1"]
    p = plan([s1, s2], nodes)
    assert sorted(h[0].node_id for _, h in p.admitted) == ["od1", "sp1"]


def test_one_market_cluster_has_no_preference():
    assert avoid_first(True, frozenset(), ["a", "b"]) == frozenset()
    assert avoid_first(False, frozenset({"a", "b"}), ["a", "b"]) == frozenset()
    assert avoid_first(False, frozenset({"a"}), ["a", "b"]) == {"a"}
    assert avoid_first(True, frozenset({"a"}), ["a", "b"]) == {"b"}


def test_placement_record_carries_pool_and_market():
    labels = {"n1": {POOL_LABEL: "gpu-spot", MARKET_LABEL: "spot"}, "n2": {}}
    got = with_market([{"bundle": 0, "node_id": "n1"}, {"bundle": 1, "node_id": "n2"}], labels)
    assert got[0]["pool"] == "gpu-spot" and got[0]["market"] == "spot"
    assert got[1]["pool"] is None and got[1]["market"] == "on_demand"
    assert POOL_LABEL == LIFECYCLE_POOL_LABEL


def test_spot_share_goal_on_a_mixed_queue():
    """With spot capacity for them, spot_ok batch work lands on spot: here 6 of 8 GPUs (75 % > 70 %)."""
    nodes = [node("od1", None, gpus=2), node("sp1", "spot", gpus=4), node("sp2", "spot", gpus=2)]
    cands = []
    for i in range(6):
        c = cand(f"s{i}", "a", gpus=1)
        c.spot_ok = True
        cands.append(c)
    cands += [cand("d0", "b", gpus=1), cand("d1", "b", gpus=1)]
    p = plan(cands, nodes)
    spot = sum(1 for c, h in p.admitted if h[0].node_id.startswith("sp"))
    assert len(p.admitted) == 8 and spot / 8 == 0.75
    assert all(h[0].node_id == "od1" for c, h in p.admitted if c.workload_id.startswith("d"))
