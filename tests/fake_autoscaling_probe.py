"""Re-measure what tests/fake_autoscaling.py's docstring states: ``python -m tests.fake_autoscaling_probe
[--orion] [--fast-death]`` from the repository root (RAY_AUTH_MODE=disabled is set for you). Prints one
line per step and a JSON summary of the timings at the end. Needs port 6379 free. ~2 min (+~15 s --orion).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from tests.fake_autoscaling import FAKE_HEAD_NODE_ID, FAST_NODE_DEATH, FakeAutoscalingCluster, free_port

POOL = {"orion.io/pool": "gpu-a100"}
WHOLE = {"CPU": 2, "GPU": 4}
NODE_TYPES = {
    "gpu_a100": {
        "resources": dict(WHOLE),
        "labels": {"ray.io/accelerator-type": "A100", **POOL},
        "min_workers": 0,
        "max_workers": 4,
    }
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orion", action="store_true", help="also `orion up --address` / `orion down`")
    ap.add_argument("--fast-death", action="store_true", help="system_config=FAST_NODE_DEATH")
    a = ap.parse_args()
    os.environ["RAY_AUTH_MODE"] = "disabled"
    c = FakeAutoscalingCluster(NODE_TYPES, system_config=FAST_NODE_DEATH if a.fast_death else None)
    out: dict = {}
    t00 = time.monotonic()

    def log(*args):
        print(f"[{time.monotonic() - t00:6.1f}]", *args, flush=True)

    def workers():
        return sorted(n["node_id"] for n in c.worker_nodes())

    def alive(nid):
        return {n["node_id"]: n["alive"] for n in c.all_nodes()}.get(nid)

    try:
        c.start()
        out["startup_s"] = round(c.startup_seconds, 2)
        log("started", c.address, c.dashboard_url)
        os.environ.update({k: v for k, v in c.env.items() if k.startswith("RAY_")})
        import ray
        from ray._raylet import GcsClient
        from ray.autoscaler.sdk import request_resources
        from ray.core.generated import autoscaler_pb2
        from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

        ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
        gcs = GcsClient(address=c.gcs_address)

        # a. request_resources -> nodes; clear -> gone
        t = time.monotonic()
        request_resources(bundles=[WHOLE] * 2, bundle_label_selectors=[POOL] * 2)
        c.wait_for(lambda: len(c.worker_nodes()) == 2, 120)
        out["request_2_nodes_alive_s"] = round(time.monotonic() - t, 2)
        log("a: 2 nodes", [(n["node_type"], n["labels"]) for n in c.worker_nodes()])
        t = time.monotonic()
        request_resources(bundles=[])
        c.wait_for(lambda: not c.worker_nodes(), 120)
        out["clear_nodes_gone_s"] = round(time.monotonic() - t, 2)

        # b. pending PG (Ray's own demand), status paths
        t = time.monotonic()
        pg = placement_group([WHOLE] * 2, strategy="STRICT_SPREAD", bundle_label_selector=[POOL] * 2)
        demand = c.wait_for(lambda: c.cluster_status().resource_demands.placement_group_demand, 30)
        log("b: placement_group_demand", demand)
        ray.get(pg.ready(), timeout=120)
        out["pg_ready_s"] = round(time.monotonic() - t, 2)
        st = c.cluster_status()
        log(
            "b: nodes",
            [(n.node_id[-5:], n.ray_node_type_name, n.node_status) for n in st.active_nodes + st.idle_nodes],
        )

        # a'. request counts against total: PG fills both nodes, request 2 whole nodes
        request_resources(bundles=[WHOLE] * 2, bundle_label_selectors=[POOL] * 2)
        time.sleep(12)
        out["nodes_after_request2_while_full"] = len(c.worker_nodes())
        log("a: request 2 while both full ->", out["nodes_after_request2_while_full"], "nodes")
        log("a: cluster_constraint_demand", c.cluster_status().resource_demands.cluster_constraint_demand)

        # d. drain a busy node
        busy = list(placement_group_table(pg)["bundles_to_node_id"].values())[0]
        out["drain_idle_reason_on_busy"] = list(
            gcs.drain_node(
                busy, autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_IDLE_TERMINATION"), "probe", 0
            )
        )
        out["drain_preempt_on_busy"] = list(
            gcs.drain_node(
                busy,
                autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),
                "probe",
                int(time.time() * 1000) + 10000,
            )
        )
        time.sleep(15)
        st = c.cluster_status()
        out["busy_drained_status_after_15s"] = [
            n.node_status for n in st.active_nodes + st.idle_nodes if n.node_id == busy
        ]
        log(
            "d: busy node drain",
            out["drain_idle_reason_on_busy"],
            out["drain_preempt_on_busy"],
            out["busy_drained_status_after_15s"],
            "alive",
            alive(busy),
        )
        remove_placement_group(pg)

        # d. drain an idle node (the request floor of 2 keeps 2 nodes)
        c.wait_for(
            lambda: (
                len(c.worker_nodes()) == 2
                and not any(n.node_status == "DRAINING" for n in c.cluster_status().idle_nodes)
            ),
            120,
        )
        idle = workers()[0]
        t = time.monotonic()
        out["drain_preempt_on_idle"] = list(
            gcs.drain_node(
                idle,
                autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),
                "probe",
                int(time.time() * 1000) + 30000,
            )
        )
        c.wait_for(lambda: not alive(idle), 60, interval=0.05)
        out["idle_drained_dead_s"] = round(time.monotonic() - t, 2)
        c.wait_for(lambda: len(c.worker_nodes()) == 2, 60)
        out["idle_drained_replaced_s"] = round(time.monotonic() - t, 2)

        # c. kill a node
        victim = workers()[-1]
        t = time.monotonic()
        killed = c.kill_node(victim)
        c.wait_for(lambda: not alive(victim), 120, interval=0.1)
        out["killed_dead_s"] = round(time.monotonic() - t, 2)
        c.wait_for(lambda: len(c.worker_nodes()) == 2, 60)
        out["killed_replaced_s"] = round(time.monotonic() - t, 2)
        out["head_alive"] = alive(FAKE_HEAD_NODE_ID)
        log("c: killed", killed, "dead/replaced", out["killed_dead_s"], out["killed_replaced_s"])

        # e. orion up --address / down
        if a.orion:
            home = tempfile.mkdtemp(prefix="orion-home-")
            port = free_port()
            bin_ = os.path.dirname(sys.executable)
            env = dict(c.env, ORION_HOME=home, PATH=f"{bin_}:{os.environ['PATH']}")
            env.pop("ORION_URL", None)
            env.pop("ORION_API_KEY", None)
            t = time.monotonic()
            p = subprocess.run(
                [f"{bin_}/orion", "up", "--address", c.address, "--port", str(port)],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                cwd=home,
            )
            out["orion_up"] = [p.returncode, round(time.monotonic() - t, 2)]
            import httpx

            out["orion_health"] = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code
            t = time.monotonic()
            p = subprocess.run(
                [f"{bin_}/orion", "down"], env=env, capture_output=True, text=True, timeout=300, cwd=home
            )
            out["orion_down"] = [p.returncode, round(time.monotonic() - t, 2)]
            log("e:", out["orion_up"], out["orion_health"], out["orion_down"])
            shutil.rmtree(home, ignore_errors=True)

        request_resources(bundles=[])
        c.wait_for(lambda: not c.worker_nodes(), 120)
        ray.shutdown()
    finally:
        t = time.monotonic()
        c.shutdown()
        out["shutdown_s"] = round(time.monotonic() - t, 2)
        out["left_pids"] = c.live_pids()
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
