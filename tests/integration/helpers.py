"""Functions that integration tests run as task workloads (importable through PYTHONPATH)."""

import os
import time


def where() -> dict:
    """Where and with what this task runs: its placement group, GPUs and node."""
    import ray

    ctx = ray.get_runtime_context()
    return {
        "pg": ctx.get_placement_group_id(),
        "node": ctx.get_node_id(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "workload_id": os.environ.get("ORION_WORKLOAD_ID"),
        "tenant": os.environ.get("ORION_TENANT"),  # the worker pool's tenant marker
    }


def sleep_then(seconds: float, value=None, heartbeat: str = ""):
    """Sleep (writing a heartbeat file every 0.1 s if asked), then return ``value``."""
    end = time.time() + seconds
    while time.time() < end:
        if heartbeat:
            with open(heartbeat, "a") as f:
                f.write(".")
        time.sleep(0.1)
    return value


def fail(message: str = "boom"):
    print("about to fail")
    raise RuntimeError(message)


def not_json():
    return object()


def where_after(seconds: float) -> dict:
    """``where()`` after holding the reservation for ``seconds`` (to overlap with another run)."""
    time.sleep(seconds)
    return where()


def where_when(path: str, timeout: float = 120.0) -> dict:
    """``where()`` once ``path`` exists: holds the reservation until the test says so."""
    end = time.time() + timeout
    while not os.path.exists(path) and time.time() < end:
        time.sleep(0.05)
    return where()
