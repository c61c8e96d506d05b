"""Benchmark ``autoscale``: a burst of GPU gangs on a fake autoscaling Ray cluster.

Orion runs as a user runs it (``orion up --address`` on the cluster, with a worker pool in
``orion.yaml``); the cluster starts with no GPU node. Measured from the burst's submission:
- ``request_s``: until Orion's autoscaler has asked the Ray autoscaler for capacity (its scale-up
  event);
- ``running_s``: until every gang runs;
- ``scale_down_s``: from the last gang's end until the GPU nodes are gone.

The baseline, in the same run: the same gangs as plain Ray placement groups with the same task in
each (Ray's own autoscaler reacting to pending groups), from creation to every task running, and
from the groups' removal to the nodes gone.

    python -m benchmarks.autoscale [--gangs 2] [--gang-size 2] [--hold 8] [--repeat 3]

The last line is ``{"benchmark": "autoscale", "request_s", "running_s", "scale_down_s", ...}``
(medians over the repeats).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fake_autoscaling import FakeAutoscalingCluster  # noqa: E402

POOL_LABELS = {"ray.io/accelerator-type": "A100", "orion.io/pool": "a100"}
NODE_TYPES = {
    "gpu_a100": {"resources": {"CPU": 2, "GPU": 4}, "labels": POOL_LABELS, "min_workers": 0, "max_workers": 6}
}
ORION_YAML = """\
orion:
  api: {{port: {port}}}
  store: {{path: {home}/orion.db}}
  scheduler: {{placement_ready_timeout_s: 30, retry_backoff_base_s: 0.2}}
  worker_pools:
    - {{name: a100, resources: {{CPU: 2, GPU: 4}}, gpu_type: A100, ray_node_type: gpu_a100,
       min_size: 0, max_size: 6, scaling_policy: reactive}}
  autoscaling: {{scale_up_cooldown: 10s, scale_down_cooldown: 5s, idle_time: 3s,
                 interval_s: 0.5}}
"""

BASELINE_DRIVER = r"""
import json, sys, time, ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
gangs, size, hold = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

@ray.remote(num_cpus=1, num_gpus=4)
def run(hold):  # like Orion's gang task: reports when it started, then holds the group
    started = time.time()
    time.sleep(hold)
    return started

t0 = time.time()
pgs = [placement_group([{"CPU": 1, "GPU": 4}] * size, strategy="STRICT_SPREAD",
                       bundle_label_selector=[{"ray.io/accelerator-type": "A100"}] * size)
       for _ in range(gangs)]
refs = [run.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote(hold)
        for pg in pgs]
ray.get([pg.ready() for pg in pgs], timeout=300)
ready = time.time() - t0
running = max(ray.get(refs, timeout=600)) - t0
for pg in pgs:
    remove_placement_group(pg)
