"""A real region applies config snapshots without a restart: a tenant quota holds a workload and a
raised one releases it while the first still runs, a new pool reaches the autoscaler, and the
applied version is still reported after the scheduler actor is killed and restarted by Ray."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, Callable

import httpx

from orion_ray.policy import config_snapshot as cfg
from tests.regions_config.conftest import KEYS

SLEEPER = {"workload_type": "task", "function": "time:sleep", "args": [60], "resources": {"cpu": 1}}
QUICK = {"workload_type": "task", "function": "math:factorial", "args": [5], "resources": {"cpu": 1}}
POOL = {"resources": {"CPU": 2}, "max_size": 2, "labels": {"tier": "extra"}}
CRASH = """
import ray
ray.init(namespace="orion")
ray.kill(ray.get_actor("orion-scheduler", namespace="orion"), no_restart=False)
print("killed")
"""


def snapshot(version: int, cpu_quota: float, pools: dict[str, Any]) -> dict[str, Any]:
    s = cfg.build(
        {"tenants": {"acme": {"weight": 1}}, "quotas": {"acme": {"cpu": cpu_quota}}, "pools": pools},
        version=version,
    )
    # as the control plane serves it: the canonical text and its hash
    return {"version": s.version, "sha256": s.sha256, "text": s.text()}


def until(fetch: Callable[[], Any], done: Callable[[Any], bool], within_s: float = 120) -> Any:
    """Poll ``fetch`` until ``done`` (a bound on waiting, not a timing assertion)."""
    end = time.monotonic() + within_s
    while True:
        got = fetch()
        if done(got) or time.monotonic() > end:
            return got
        time.sleep(0.3)


def test_a_snapshot_applies_without_a_restart_and_survives_one(region):
    admin = httpx.Client(
        base_url=region["url"], headers={"Authorization": f"Bearer {region['admin']}"}, timeout=60
    )
    acme = httpx.Client(
        base_url=region["url"], headers={"Authorization": f"Bearer {KEYS['acme']}"}, timeout=60
    )
    with admin, acme:
        r = admin.post("/admin/v1/config/apply", json=snapshot(1, 1, {"cpu-extra": POOL}))
        assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
        assert r.json()["changed"]["pools"] == ["cpu-extra"]
        # the tenant's key still works (a snapshot carries no keys), and its new quota holds work
        first = acme.post("/api/v1/workloads", json=SLEEPER)
        assert first.status_code == 202, first.text
        first_id = first.json()["workload_id"]
        until(lambda: acme.get(f"/api/v1/workloads/{first_id}").json(), lambda w: w["status"] == "running")
        second_id = acme.post("/api/v1/workloads", json=QUICK).json()["workload_id"]
        why = until(
            lambda: acme.get(f"/api/v1/workloads/{second_id}/explain").json(),
            lambda e: "quota" in str(e),
            within_s=60,
        )
        assert "quota" in str(why), why
        assert acme.get(f"/api/v1/workloads/{second_id}").json()["status"] == "queued"
        # the new pool reached the autoscaler on its next step, with no restart
        seen = until(
            lambda: admin.get("/admin/v1/config/applied").json(),
            lambda a: "cpu-extra" in a["autoscaler_pools"],
        )
        assert seen["pools"] == ["cpu-extra"] and "cpu-extra" in seen["autoscaler_pools"], seen

        # v2: the quota raised and the pool changed → the held workload runs while the first still does
        r = admin.post("/admin/v1/config/apply", json=snapshot(2, 2, {"cpu-extra": {**POOL, "max_size": 4}}))
        assert r.status_code == 200 and r.json()["changed"] == {"pools": ["cpu-extra"], "quotas": ["acme"]}, (
            r.text
        )
        done = until(
            lambda: acme.get(f"/api/v1/workloads/{second_id}").json(), lambda w: w["status"] == "completed"
        )
        assert done["status"] == "completed", done
        assert acme.get(f"/api/v1/workloads/{first_id}").json()["status"] == "running"
        # a stale push is refused and changes nothing
        assert admin.post("/admin/v1/config/apply", json=snapshot(1, 1, {})).status_code == 409

        p = subprocess.run(
            [sys.executable, "-c", CRASH],
            env=dict(region["env"], RAY_ADDRESS=f"127.0.0.1:{region['ports']['ray']}"),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert p.returncode == 0 and "killed" in p.stdout, p.stderr[-2000:]
        after = until(
            lambda: admin.get("/admin/v1/config/applied"),
            lambda r: r.status_code == 200 and r.json()["version"] == 2,
        )
        assert after.status_code == 200 and after.json()["version"] == 2, after.text
        assert after.json()["sha256"] == snapshot(2, 2, {"cpu-extra": {**POOL, "max_size": 4}})["sha256"]
        acme.delete(f"/api/v1/workloads/{first_id}")
