"""A real local Ray cluster: a head with the dashboard (the Jobs API needs it) and two fake GPU nodes.

Fake GPUs are Ray resources: they get ids and CUDA_VISIBLE_DEVICES, but no device exists.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
PYPATH_ENV = {"env_vars": {"PYTHONPATH": ROOT}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))  # free on every address: Ray listens on the node IP too
        return s.getsockname()[1]


def _node_ports() -> dict:
    """Every fixed Ray port, made free: the nodes share one IP, and another Ray (an `orion up`
    of the end-to-end tests, a developer's own) may hold the defaults."""
    return {
        "dashboard_agent_listen_port": _free_port(),
        "metrics_export_port": _free_port(),
        "runtime_env_agent_port": _free_port(),
    }


@pytest.fixture(scope="package")  # gone once the integration tests are: not idle under the rest
def ray_cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "redis_port": _free_port(),
            "include_dashboard": True,
            "dashboard_port": _free_port(),
            "dashboard_host": "127.0.0.1",
            # Ray's metrics reach its endpoint every 2 s instead of 10 (test_metrics_ray waits on them)
            "_system_config": {"metrics_report_interval_ms": 2000},
            **_node_ports(),
        },
    )
    try:
        cluster.add_node(num_cpus=2, num_gpus=4, labels={"ray.io/accelerator-type": "H100"}, **_node_ports())
        cluster.add_node(num_cpus=2, num_gpus=4, labels={"ray.io/accelerator-type": "A100"}, **_node_ports())
        cluster.wait_for_nodes()
        ctx = ray.init(
            address=cluster.address, namespace="orion", runtime_env={"env_vars": {"PYTHONPATH": ROOT}}
        )
        cluster.dashboard_url = "http://" + ctx.dashboard_url
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def wait_for(predicate, timeout: float = 60.0, every: float = 0.1, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; return its value or fail the test."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class OrionHandle:
    """The scheduler actor as tests drive it (the same calls the API makes)."""

    TERMINAL = ("completed", "failed", "cancelled")

    def __init__(self, actor, store_path: str):
        self.actor = actor
        self.store_path = store_path

    def submit(self, spec: dict, tenant: str = "default") -> str:
        import ray

        spec = dict(spec)
        if spec.get("workload_type") == "task":
            spec.setdefault("runtime_env", PYPATH_ENV)
        return ray.get(self.actor.submit.remote(spec, tenant), timeout=30)["workload_id"]

    def get(self, wid: str) -> dict:
        import ray

        return ray.get(self.actor.get.remote(wid), timeout=30)

    def wait(self, wid: str, statuses=TERMINAL, timeout: float = 90.0) -> dict:
        return wait_for(
            lambda: (lambda w: w if w["status"] in statuses else None)(self.get(wid)),
            timeout,
            0.1,
            f"{wid} to reach {statuses}",
        )

    def cancel(self, wid: str) -> dict:
        import ray

        return ray.get(self.actor.cancel.remote(wid), timeout=30)

    def logs(self, wid: str) -> str:
        import ray

        return ray.get(self.actor.logs.remote(wid), timeout=30)

    def pid(self) -> int:
        import ray

        return ray.get(self.actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)


def start_orion(ray_cluster, store_path: str, policy: dict | None = None, **scheduler):
    import ray

    from orion_ray.config import OrionConfig
    from orion_ray.scheduler.actor import deploy_scheduler

    cfg = OrionConfig.model_validate(
        {
            "orion": {
                "store": {"path": store_path},
                "scheduler": {
                    "placement_ready_timeout_s": 5,
                    "retry_backoff_base_s": 0.2,
                    "job_poll_interval_s": 0.2,
                    **scheduler,
                },
                "policy": policy or {},
            }
        }
    )
    actor = deploy_scheduler(cfg, ray_cluster.dashboard_url)
    ray.get(actor.ensure_started.remote(), timeout=60)
    return OrionHandle(actor, store_path)


def stop_orion() -> None:
    """Kill Orion's actors and remove every Orion placement group left behind."""
    import ray
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    from orion_ray.runtime.executor import EXECUTOR_NAME
    from orion_ray.scheduler.actor import SCHEDULER_NAME

    for name in (SCHEDULER_NAME, EXECUTOR_NAME):
        try:
            ray.kill(ray.get_actor(name, namespace="orion"), no_restart=True)
        except ValueError:
            pass
    for pg_id, info in placement_group_table().items():
        if info["state"] != "REMOVED":
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
    wait_for(lambda: not _named_actor_alive(), 30, 0.2, "Orion's actors to stop")


def _named_actor_alive() -> bool:
    import ray

    from orion_ray.scheduler.actor import SCHEDULER_NAME

    try:
        ray.get_actor(SCHEDULER_NAME, namespace="orion")
        return True
    except ValueError:
        return False


@pytest.fixture(scope="module")
def orion(ray_cluster, tmp_path_factory):
    handle = start_orion(ray_cluster, str(tmp_path_factory.mktemp("store") / "orion.db"))
    try:
        yield handle
    finally:
        stop_orion()
