"""The single-writer lease's decisions (``policy/lease.py``), with a hand-moved clock: who may take
it, when, with which fencing token, and when a holder must stop acting."""

from __future__ import annotations

import pytest

from orion_ray.policy.lease import SCHEDULER_LEASE, Lease, LeaseClock, acquire, fenced, renew

TTL = 15.0


def take(current, holder: str, now: float):
    return acquire(current, name=SCHEDULER_LEASE, holder=holder, now=now, ttl_s=TTL)


def test_the_first_holder_gets_token_1_until_now_plus_ttl():
    g = take(None, "a", 100.0)
    assert g.granted and g.lease == Lease(SCHEDULER_LEASE, "a", 1, 115.0, 100.0)
    assert g.reason == "no lease yet"


def test_another_holder_waits_while_the_lease_is_live_and_learns_when_to_ask_again():
    held = take(None, "a", 100.0).lease
    g = take(held, "b", 114.9)
    assert not g.granted and g.retry_at == 115.0 and "held by a (token 1)" in g.reason
    assert g.lease == held  # nothing to write


def test_an_expired_lease_goes_to_the_next_holder_with_the_next_token():
    held = take(None, "a", 100.0).lease
    g = take(held, "b", 115.0)  # expiry is exclusive: at expires_at it no longer binds
    assert g.granted and g.lease.holder == "b" and g.lease.token == 2
    assert g.reason == "the previous lease expired"


def test_a_restarted_holder_takes_its_own_live_lease_back_with_a_new_token():
    # Ray restarted the actor (same id): the old incarnation, if it still runs, is fenced
    held = take(None, "a", 100.0).lease
    g = take(held, "a", 101.0)
    assert g.granted and g.lease.token == 2 and g.lease.expires_at == 116.0
    assert g.reason == "restarted holder"


def test_tokens_only_grow_across_holders_and_releases():
    lease, tokens, now = None, [], 0.0
    for holder in ["a", "b", "a", "c", "c"]:
        now += TTL + 1
        lease = take(lease, holder, now).lease
        tokens.append(lease.token)
    assert tokens == [1, 2, 3, 4, 5]
    released = Lease(lease.name, lease.holder, lease.token, 0.0, lease.acquired_at)  # orion down
    assert take(released, "d", now + 1).lease.token == 6


def test_renewal_extends_and_keeps_the_token():
    held = take(None, "a", 100.0).lease
    r = renew(held, holder="a", token=1, now=105.0, ttl_s=TTL)
    assert r.token == 1 and r.expires_at == 120.0 and r.acquired_at == 100.0


def test_renewal_with_an_older_token_or_by_another_holder_is_refused():
    a = take(None, "a", 100.0).lease
    b = take(a, "b", 200.0).lease
    assert renew(b, holder="a", token=1, now=201.0, ttl_s=TTL) is None
    assert renew(b, holder="b", token=1, now=201.0, ttl_s=TTL) is None
    assert renew(None, holder="a", token=1, now=201.0, ttl_s=TTL) is None


def test_an_expired_lease_nobody_took_is_still_renewable_by_its_holder():
    a = take(None, "a", 100.0).lease
    r = renew(a, holder="a", token=1, now=130.0, ttl_s=TTL)
    assert r is not None and r.token == 1 and r.expires_at == 145.0


def test_fencing_refuses_only_an_older_token():
    assert fenced(2, 1)
    assert not fenced(2, 2)
    assert not fenced(1, 2)  # cannot happen in the store, and is not a newer holder
    assert not fenced(None, 1)


def test_a_positive_ttl_is_required():
    with pytest.raises(ValueError):
        acquire(None, name="x", holder="a", now=0.0, ttl_s=0)
    with pytest.raises(ValueError):
        LeaseClock(0)


# -- the holder's own view ------------------------------------------------------------------------
def test_the_holder_counts_its_lease_from_when_it_asked():
    view = LeaseClock(TTL, margin_s=1.0)
    assert not view.may_act(0.0) and not view.renew_due(0.0)  # holds nothing
    view.held(asked_at=100.0, token=3)
    # the store's row expires at asked + ttl at the earliest: the holder stops before that
    assert view.may_act(113.9) and not view.may_act(114.0)


def test_renewal_is_due_every_third_of_the_ttl_by_default():
    view = LeaseClock(TTL)
    view.held(100.0, 1)
    assert not view.renew_due(104.9) and view.renew_due(105.0)
    view.held(105.0, 1)
    assert not view.renew_due(109.0)


def test_a_lost_lease_forbids_acting_at_once():
    view = LeaseClock(TTL)
    view.held(100.0, 1)
    view.lost()
    assert not view.may_act(100.1) and view.token is None and not view.renew_due(200.0)


def test_the_margin_never_eats_more_than_half_the_lease():
    view = LeaseClock(10.0, margin_s=60.0)
    view.held(0.0, 1)
    assert view.may_act(4.9) and not view.may_act(5.0)
