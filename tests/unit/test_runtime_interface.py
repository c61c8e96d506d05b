"""The ``Runtime`` protocol is what the scheduler uses; ``RayRuntime`` and ``FakeRuntime`` both
implement every method of it with the same parameters (so the fake cannot drift from the adapter),
and ``Every`` follows the clock it is given."""

from __future__ import annotations

import inspect

import pytest

from orion_ray.runtime.base import Runtime
from orion_ray.runtime.fake import FakeRuntime
from orion_ray.runtime.ray_runtime import RayRuntime
from orion_ray.scheduler.every import Every

METHODS = sorted(
    name for name, _ in inspect.getmembers(Runtime, inspect.isfunction) if not name.startswith("_")
)


def params(fn) -> list[tuple[str, object]]:
    """Names and kinds of the parameters a caller may pass (defaults beyond the protocol's are
    the implementation's own business)."""
    return [
        (p.name, p.kind)
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty or p.kind == p.KEYWORD_ONLY
    ]


def test_the_protocol_is_what_the_scheduler_calls():
    assert "start_task" in METHODS and "node_deaths" in METHODS and len(METHODS) == 21


@pytest.mark.parametrize("impl", [RayRuntime, FakeRuntime])
@pytest.mark.parametrize("name", METHODS)
def test_implementations_match_the_protocol(impl, name):
    want, got = getattr(Runtime, name), getattr(impl, name)
    assert inspect.iscoroutinefunction(want) == inspect.iscoroutinefunction(got), name
    assert params(got)[: len(params(want))] == params(want), name


def test_many_parameters_are_keyword_only():
    for name in ("start_task", "submit_job"):
        kinds = [p.kind for p in inspect.signature(getattr(Runtime, name)).parameters.values()]
        assert kinds.count(inspect.Parameter.KEYWORD_ONLY) >= 4, name


def test_every_is_due_at_once_then_once_per_period_of_its_clock():
    now = [100.0]
    every = Every(5.0, lambda: now[0])
    assert every.due() and not every.due()
    now[0] += 5.0
    assert not every.due()  # a full period has not passed *beyond* 5 s
    now[0] += 0.5
    assert every.due() and not every.due()
    assert every.due(force=True)  # forced: due now, and the period restarts
    now[0] += 5.5
    assert every.due()
    now[0] -= 3600.0  # the wall clock stepped back: due, not silent for an hour
    assert every.due() and not every.due()
