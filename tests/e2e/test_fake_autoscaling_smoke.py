"""Smoke test of the fake autoscaling cluster harness (tests/fake_autoscaling.py).

A driver in a subprocess asks for 2 whole GPU nodes with ``request_resources`` (label-selected), the fake
autoscaler brings up 2 ``gpu_a100`` nodes with the declared labels, clearing the request lets them go
idle and be removed, and ``shutdown()`` leaves no process behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.fake_autoscaling import GCS_PORT, FakeAutoscalingCluster, port_open

pytestmark = pytest.mark.e2e

POOL = {"orion.io/pool": "gpu-a100"}
NODE_TYPES = {
    "gpu_a100": {
        "resources": {"CPU": 2, "GPU": 4},
        "labels": {"ray.io/accelerator-type": "A100", **POOL},
        "min_workers": 0,
        "max_workers": 4,
    }
}

DRIVER = r"""
import json, sys, ray
from ray.autoscaler.sdk import request_resources
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
bundles = json.loads(sys.argv[2])
request_resources(bundles=bundles, bundle_label_selectors=[json.loads(sys.argv[3])] * len(bundles)
                  if bundles else None)
print("ok")
"""


def _request(cluster: FakeAutoscalingCluster, bundles: list) -> None:
    p = subprocess.run(
        [sys.executable, "-c", DRIVER, cluster.address, json.dumps(bundles), json.dumps(POOL)],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]


@pytest.mark.timeout(600)
def test_request_two_gpu_nodes_then_release():
    if port_open(GCS_PORT):
        pytest.skip(f"port {GCS_PORT} is taken: the fake autoscaler needs the GCS there")
    cluster = FakeAutoscalingCluster(NODE_TYPES, idle_timeout_minutes=0.1, head_resources={"CPU": 2})
    try:
        cluster.start()
        head = cluster.nodes()
        assert len(head) == 1 and head[0]["is_head"] and "GPU" not in head[0]["resources"]

        t0 = time.monotonic()
        _request(cluster, [{"CPU": 2, "GPU": 4}] * 2)
        workers = cluster.wait_for(
            lambda: (w := cluster.worker_nodes()) and len(w) == 2 and w, timeout=120, what="2 gpu_a100 nodes"
        )
        up_s = time.monotonic() - t0
        for n in workers:
            assert n["node_type"] == "gpu_a100"
            assert n["resources"]["GPU"] == 4 and n["resources"]["CPU"] == 2
            assert n["labels"]["orion.io/pool"] == "gpu-a100"
            assert n["labels"]["ray.io/accelerator-type"] == "A100"
        # the provider records a node's pids once Ray's Node() returns, a moment after it registers
        cluster.wait_for(
            lambda: {n["node_id"] for n in workers} <= set(cluster.worker_pids()),
            timeout=30,
            what="pid records of both nodes",
        )
        assert len(cluster.worker_nodes()) == 2  # no more than asked for

        t1 = time.monotonic()
        _request(cluster, [])
        cluster.wait_for(lambda: not cluster.worker_nodes(), timeout=120, what="idle nodes removed")
        down_s = time.monotonic() - t1
        # their processes are gone too (the provider kills them on terminate)
        cluster.wait_for(lambda: not cluster.worker_pids(), timeout=30, what="worker processes gone")
        print(f"\nstartup {cluster.startup_seconds:.1f}s, 2 nodes up {up_s:.1f}s, removed {down_s:.1f}s")
    finally:
        cluster.shutdown()
        cluster.shutdown()  # idempotent
    assert cluster.live_pids() == []
    assert cluster.started_pids, "the harness should have tracked the processes it started"
    gone = [pid for pid in cluster.started_pids if _exists(pid)]
    assert not gone or all(_not_ours(pid, cluster) for pid in gone), gone
    assert not (cluster.tmp and cluster.tmp.exists())


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _not_ours(pid: int, cluster: FakeAutoscalingCluster) -> bool:
    """A pid number can be reused by an unrelated process: it is ours only with the same start time."""
    with open(f"/proc/{pid}/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])
    return start != cluster.started_pids[pid]
