"""The rolling replacement policy (``policy/rollout.py``) against a simulated Serve: replicas
asked for start, become ready a tick later, and stopping ones linger a tick; at every tick what
runs stays within desired + surge and what is ready within desired - unavailable."""

import pytest

from orion_ray.policy import rollout
from orion_ray.policy.rollout import Observed


class FakeServe:
    """Two versions' replicas: ``starting`` become ready next tick, ``stopping`` vanish next tick."""

    def __init__(self, old_ready: int, new_ready: int = 0, new_never_ready: bool = False):
        self.v = {"old": [old_ready, 0, 0], "new": [new_ready, 0, 0]}  # ready, starting, stopping
        self.never = new_never_ready

    def tick(self):
        for name, (ready, starting, _) in self.v.items():
            if name == "new" and self.never:
                self.v[name] = [ready, starting, 0]
            else:
                self.v[name] = [ready + starting, 0, 0]

    def ask(self, name: str, target: int):
        ready, starting, stopping = self.v[name]
        have = ready + starting
        if target > have:
            starting += target - have
        elif target < have:
            cut = have - target
            drop_starting = min(cut, starting)  # Serve stops replicas not yet ready first
            starting -= drop_starting
            ready -= cut - drop_starting
            stopping += cut
        self.v[name] = [ready, starting, stopping]

    def observed(self, name: str) -> Observed:
        ready, starting, stopping = self.v[name]
        return Observed(alive=ready + starting + stopping, ready=ready)


def run(desired, surge, unavailable, *, deadline=100.0, never=False, ticks=60):
    serve = FakeServe(desired, new_never_ready=never)
    r = rollout.start(desired, surge, unavailable, deadline, now=0.0)
    s, u = rollout.bounds(desired, surge, unavailable)
    serve.ask("new", r.new_target)
    peaks = []
    for t in range(1, ticks):
        serve.tick()
        old, new = serve.observed("old"), serve.observed("new")
        peaks.append((old.alive + new.alive, old.ready + new.ready))
        r = rollout.step(r, old, new, float(t))
        serve.ask("old", r.old_target)
        serve.ask("new", r.new_target)
        if r.phase != rollout.ROLLING:
            break
    return r, peaks, s, u


@pytest.mark.parametrize(
    "desired, surge, unavailable",
    [(2, 1, 0), (3, 1, 0), (4, "25%", "25%"), (5, 0, 1), (4, 2, 0), (1, 1, 0), (10, "30%", 0), (3, 0, "34%")],
)
def test_a_rollout_completes_within_its_bounds(desired, surge, unavailable):
    r, peaks, s, u = run(desired, surge, unavailable)
    assert r.phase == rollout.COMPLETE and r.old_target == 0 and r.new_target == desired
    assert max(alive for alive, _ in peaks) <= desired + s
    assert min(ready for _, ready in peaks) >= desired - u


def test_percentages_round_as_kubernetes_does_and_zero_room_means_one_missing():
    assert rollout.bounds(4, "25%", "25%") == (1, 1)
    assert rollout.bounds(10, "25%", "25%") == (3, 2)  # surge rounds up, unavailable down
    assert rollout.bounds(3, "10%", "10%") == (1, 0)
    assert rollout.bounds(3, "0%", "10%") == (0, 1)  # both zero would never move
    assert rollout.bounds(2, 0, 5) == (0, 2)


def test_a_candidate_that_never_gets_ready_rolls_back_after_the_progress_deadline():
    r, _, _, _ = run(3, 1, 0, deadline=5.0, never=True)
    assert r.phase == rollout.ROLLED_BACK and r.old_target == 3 and r.new_target == 0
    assert "progressDeadline" in r.reason


def test_progress_restarts_the_deadline():
    r = rollout.start(3, 1, 0, 5.0, now=0.0)
    r = rollout.step(r, Observed(3, 3), Observed(1, 0), 4.0)
    r = rollout.step(r, Observed(3, 3), Observed(1, 1), 4.5)  # a new replica ready: progress
    assert r.progressed == 4.5
    r = rollout.step(r, Observed(3, 2), Observed(2, 1), 9.0)
    assert r.phase == rollout.ROLLING
    assert rollout.step(r, Observed(2, 2), Observed(2, 1), 9.6).phase == rollout.ROLLED_BACK


def test_traffic_follows_the_ready_replicas():
    r = rollout.start(4, 1, 0, 60.0, now=0.0)
    r = rollout.step(r, Observed(4, 4), Observed(1, 1), 1.0)
    w = rollout.weights("v1", "v2", Observed(4, 4), Observed(1, 1), r)
    assert w["v2"] == pytest.approx(100 * 1 / (r.old_target + 1)) and w["v1"] + w["v2"] == pytest.approx(100)
    assert rollout.weights("v1", "v2", Observed(0, 0), Observed(0, 0), r) == {"v1": 100.0, "v2": 0.0}
    done = rollout.Rollout(**{**r.__dict__, "phase": rollout.COMPLETE})
    assert rollout.weights("v1", "v2", Observed(), Observed(4, 4), done) == {"v1": 0.0, "v2": 100.0}


def test_a_finished_rollout_does_not_move():
    r = rollout.rollback(rollout.start(2, 1, 0, 60.0, now=0.0), "by request")
    assert rollout.step(r, Observed(2, 2), Observed(2, 2), 99.0) is r


def test_candidate_replicas_already_running_count_against_the_surge():
    r = rollout.start(3, 1, 0, 60.0, now=0.0, new_target=3)
    assert r.new_target == 1
