"""Global quotas (orion_ray/policy/global_quota.py): limits, windows, the in-memory ledger (pure)."""

import pytest

from orion_ray.policy.global_quota import (
    GlobalQuota,
    LedgerBook,
    LedgerConflict,
    Usage,
    check,
    split_gpu_hours,
    window_start,
)

Q = GlobalQuota("t", concurrent={"gpu": 8, "gpu:H100": 4}, gpu_hours={"gpu": 100}, window_s=3600)


def test_no_quota_means_no_limit():
    assert check(None, Usage(), {"gpu": 10_000}) is None


def test_concurrent_limit_names_the_resource():
    assert check(Q, Usage(concurrent={"gpu": 6}), {"gpu": 2}) is None
    why = check(Q, Usage(concurrent={"gpu": 6}), {"gpu": 3})
    assert why and why["code"] == "global_quota" and why["message"].startswith("gpu:")
    why = check(Q, Usage(concurrent={"gpu:H100": 4}), {"gpu": 1, "gpu:H100": 1})
    assert why and "gpu:H100" in why["message"]


def test_a_resource_not_asked_for_is_not_checked():
    assert check(Q, Usage(concurrent={"gpu": 99}, gpu_hours={"gpu": 999}), {"cpu": 4}) is None


def test_gpu_hours_budget_spent_refuses_and_expected_hours_count():
    assert check(Q, Usage(gpu_hours={"gpu": 99.0}), {"gpu": 1}) is None
    why = check(Q, Usage(gpu_hours={"gpu": 100.0}), {"gpu": 1})
    assert why and why["code"] == "global_gpu_hours"
    why = check(Q, Usage(gpu_hours={"gpu": 90.0}), {"gpu": 4}, expected_gpu_hours={"gpu": 12.0})
    assert why and "+12.00 expected" in why["message"]


def test_windows_are_fixed_and_aligned():
    assert window_start(7199.0, 3600) == 3600 and window_start(7200.0, 3600) == 7200


def test_split_gpu_hours_over_windows():
    got = split_gpu_hours({"gpu": 2, "gpu:A100": 2}, 1800, 9000, 3600)
    assert got == {
        0: {"gpu": 1.0, "gpu:A100": 1.0},
        3600: {"gpu": 2.0, "gpu:A100": 2.0},
        7200: {"gpu": 1.0, "gpu:A100": 1.0},
    }
    assert split_gpu_hours({"gpu": 1}, 10, 10, 3600) == {}


def test_reserve_commit_release_and_usage():
    book = LedgerBook()
    assert book.reserve("k1", "t", {"gpu": 6}, quota=Q, now=0).ok
    r = book.reserve("k2", "t", {"gpu": 4}, quota=Q, now=0)
    assert not r.ok and r.reason and r.reason["code"] == "global_quota"
    assert book.commit("k1").state == "committed"
    assert book.usage("t", 0, 3600).concurrent == {"gpu": 6}
    book.release("k1")
    assert book.usage("t", 0, 3600).concurrent == {"gpu": 0}
    assert book.reserve("k2", "t", {"gpu": 4}, quota=Q, now=0).ok  # a refusal is not remembered


def test_reserve_is_idempotent_by_key():
    book = LedgerBook()
    first = book.reserve("k", "t", {"gpu": 8}, quota=Q, now=0)
    again = book.reserve("k", "t", {"gpu": 8}, quota=Q, now=5)
    assert first.ok and again.ok and again.replay and again.reservation == first.reservation
    assert book.usage("t", 0, 3600).concurrent == {"gpu": 8}  # held once
    book.release("k")
    assert not book.reserve("k", "t", {"gpu": 8}, quota=Q, now=6).ok  # released stays released


def test_a_key_reused_for_something_else_is_a_conflict():
    book = LedgerBook()
    book.reserve("k", "t", {"gpu": 1}, quota=Q, now=0)
    with pytest.raises(LedgerConflict):
        book.reserve("k", "t", {"gpu": 2}, quota=Q, now=0)
    with pytest.raises(LedgerConflict):
        book.reserve("k", "u", {"gpu": 1}, quota=None, now=0)


def test_release_and_commit_are_idempotent_and_ordered():
    book = LedgerBook()
    book.reserve("k", "t", {"gpu": 2}, quota=Q, now=0)
    book.commit("k")
    book.commit("k")
    book.release("k")
    book.release("k")
    assert book.usage("t", 0, 3600).concurrent == {"gpu": 0}
    with pytest.raises(LedgerConflict):
        book.commit("k")
    with pytest.raises(KeyError):
        book.release("nope")


def test_charges_are_totals_so_a_resend_counts_once():
    book = LedgerBook()
    book.charge("k", "t", {0: {"gpu": 30.0}})
    book.charge("k", "t", {0: {"gpu": 30.0}})
    book.charge("k2", "t", {0: {"gpu": 5.0}, 3600: {"gpu": 1.0}})
    assert book.usage("t", 10, 3600).gpu_hours == {"gpu": 35.0}
    assert book.usage("t", 3700, 3600).gpu_hours == {"gpu": 1.0}
    book.charge("k", "t", {0: {"gpu": 96.0}})  # the run went on: the new total replaces the old
    assert not book.reserve("k3", "t", {"gpu": 1}, quota=Q, now=10).ok
    assert book.reserve("k3", "t", {"gpu": 1}, quota=Q, now=3600).ok  # a new window
