"""A region's status outbox (orion_ray/policy/status_outbox.py) against the control plane's
``apply_status_batch``: in order, resends harmless, gaps healed, bounded memory (pure)."""

import pytest

from orion_ray.policy.region_state import apply_status_batch
from orion_ray.policy.status_outbox import Outbox, stats


def change(w, status="running"):
    return {"workload_id": w, "status": status, "at": 1.0}


def test_changes_get_increasing_sequences_and_leave_when_acknowledged():
    box = Outbox()
    for w in "abc":
        box = box.append(change(w))
    assert [c["seq"] for c in box.batch()] == [1, 2, 3] and box.next_seq == 4
    box = box.ack(2)
    assert [c["seq"] for c in box.batch()] == [3] and stats(box).oldest_seq == 3
    assert box.ack(1).acked == 2  # an older ack changes nothing
    with pytest.raises(ValueError, match="last_seq"):
        box.ack(9)


def test_the_append_never_mutates_the_old_outbox():
    a = Outbox()
    b = a.append(change("x"))
    assert a.pending == () and len(b.pending) == 1 and a.next_seq == 1


def test_a_gap_is_healed_by_resending_from_where_the_control_plane_asks():
    box = Outbox()
    for w in "abcde":
        box = box.append(change(w))
    # the control plane got 1 and 2, then a batch with only 4 and 5 (3 was lost on the way)
    first = apply_status_batch(0, box.batch()[:2], {})
    gap = apply_status_batch(first.last_seq, box.batch()[3:], {})
    assert gap.resync_from == 3
    box, again = box.resend_from(gap.resync_from)
    assert [c["seq"] for c in again] == [3, 4, 5] and box.acked == 2
    done = apply_status_batch(gap.last_seq, again, {})
    assert done.last_seq == 5 and done.resync_from is None
    box = box.ack(done.last_seq)
    assert box.pending == ()


def test_a_resend_of_what_was_applied_is_harmless():
    box = Outbox().append(change("a")).append(change("b"))
    applied = apply_status_batch(0, box.batch(), {})
    twice = apply_status_batch(applied.last_seq, box.batch(), {})
    assert twice.apply == [] and twice.duplicates == 2


def test_beyond_keep_the_oldest_go_and_a_full_resync_is_due():
    box = Outbox(keep=3)
    for w in "abcde":
        box = box.append(change(w))
    assert [c["seq"] for c in box.batch()] == [3, 4, 5] and stats(box).resync_due
    box2, again = box.resend_from(1)
    assert again is None and box2.resync_due
    box3 = box2.resynced(through_seq=5)
    assert box3.pending == () and not box3.resync_due and box3.acked == 5


def test_resend_from_after_everything_pending_was_dropped_by_acks():
    box = Outbox().append(change("a")).append(change("b")).ack(2)
    box, again = box.resend_from(3)
    assert again == [] and not box.resync_due
