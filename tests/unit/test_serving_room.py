"""One GPU account for serving: the manager asks the scheduler for room before adding GPU replicas."""

from orion_ray.serving.manager import DeploymentManager, MemoryDeployer
from orion_ray.serving.specs import DeploymentSpec, ScaleRequest


def test_room_is_asked_for_new_gpu_replicas_only():
    asked = []
    m = DeploymentManager(
        MemoryDeployer(), room=lambda b, t: asked.append((b, t)) or {"preempted": ["wl-1"], "made_room": 1}
    )
    m.create(
        DeploymentSpec(model_id="chat", replicas=2, gpus_per_replica=1, cpus_per_replica=2, tenant_id="acme")
    )
    assert asked == [([{"GPU": 1.0, "CPU": 2.0}] * 2, "acme")]
    m.scale("chat", ScaleRequest(replicas=3))
    assert asked[-1] == ([{"GPU": 1.0, "CPU": 2.0}], "acme")  # one more replica
    m.scale("chat", ScaleRequest(replicas=1))
    m.create(DeploymentSpec(model_id="cpu-only", replicas=4))
    assert len(asked) == 2  # scaling down and CPU-only replicas need no room
    assert any(e["kind"] == "preempted_batch" for e in m.list_events("chat"))


def test_a_scheduler_that_cannot_answer_does_not_stop_the_deployment():
    def down(bundles, tenant):
        raise RuntimeError("scheduler restarting")

    m = DeploymentManager(MemoryDeployer(), room=down)
    view = m.create(DeploymentSpec(model_id="chat", replicas=1, gpus_per_replica=1))
    assert view["spec"]["model_id"] == "chat"
    assert any(e["kind"] == "room_failed" for e in m.list_events("chat"))