print(json.dumps({"ready_s": ready, "running_s": running, "removed_at": time.time()}))
"""


def err(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ts(iso: Optional[str]) -> Optional[float]:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _wait(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def _gpu_nodes(cluster: FakeAutoscalingCluster) -> list:
    return cluster.worker_nodes("gpu_a100")


@contextlib.contextmanager
def orion_on(
    cluster: FakeAutoscalingCluster,
    *,
    up_args: Sequence[str] = (),
    extra_env: Optional[dict[str, str]] = None,
):
    """``orion up --address`` on the fake cluster with a fresh ORION_HOME; always ``orion down``.
    ``up_args`` are added to ``orion up`` (e.g. ``--control-plane URL --region NAME``) and
    ``extra_env`` to its environment (e.g. ``ORION_REGION_KEY``). Yields ``(client, env)``."""
    from orion_ray.client import OrionClient

    home = tempfile.mkdtemp(prefix="orion-autoscale-")
    port = _free_port()
    Path(home, "orion.yaml").write_text(ORION_YAML.format(port=port, home=home))
    env = dict(cluster.env, ORION_HOME=home, RAY_AUTH_MODE="disabled", **(extra_env or {}))
    env.pop("ORION_URL", None)
    env.pop("ORION_API_KEY", None)
    orion = str(Path(sys.executable).parent / "orion")
    try:
        p = subprocess.run(
            [
                orion,
                "up",
                "--address",
                cluster.address,
                "--config",
                str(Path(home, "orion.yaml")),
                "--port",
                str(port),
                *up_args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=str(ROOT),
        )
        if p.returncode != 0:
            raise RuntimeError(f"orion up failed:\n{p.stdout}\n{p.stderr[-4000:]}")
        creds = json.loads(Path(home, "credentials").read_text())
        client = OrionClient(creds["url"], creds["api_key"])
        try:
            yield client, env
        finally:
            client.close()
    finally:
        subprocess.run([orion, "down"], env=env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def burst(client, gangs: int, size: int, hold_s: float) -> list[str]:
    """Submit ``gangs`` STRICT_SPREAD gangs of ``size`` whole 4-GPU bundles at once."""
    spec = {
        "workload_type": "task",
        "function": "time:sleep",
        "args": [hold_s],
        "placement": "strict_spread",
        "bundles": [{"cpu": 1, "gpu": 4, "gpu_type": "A100"}] * size,
    }
    return [client.submit_workload(spec).workload_id for _ in range(gangs)]


def orion_round(
    cluster, client, gangs: int, size: int, hold_s: float, on_running: Optional[Callable[[list], None]] = None
) -> dict[str, Any]:
    """One burst through Orion; returns the timings and what was seen."""
    before = {e["id"] for e in client.scaling_events(kind="scale_up")["items"]}
    t0 = time.time()
    ids = burst(client, gangs, size, hold_s)

    def new_up():
        return [e for e in client.scaling_events(kind="scale_up")["items"] if e["id"] not in before]

    ups = _wait(new_up, 60, "a scale-up event")
    request_s = min(_ts(e["at"]) for e in ups) - t0
    running = _wait(
        lambda: (
            (ws := [client.get_workload(i) for i in ids])
            and all(w["status"] in ("running", "completed") for w in ws)
            and ws
        ),
        180,
        "every gang running",
    )
    running_s = max(_ts(w["started_at"]) for w in running) - t0
    ups = new_up()  # the burst may have been seen in two steps (0 → 2 → 4)
    if on_running is not None:
        on_running(running)
    done = [client.wait_for_completion(i, timeout=300) for i in ids]
    ended = max(_ts(r.record["finished_at"]) for r in done)
    _wait(lambda: not _gpu_nodes(cluster), 180, "the GPU nodes to go")
    scale_down_s = time.time() - ended
    return {
        "request_s": round(request_s, 3),
        "running_s": round(running_s, 3),
        "scale_down_s": round(scale_down_s, 3),
        "workloads": done,
        "nodes_requested": max(e["after"] for e in ups),
    }


def baseline_round(cluster, gangs: int, size: int, hold_s: float) -> dict[str, float]:
    """The same gangs as plain placement groups: Ray's autoscaler alone."""
    p = subprocess.run(
        [sys.executable, "-c", BASELINE_DRIVER, cluster.address, str(gangs), str(size), str(hold_s)],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    if p.returncode != 0:
        raise RuntimeError(f"baseline driver failed:\n{p.stderr[-3000:]}")
    got = json.loads(p.stdout.strip().splitlines()[-1])
    _wait(lambda: not _gpu_nodes(cluster), 180, "the GPU nodes to go (baseline)")
    return {
        "running_s": round(got["running_s"], 3),
        "ready_s": round(got["ready_s"], 3),
        "scale_down_s": round(time.time() - got["removed_at"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gangs", type=int, default=2)
    ap.add_argument("--gang-size", type=int, default=2)
    ap.add_argument("--hold", type=float, default=8.0, help="seconds each gang runs")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    cluster = FakeAutoscalingCluster(NODE_TYPES, idle_timeout_minutes=0.1, head_resources={"CPU": 2})
    orion_rounds, base_rounds = [], []
    try:
        cluster.start()
        err(f"fake autoscaling cluster up at {cluster.address}")
        for i in range(a.repeat):  # the baseline first: Orion's request floor is not there yet
            base_rounds.append(baseline_round(cluster, a.gangs, a.gang_size, a.hold))
            err(f"baseline {i + 1}: {base_rounds[-1]}")
        with orion_on(cluster) as (client, _):
            for i in range(a.repeat):
                r = orion_round(cluster, client, a.gangs, a.gang_size, a.hold)
                r.pop("workloads")
                orion_rounds.append(r)
                err(f"orion {i + 1}: {r}")
    finally:
        cluster.shutdown()

    def med(rows, key):
        return round(statistics.median(r[key] for r in rows), 3)

    out = {
        "benchmark": "autoscale",
        "gangs": a.gangs,
        "gang_size": a.gang_size,
        "repeats": a.repeat,
        "request_s": med(orion_rounds, "request_s"),
        "running_s": med(orion_rounds, "running_s"),
        "scale_down_s": med(orion_rounds, "scale_down_s"),
        "baseline_running_s": med(base_rounds, "running_s"),
        "baseline_scale_down_s": med(base_rounds, "scale_down_s"),
        "baseline_group_ready_s": med(base_rounds, "ready_s"),
    }
    out["running_ratio"] = round(out["running_s"] / out["baseline_running_s"], 3)
    out["scale_down_ratio"] = round(out["scale_down_s"] / out["baseline_scale_down_s"], 3)
    out["targets_met"] = {"request_le_5s": out["request_s"] <= 5, "running_le_30s": out["running_s"] <= 30}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
