"""The base URL and replicas' placement on the live Orion (docs/serving-hop.md,
docs/serving-limits.md): a rolling release that completes moves the model's base URL to the
promoted version; a serving limit at a model's base URL holds for the model, not for each of its
replicas (alice: 1 request a second in bursts of 4 on ``split``); the serving manager reads where
each replica runs (pool and market of its node) from Serve; a model with a GPU utilisation target
runs on Orion's Serve autoscaling policy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from typing import Any

import pytest

from .conftest import deploy, healthy, model_events, release_ended, start_rolling, status, until

pytestmark = pytest.mark.e2e

VERSION = "x-orion-model-version"


def in_cluster(live, code: str) -> Any:
    """Run ``code`` (it sets ``out``) in a driver joined to Orion's Ray cluster; ``out`` as JSON."""
    script = (
        "import json, ray; "
        f"ray.init(address='127.0.0.1:{live.ports['ray']}', logging_level='ERROR', log_to_driver=False); "
        f"{code}; print(json.dumps(out))"
    )
    p = subprocess.run(
        [sys.executable, "-c", script], env=live.env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_completed_rolling_release_moves_the_base_url_to_the_promoted_version(live):
    with live.client("admin") as admin:
        deploy(admin, tenant_id="alice", model_id="promo", version="v1", replicas=1)
        deploy(admin, tenant_id="alice", model_id="promo", version="v2", replicas=1)
        healthy(admin, "promo--v1", 1)
        healthy(admin, "promo--v2", 1)
        assert status(admin, "promo--v1")["base_url"] == "/models/promo/v1"
        start_rolling(admin, "promo", "3m")
        rel = until("the rolling release to finish", lambda: release_ended(admin, "promo"))
        assert rel["phase"] == "promoted", rel
        assert status(admin, "promo--v2")["base_url"] == "/models/promo/v1"
        assert status(admin, "promo--v1")["base_url"] is None
        kinds = [
            e["kind"] for e in admin.get("/internal/events", params={"model_id": "promo"}).json()["items"]
        ]
        assert "base_url_moved" in kinds
    with live.client("alice") as c:  # the base URL is answered by v2's running replica
        answer = until(
            "the base URL on the promoted version",
            lambda: (lambda a: a if a.status_code == 200 else None)(
                c.post("/models/promo/v1/completions", json={"prompt": "hi", "max_tokens": 2})
            ),
        )
        assert answer.headers[VERSION] == "v2"
    # in Serve itself: the promoted version's application holds the route, the replaced one none
    # (the answers above say v2 either way: the old front forwarded 100 % to it)
    routes = in_cluster(
        live,
        "from orion_ray.serving.replica_status import instance_details; "
        "apps = instance_details().get('applications') or {}; "
        "out = {a: d.get('route_prefix') for a, d in apps.items() if a.startswith('orion-llm-promo')}",
    )
    assert routes == {"orion-llm-promo--v1": None, "orion-llm-promo--v2": "/models/promo"}, routes


def test_a_serving_limit_at_the_base_url_holds_for_the_model_not_per_replica(live):
    """alice: 1 request a second, bursts of 4, on ``split`` (two replicas). Held per replica, the
    two would admit 8 at once; held for the model, each replica holds 1/2 of it."""
    with live.client("admin") as admin:
        deploy(admin, tenant_id="alice", model_id="split", version="v1", replicas=2)
        healthy(admin, "split--v1", 2)
    with live.client("alice") as c:
        until(
            "the base URL of split",
            lambda: c.get("/models/split/v1/models").status_code == 200,
        )
        start = time.monotonic()
        codes = [
            c.post("/models/split/v1/completions", json={"prompt": f"p{i}", "max_tokens": 1}).status_code
            for i in range(20)
        ]
        elapsed = time.monotonic() - start
    assert set(codes) <= {200, 429}, codes
    admitted = codes.count(200)
    # the model's bound over the burst: its depth plus what it refilled meanwhile (1/s), plus one
    # request of rounding per replica; per-replica limits would admit 8 plus 2/s
    assert 1 <= admitted <= 4 + math.ceil(elapsed * 1.0) + 1, (admitted, elapsed, codes)
    assert 429 in codes


def test_the_manager_reads_each_replicas_pool_and_market_from_serve(live):
    """``ServeDeployer.placements`` on real Serve: every running replica is counted under its
    node's pool and market (the local head has no ``orion.io/pool`` label: ``unknown``,
    on-demand); pricing by pool is covered by tests/unit/test_serving_limits_usage.py."""
    with live.client("admin") as admin:
        deploy(admin, tenant_id="alice", model_id="where", version="v1", replicas=2)
        healthy(admin, "where--v1", 2)
    got = in_cluster(
        live,
        "from orion_ray.serving.deployer import ServeDeployer; "
        "out = {a: [[p, m, n] for (p, m), n in w.items()] for a, w in ServeDeployer().placements().items()}",
    )
    assert got["orion-llm-where--v1"] == [["unknown", "on_demand", 2]]


def test_a_model_with_a_gpu_utilisation_target_runs_on_orions_serve_policy(live):
    """``autoscaling.target_gpu_utilization``: Serve's controller loads Orion's policy and runs it
    (no GPU reports here, so it decides as Serve's own: an idle model goes 2 → 1)."""
    with live.client("admin") as admin:
        auto = {
            "min_replicas": 1,
            "max_replicas": 2,
            "initial_replicas": 2,
            "downscale_delay": "5s",
            "target_gpu_utilization": 50,
        }
        deploy(admin, tenant_id="alice", model_id="gpuscale", version="v1", autoscaling=auto)
        # the policy decided: idle, 2 → 1 (seen as Serve's decision in the scaling events)
        decided = until(
            "the policy's decision",
            lambda: [
                (e["before"], e["after"])
                for e in model_events(admin, "gpuscale")
                if e["trigger"] == "serve_autoscaler" and e["outcome"] == "completed"
            ],
        )
        assert decided == [(2, 1)], decided
        healthy(admin, "gpuscale--v1", 1)
    policy = in_cluster(
        live,
        "from orion_ray.serving.replica_status import instance_details; "
        "d = instance_details()['applications']['orion-llm-gpuscale--v1']['deployments']['LLMReplica']; "
        "out = d['deployment_config']['autoscaling_config']['policy']",
    )
    assert policy["policy_function"] == "orion_ray.serving.gpu_policy:GpuUtilizationPolicy", policy
