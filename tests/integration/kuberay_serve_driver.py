"""The driver of ``test_kuberay_control``: a RayService's head in miniature, in a process of its own.

It starts a one-node Ray cluster (auth off, free ports), puts the control plane's credential where
the manifests mount the ``orion-control`` Secret (a 0400 file in a directory of its own), builds
Orion's API with ``orion_api(args)`` exactly as Serve does for the manifest's application, and then
tries what the test checks. It prints one JSON line of findings and stops everything it started.

Run: ``python -m tests.integration.kuberay_serve_driver <empty tmp dir>`` from the repository root.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parents[2])
ADMIN_KEY = "kuberay-admin-key-0123456789"
TASK = {"workload_type": "task", "function": "math:factorial", "args": [6], "resources": {"cpu": 1}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))  # free on every address: Ray listens on the node IP too
        return s.getsockname()[1]


def _wait_done(http: Any, wid: str, timeout_s: float = 90.0) -> dict:
    deadline = time.time() + timeout_s
    while True:
        w = http.get(f"/api/v1/workloads/{wid}").json()
        if w.get("status") in ("completed", "failed", "cancelled") or time.time() > deadline:
            return w
        time.sleep(0.2)


def run(tmp: Path) -> dict[str, Any]:
    """Start, build, try; return the findings (what the test asserts on)."""
    import httpx
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from orion_ray.errors import ConfigError
    from orion_ray.kuberay.serve_entry import orion_api
    from tests.security.attacks import reach_the_actors
    from tests.security.kv_scan import scan_kv_for

    token_dir = tmp / "control"  # the Secret's mount (defaultMode 0400)
    token_dir.mkdir()
    token_file = token_dir / "control_token"
    token_file.write_text("kuberay-control-" + os.urandom(16).hex())
    token_file.chmod(0o400)
    (tmp / "no-secret").mkdir()  # a head where the Secret was not mounted
    config = tmp / "orion.yaml"
    config.write_text(f"orion:\n  store: {{path: {tmp / 'orion.db'}}}\n")
    args = {
        "admin_key_sha256": [sha256(ADMIN_KEY.encode()).hexdigest()],
        "config_path": str(config),
        "control_token_dir": str(token_dir),
    }
    out: dict[str, Any] = {}
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
    try:
        ray.init(
            address=cluster.address,
            namespace="orion",
            runtime_env={"env_vars": {"PYTHONPATH": ROOT}},
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        try:
            orion_api(dict(args, control_token_dir=str(tmp / "no-secret")))
            out["without_secret"] = "built"
        except ConfigError as exc:
            out["without_secret"] = exc.details
        out["actors_after_refusal"] = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]

        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(orion_api(args), name="orion-api", route_prefix="/")
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as http:
            r = http.post("/api/v1/workloads", json=TASK)
            out["submit"] = r.status_code
            done = _wait_done(http, r.json()["workload_id"]) if r.status_code == 202 else {}
            out["task"] = {"status": done.get("status"), "result": done.get("result")}
        attack = ray.remote(num_cpus=0)(reach_the_actors)  # workload code: a Ray task, no token
        out["attacks"] = ray.get(attack.remote(done.get("workload_id", "none")), timeout=180)
        out["kv"] = scan_kv_for(token_file, cluster.address, dict(os.environ))
    finally:
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()
    return out


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]))), flush=True)
