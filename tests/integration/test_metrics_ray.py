"""OrionMetrics mirrored into Ray's metrics pipeline: values recorded in an actor reach a node's
metrics endpoint (what Prometheus scrapes for the Ray dashboard) as ``ray_orion_…`` series."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

SD_FILE = Path("/tmp/ray/prom_metrics_service_discovery.json")


def _targets() -> list[str]:
    """``host:port`` of every alive node's metrics endpoint, from the GCS, else the SD file."""
    import ray

    found = [
        f"{n['NodeManagerAddress']}:{n['MetricsExportPort']}"
        for n in ray.nodes()
        if n.get("Alive") and n.get("MetricsExportPort")
    ]
    if not found and SD_FILE.exists():
        found = [t for group in json.loads(SD_FILE.read_text()) for t in group.get("targets", [])]
    return found


def _scrape(target: str) -> str:
    try:
        with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as r:
            return r.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _orion_series(targets: list[str], tenant: str) -> dict[str, float]:
    """``name → value`` of the ``ray_orion_`` samples of ``tenant`` (or without a tenant label)."""
    out: dict[str, float] = {}
    for target in targets:
        for fam in text_string_to_metric_families(_scrape(target)):
            for s in fam.samples:
                if s.name.startswith("ray_orion_") and s.labels.get("tenant", tenant) == tenant:
                    out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def test_mirrored_metrics_reach_the_ray_metrics_endpoint(ray_cluster):
    import ray

    targets = _targets()
    if not targets or not any(_scrape(t) for t in targets):
        pytest.skip(f"no Ray metrics endpoint answers (targets: {targets or 'none found'})")

    @ray.remote(num_cpus=0)
    class Recorder:
        def __init__(self):
            from orion_ray.metrics import OrionMetrics

            self.m = OrionMetrics(ray_mirror=True)

        def record(self, tenant: str) -> str:
            self.m.retry(tenant)
            self.m.retry(tenant)
            self.m.set_queue_depth({(tenant, "high"): 7})
            self.m.wait_time(tenant, 1.5)
            self.m.scheduler_up(True)
            return self.m.render()

    tenant = f"itest-{uuid.uuid4().hex[:8]}"
    recorder = Recorder.remote()
    text = ray.get(recorder.record.remote(tenant), timeout=60)
    assert f'orion_workload_retries_total{{tenant="{tenant}"}} 2.0' in text  # the Prometheus side

    want = {
        "ray_orion_workload_retries_total": 2.0,
        "ray_orion_queue_depth": 7.0,
        "ray_orion_workload_wait_seconds_count": 1.0,
        "ray_orion_scheduler_up": 1.0,
    }
    deadline = time.time() + 90  # Ray reports every ~10 s (RAY_NOTES: 10–20 s to appear)
    seen: dict[str, float] = {}
    while time.time() < deadline:
        seen = _orion_series(targets, tenant)
        if all(seen.get(k) == v for k, v in want.items()):
            break
        time.sleep(2)
    assert {k: seen.get(k) for k in want} == want, f"ray_orion_ series seen: {sorted(seen)}"
    ray.kill(recorder)
