"""The launch budget of a dispatch (issue 17): a run a region took but did not start within
``launch_budget_s`` is a failed launch — released, the region blocked, the run dispatched elsewhere
with the next generation and the stale copy fenced (policy/launch_budget.py, ControlPlane.tick).
The same with a real EC2 launch behind moto: tests/unit/providers/test_regions_launch_ec2.py."""

from orion_ray.control_plane.service import ControlPlane
from orion_ray.policy.launch_budget import overdue
from orion_ray.policy.region_state import Assignment, Heartbeat
from orion_ray.policy.regions import RunRequest
from orion_ray.store.sqlite import SQLiteStore


def test_only_placed_runs_that_never_started_overrun():
    a = [
        Assignment("late", "east", 1, "queued"),
        Assignment("starting", "east", 1, "starting"),
        Assignment("young", "east", 1, "submitted"),
        Assignment("ran", "east", 1, "preempted", started_at=5.0),
        Assignment("running", "east", 1, "running", started_at=5.0),
        Assignment("unsent", None, 2, "dispatched"),
        Assignment("no-answer", "east", 1, "dispatched"),
        Assignment("done", "east", 1, "completed"),
    ]
    since = {x.run_id: 0.0 for x in a} | {"young": 250.0}
    got = overdue(a, since, now=301.0, budget_s=300)
    assert [x.run_id for x in got] == ["late", "starting"]
    assert overdue(a, since, now=301.0, budget_s=0) == []  # 0: no budget
    assert overdue(a, {}, now=10_000.0, budget_s=300) == []  # no dispatch time known: left


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def _beat(plane, name, gpus=0.0, held=()):
    return plane.heartbeat(
        name, Heartbeat(free_gpus={"gpu": gpus}, gpu_types=frozenset({"gpu"}), free_cpus=8), held
    )


def test_an_overrun_moves_the_run_blocks_the_region_and_fences_the_copy_also_after_a_restart(tmp_path):
    clock = Clock()
    path = str(tmp_path / "cp.db")
    plane = ControlPlane(SQLiteStore(path), launch_budget_s=300, lost_timeout_s=10_000, clock=clock)
    for name in ("east", "west"):
        plane.add_region(name)
        _beat(plane, name)
    d = plane.dispatch(RunRequest("r1", "acme", gpus=1, cpus=1, preference=("east", "west")))
    assert d.assignment.region == "east"
    plane.outcome("r1", accepted=True)
    plane.status("east", [{"seq": 1, "workload_id": "r1", "generation": 1, "status": "queued", "at": 1000}])
    clock.t += 200
    assert plane.tick()["launch_overdue"] == []
    plane.store.close()
    plane = ControlPlane(
        SQLiteStore(path), launch_budget_s=300, lost_timeout_s=10_000, clock=clock
    )  # the time is a row
    clock.t += 101
    for name in ("east", "west"):
        _beat(plane, name, gpus=1)
    out = plane.tick()
    assert out["launch_overdue"] == ["r1"] and "r1" in out["redispatch"]
    a = plane.assignments["r1"]
    assert (a.region, a.generation, a.status) == (None, 2, "dispatched")
    assert plane.tables.get("cp-r1-g1").state == "released"
    assert plane.redispatch()["placed"] == {"r1": "west"}  # east is blocked, though it fits now
    assert _beat(plane, "east", gpus=1, held=[("r1", 1)])["cancel"] == [
        {"workload_id": "r1", "generation": 1}
    ]
    plane.outcome("r1", accepted=True)
    clock.t += 250
    plane.status(
        "west", [{"seq": 1, "workload_id": "r1", "generation": 2, "status": "running", "at": clock.t}]
    )
    clock.t += 1000
    assert plane.tick()["launch_overdue"] == []  # started: the budget no longer applies
