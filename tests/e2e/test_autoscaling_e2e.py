"""Autoscaling end to end on a fake autoscaling Ray cluster (autoscaler v2), Orion started as a user
starts it (``orion up --address`` with a worker pool): queued GPU gangs → Orion asks the Ray
autoscaler for nodes → they come up → the gangs run → one node dies under a gang, which is requeued
and runs again on a replacement → idle → Orion releases the nodes and they go away. Scaling events
and node states are checked through the admin API."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.autoscale import NODE_TYPES, _gpu_nodes, _wait, orion_on, orion_round
from tests.fake_autoscaling import GCS_PORT, FakeAutoscalingCluster, port_open
from tests.security.kv_scan import scan_kv_for

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)
def test_gangs_scale_the_pool_up_survive_a_lost_node_and_the_pool_scales_down():
    if port_open(GCS_PORT):
        pytest.skip(f"port {GCS_PORT} is taken: the fake autoscaler needs the GCS there")
    cluster = FakeAutoscalingCluster(NODE_TYPES, idle_timeout_minutes=0.1, head_resources={"CPU": 2})
    killed = {}
    try:
        cluster.start()
        assert not _gpu_nodes(cluster)  # no GPU node until Orion asks
        with orion_on(cluster) as (client, env):
            # attached from the head's machine: the API replica reads the control credential from
            # orion up's file, so it is not among Serve's arguments in Ray's internal KV
            got = scan_kv_for(Path(env["ORION_HOME"], "control_token"), cluster.address, env)
            assert got["scanned"] > 0 and got["found"] == [], got

            def kill_one(running):
                # the first gang's first bundle: its node dies under it
                node = running[0]["placement"][0]["node_id"]
                killed.update(node=node, workload=running[0]["workload_id"])
                cluster.kill_node(node)

            r = orion_round(cluster, client, gangs=2, size=2, hold_s=25, on_running=kill_one)
            assert r["request_s"] < 60 and r["nodes_requested"] == 4
            assert all(w.status == "completed" for w in r["workloads"]), r["workloads"]
            lost = next(w for w in r["workloads"] if w.workload_id == killed["workload"])
            assert lost.record["attempt"] == 2  # requeued as a new attempt, not failed
            other = next(w for w in r["workloads"] if w.workload_id != killed["workload"])
            assert other.record["attempt"] == 1
            history = [h["reason"] or "" for h in lost.record["history"]]
            assert any("lost" in h for h in history), history

            # the burst may be seen in one step (0 → 4) or two (0 → 2 → 4), newest first
            ups = client.scaling_events(kind="scale_up")["items"]
            first = ups[-1]
            top = max(ups, key=lambda e: e["after"])
            assert first["before"] == 0 and top["after"] == 4
            assert top["outcome"] in ("fulfilled", "superseded")
            assert all(e["trigger"] == "queue" and "pending gang" in e["reason"] for e in (first, top))
            downs = _wait(lambda: client.scaling_events(kind="scale_down")["items"], 60, "a scale-down event")
            assert downs[0]["after"] == 0 and downs[0]["details"]["release"]

            def gpu_nodes_ended():  # Orion sees Ray's membership within a second or two
                gpu = [n for n in client.nodes()["items"] if n["gpu_type"] == "A100"]
                return all(n["status"] in ("terminated", "lost") for n in gpu) and gpu

            gpu = _wait(gpu_nodes_ended, 30, "Orion to see the GPU nodes gone")
            assert len(gpu) >= 5  # 4 requested + the replacement
            assert {n["node_id"]: n["status"] for n in gpu}[killed["node"]] == "lost"
            health = client.infrastructure_health()
            assert health["autoscaler"]["status"] == "ok"
            assert killed["node"] in [n["node_id"] for n in health["lost_last_hour"]]
            node_events = client.scaling_events(kind="node", limit=200)["items"]
            assert {"registered", "ready", "drained", "terminated", "lost"} <= {
                e["outcome"] for e in node_events
            }
    finally:
        cluster.shutdown()
    assert not cluster.live_pids()
