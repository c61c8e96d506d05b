"""A region that must launch capacity, through the EC2 adapter against a real moto server on
loopback (issue 17): the region takes the dispatch, its pool has nothing free so it launches an
instance (``EC2Provider.launch``, the autoscaler's path), the instance never joins (moto's never
do), and the control plane's launch budget moves the run to the other region with the first one
blocked; the region hears its copy is stale and gives the instance back."""

import pytest

from orion_ray.autoscaler.providers import EC2Provider
from orion_ray.control_plane.service import ControlPlane
from orion_ray.errors import QueueFull
from orion_ray.policy.region_state import Heartbeat
from orion_ray.policy.regions import RunRequest
from orion_ray.store.sqlite import SQLiteStore

from .conftest import AMI, live_instances


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class Region:
    """A region's side, reduced to what this test needs: free GPUs, and a pool on EC2 that
    launches when a run does not fit."""

    def __init__(self, name, plane, provider=None, free=0.0):
        self.name, self.plane, self.provider, self.free = name, plane, provider, free
        self.held: dict[tuple[str, int], list[str]] = {}  # (run, generation) → instances it launched
        self.seq = 0

    def beat(self):
        hb = Heartbeat(free_gpus={"gpu": self.free}, gpu_types=frozenset({"gpu"}), free_cpus=8)
        ans = self.plane.heartbeat(self.name, hb, list(self.held))
        for c in ans["cancel"]:  # fencing: the stale copy is cancelled, its capacity given back
            ids = self.held.pop((c["workload_id"], c["generation"]))
            if self.provider is not None and ids:
                self.provider.terminate(ids)
        return ans

    def take(self, run_id, gen, gpus):
        self.plane.outcome(run_id, accepted=True)
        ids = []
        if gpus > self.free and self.provider is not None:
            ids = self.provider.launch("gpu", 1).instance_ids
        self.held[(run_id, gen)] = ids
        self.report(run_id, gen, "queued" if ids or gpus > self.free else "running")

    def report(self, run_id, gen, status):
        self.seq += 1
        change = {"seq": self.seq, "workload_id": run_id, "generation": gen, "status": status}
        self.plane.status(self.name, [{**change, "at": self.plane.clock()}])


def test_a_launch_that_does_not_come_up_in_budget_goes_to_the_other_region(ec2, subnets, tmp_path):
    clock = Clock()
    plane = ControlPlane(
        SQLiteStore(str(tmp_path / "cp.db")), launch_budget_s=300, lost_timeout_s=3600, clock=clock
    )
    pool = {
        "name": "gpu",
        "instance_type": "p4d.24xlarge",
        "image_id": AMI,
        "subnets": list(subnets.values()),
    }
    east = Region(
        "east", plane, EC2Provider(ec2_client=ec2, pools=[{**pool, "max_size": 2}], cluster="r-east")
    )
    west = Region("west", plane, free=0.0)
    for r in (east, west):
        plane.add_region(r.name)
        r.beat()
    d = plane.dispatch(RunRequest("r1", "acme", gpus=1, cpus=1, preference=("east", "west")))
    assert d.assignment.region == "east"  # neither fits: the preferred one queues and launches
    east.take("r1", 1, gpus=1)
    launched = live_instances(ec2, **{"orion-cluster": "r-east", "orion-pool": "gpu"})
    assert len(launched) == 1 and east.held[("r1", 1)] == [launched[0]["InstanceId"]]

    clock.t += 301  # the instance never joined: the run is not running within the budget
    west.free = 1.0
    for r in (east, west):
        r.beat()
    assert plane.tick()["launch_overdue"] == ["r1"]
    assert plane.redispatch()["placed"] == {"r1": "west"}
    assert plane.tables.get("cp-r1-g1").state == "released"
    assert plane.tables.get("cp-r1-g2").state == "reserved"
    west.take("r1", 2, gpus=1)
    assert plane.assignments["r1"].status == "running"
    assert east.beat()["cancel"] == [{"workload_id": "r1", "generation": 1}]
    assert live_instances(ec2, **{"orion-cluster": "r-east"}) == []  # the region gave it back
    with pytest.raises(QueueFull) as refused:  # east stays blocked for a while
        plane.dispatch(RunRequest("r2", "acme", gpus=1, cpus=1, region="east"))
    assert "blocked" in str(refused.value.details)
