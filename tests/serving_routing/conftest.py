"""One local Ray with Serve for the package: the routing and cache tests share it."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = str(Path(__file__).resolve().parents[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def serve_cluster() -> Iterator[None]:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    cluster = None
    for attempt in range(3):  # Ray gives a raylet 30 s to register: on a loaded machine, try again
        try:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": 2,
                    "redis_port": _free_port(),
                    "include_dashboard": False,
                    "dashboard_agent_listen_port": _free_port(),
                    "metrics_export_port": _free_port(),
                    "runtime_env_agent_port": _free_port(),
                },
            )
            break
        except Exception:
            if attempt == 2:
                raise
            time.sleep(2)
    assert cluster is not None
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()}, proxy_location="Disabled")
        yield None
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()
