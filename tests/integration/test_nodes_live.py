"""Node operations on real Ray: drain with running work, and a node lost under running work.

Each test adds its own fake node (an ``L4`` GPU type no other node has, so the work lands there)
and removes it at the end; the session's other nodes are left alone.
"""

from __future__ import annotations

import pytest
import ray

from .conftest import _node_ports, wait_for

pytestmark = pytest.mark.integration

L4 = {"ray.io/accelerator-type": "L4", "orion.io/pool": "l4"}


def _l4_task(tmp_path, name: str) -> dict:
    return {
        "workload_type": "task",
        "function": "tests.integration.helpers:where_when",
        "args": [str(tmp_path / name), 300],
        "resources": {"cpu": 0.1, "gpu": 1, "gpu_type": "L4"},
    }


def _add_l4(ray_cluster):
    node = ray_cluster.add_node(num_cpus=1, num_gpus=2, labels=L4, **_node_ports())
    ray_cluster.wait_for_nodes()
    return node, node.node_id


def _node_state(orion, node_id: str) -> str:
    nodes = ray.get(orion.actor.nodes.remote(), timeout=30)["items"]
    return next((n["status"] for n in nodes if n["node_id"] == node_id), "unknown")


@pytest.mark.timeout(300)
def test_drain_lets_work_run_to_the_deadline_then_requeues_it(orion, ray_cluster, tmp_path):
    node, node_id = _add_l4(ray_cluster)
    try:
        wait_for(lambda: _node_state(orion, node_id) == "ready", 30, 0.2, "the L4 node ready")
        wid = orion.submit(_l4_task(tmp_path, "go"))
        w = orion.wait(wid, ("running",), 60)
        assert w["placement"][0]["node_id"] == node_id
        view = ray.get(orion.actor.drain.remote(node_id, "test", 3.0, "maintenance"), timeout=30)
        assert view["status"] == "draining" and view["workloads"] == [wid]
        # past the deadline the run is preempted and requeued; the cordoned node takes nothing
        w = orion.wait(wid, ("queued",), 60)
        assert w["attempt"] == 2
        wait_for(lambda: _node_state(orion, node_id) == "drained", 30, 0.2, "the node drained")
        explain = ray.get(orion.actor.explain.remote(wid), timeout=30)
        assert explain["status"] == "queued"
        ray.get(orion.actor.uncordon.remote(node_id, "test"), timeout=30)
        (tmp_path / "go").touch()
        w = orion.wait(wid, timeout=90)
        assert w["status"] == "completed", w
        events = ray.get(orion.actor.scaling_events.remote(50, None, "node"), timeout=30)["items"]
        mine = [e["outcome"] for e in events if e["node_id"] == node_id]
        assert {"draining", "drained", "ready"} <= set(mine), mine
    finally:
        (tmp_path / "go").touch()
        ray_cluster.remove_node(node)


@pytest.mark.timeout(300)
def test_a_lost_node_is_marked_lost_and_its_work_requeued(orion, ray_cluster, tmp_path):
    node, node_id = _add_l4(ray_cluster)
    replacement = None
    try:
        wait_for(lambda: _node_state(orion, node_id) == "ready", 30, 0.2, "the L4 node ready")
        wid = orion.submit(_l4_task(tmp_path, "never"))  # it would hold the node for 300 s
        w = orion.wait(wid, ("running",), 60)
        assert w["placement"][0]["node_id"] == node_id
        ray_cluster.remove_node(node, allow_graceful=False)  # the node dies under the run
        node = None
        w = orion.wait(wid, ("queued", "starting", "running", "failed"), 90)
        wait_for(lambda: orion.get(wid)["attempt"] == 2, 90, 0.2, "a new attempt")
        assert orion.get(wid)["status"] != "failed"
        wait_for(lambda: _node_state(orion, node_id) == "lost", 90, 0.5, "the node marked lost")
        health = ray.get(orion.actor.infrastructure_health.remote(), timeout=30)
        assert node_id in [n["node_id"] for n in health["lost_last_hour"]]
        replacement, _ = _add_l4(ray_cluster)  # capacity comes back: the work runs again
        (tmp_path / "never").touch()
        w = orion.wait(wid, timeout=120)
        assert w["status"] == "completed" and w["attempt"] == 2, w
    finally:
        (tmp_path / "never").touch()
        for n in (node, replacement):
            if n is not None:
                ray_cluster.remove_node(n)
