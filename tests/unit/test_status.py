"""The lifecycle table: what API.md draws is allowed, everything else raises."""

import pytest

from orion_ray.errors import InvalidTransition
from orion_ray.status import TERMINAL, TRANSITIONS, Status, check_transition

S = Status
# The edges API.md's diagram (and its retry/requeue notes) require.
CONTRACT_EDGES = [
    (S.SUBMITTED, S.QUEUED),
    (S.QUEUED, S.STARTING),
    (S.STARTING, S.RUNNING),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.PREEMPTED),
    (S.RUNNING, S.CANCELLED),
    (S.PREEMPTED, S.QUEUED),
    (S.RUNNING, S.QUEUED),
    (S.SUBMITTED, S.CANCELLED),
    (S.QUEUED, S.CANCELLED),
    (S.STARTING, S.CANCELLED),
]
ILLEGAL = [
    (S.SUBMITTED, S.RUNNING),
    (S.SUBMITTED, S.STARTING),
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.COMPLETED),
    (S.QUEUED, S.PREEMPTED),
    (S.STARTING, S.COMPLETED),
    (S.RUNNING, S.STARTING),
    (S.RUNNING, S.SUBMITTED),
    (S.PREEMPTED, S.RUNNING),
    (S.COMPLETED, S.QUEUED),
    (S.FAILED, S.QUEUED),
    (S.CANCELLED, S.QUEUED),
    (S.COMPLETED, S.FAILED),
    (S.CANCELLED, S.CANCELLED),
    (S.QUEUED, S.QUEUED),
]


@pytest.mark.parametrize("current, new", CONTRACT_EDGES)
def test_contract_edges_are_allowed(current, new):
    check_transition(current, new)


@pytest.mark.parametrize(
    "current, new", [(c, n) for c, ns in TRANSITIONS.items() for n in sorted(ns, key=str)]
)
def test_every_table_edge_passes(current, new):
    check_transition(current, new)


@pytest.mark.parametrize("current, new", ILLEGAL)
def test_illegal_transitions_raise(current, new):
    with pytest.raises(InvalidTransition, match=f"{current.value} → {new.value}"):
        check_transition(current, new)


@pytest.mark.parametrize("status", sorted(TERMINAL, key=lambda s: s.value))
def test_terminal_statuses_have_no_exits(status):
    assert status.terminal
    for new in Status:
        with pytest.raises(InvalidTransition):
            check_transition(status, new)


def test_terminal_set_is_the_contract_one():
    assert {s.value for s in Status if s.terminal} == {"completed", "failed", "cancelled"}


def test_every_status_is_in_the_table():
    assert set(TRANSITIONS) == set(Status)


def test_check_accepts_plain_string_values():
    check_transition("queued", S.STARTING)
    with pytest.raises(InvalidTransition, match="queued → running"):
        check_transition("queued", "running")


def test_invalid_transition_is_an_internal_error():
    assert InvalidTransition.status_code == 500
