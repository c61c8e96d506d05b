"""Live checks of issue 15's serving gaps closed on branch ``serving`` (docs/serving-hop.md,
docs/serving-limits.md), for the lead to fold into the serving live package.

Fixture needed: one `orion up` with the test engine (real Ray, Serve, token auth) — here a
module-scoped one from ``tests/live_orion.py``'s ``orion_up``, so this file runs on its own:
``python -m pytest tests/serving_extra_live.py``. Folded into a package that already has an
`orion up`, its tenants need alice's ``serving_limits`` on model ``split`` (CONFIG below) and models
``promo``, ``split``, ``where`` and ``gpuscale`` must be free.

- a rolling release that completes moves the model's base URL to the promoted version;
- a serving limit at a model's base URL holds for the model, not for each of its replicas;
- the serving manager reads where each replica runs (pool and market of its node) from Serve;
- a model with a GPU utilisation target runs on Orion's Serve autoscaling policy.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional

import httpx
import pytest

from tests.live_orion import orion_up

pytestmark = pytest.mark.e2e

KEYS = {"alice": "alice-extra-key-0123456789abcdef"}
# alice: a high request rate (the API's own limit stays out of the way) and, on model ``split``
# only, 1 request a second with bursts of 4 — the serving limit under test
CONFIG = """\
orion:
  tenants:
    - id: alice
      api_key_env: ORION_KEY_ALICE
      rate_limit: {per_tenant_rps: 2000, burst: 2000}
      serving_limits: {models: {split: {requests_per_second: 1, burst: 4}}}
"""
WAIT_S = 240  # a bound on waiting on a loaded 2-core machine, not a timing assertion
VERSION = "x-orion-model-version"


def until(what: str, probe: Callable[[], Optional[Any]], within_s: float = WAIT_S) -> Any:
    end = time.monotonic() + within_s
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < end, f"waited {within_s}s for {what}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("orion-serving-extra")
    with orion_up(home, CONFIG, KEYS) as (creds, env, ports):
        yield SimpleNamespace(url=creds["url"], admin=creds["api_key"], env=env, ports=ports)


def client(live, who: str = "admin") -> httpx.Client:
    key = live.admin if who == "admin" else KEYS[who]
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def deploy(c: httpx.Client, **spec) -> None:
    r = c.post("/internal/deployments/create", json={"engine": "test", "tenant_id": "alice", **spec})
    assert r.status_code == 201, r.text


def status(c: httpx.Client, dep_id: str) -> dict:
    r = c.get(f"/internal/deployments/{dep_id}/status")
    assert r.status_code == 200, r.text
    return r.json()


def healthy(c: httpx.Client, dep_id: str, n: int) -> dict:
    return until(
        f"{dep_id} healthy with {n} replica(s)",
        lambda: (lambda s: s if s["status"] == "healthy" and s["running_replicas"] == n else None)(
            status(c, dep_id)
        ),
    )


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
    with client(live) as admin:
        deploy(admin, model_id="promo", version="v1", replicas=1)
        deploy(admin, model_id="promo", version="v2", replicas=1)
        healthy(admin, "promo--v1", 1)
        healthy(admin, "promo--v2", 1)
        assert status(admin, "promo--v1")["base_url"] == "/models/promo/v1"
        r = admin.put(
            "/internal/models/promo/release",
            json={
                "model_id": "promo",
                "stable": "v1",
                "candidate": "v2",
                "strategy": "rolling",
                "rolling": {"maxSurge": 1, "maxUnavailable": 0, "progressDeadline": "3m"},
            },
        )
        assert r.status_code == 200, r.text
        rel = until(
            "the rolling release to finish",
            lambda: (lambda x: x if x["phase"] != "running" else None)(
                admin.get("/internal/models/promo/release").json()
            ),
        )
        assert rel["phase"] == "promoted", rel
        assert status(admin, "promo--v2")["base_url"] == "/models/promo/v1"
        assert status(admin, "promo--v1")["base_url"] is None
        kinds = [
            e["kind"] for e in admin.get("/internal/events", params={"model_id": "promo"}).json()["items"]
        ]
        assert "base_url_moved" in kinds
    with client(live, "alice") as c:  # the base URL is answered by v2's running replica
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
    with client(live) as admin:
        deploy(admin, model_id="split", version="v1", replicas=2)
        healthy(admin, "split--v1", 2)
    with client(live, "alice") as c:
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
    with client(live) as admin:
        deploy(admin, model_id="where", version="v1", replicas=2)
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
    with client(live) as admin:
        auto = {
            "min_replicas": 1,
            "max_replicas": 2,
            "initial_replicas": 2,
            "downscale_delay": "1s",
            "target_gpu_utilization": 50,
        }
        deploy(admin, model_id="gpuscale", version="v1", autoscaling=auto)
        healthy(admin, "gpuscale--v1", 2)
        healthy(admin, "gpuscale--v1", 1)  # the policy decided: idle, one replica
    policy = in_cluster(
        live,
        "from orion_ray.serving.replica_status import instance_details; "
        "d = instance_details()['applications']['orion-llm-gpuscale--v1']['deployments']['LLMReplica']; "
        "out = d['deployment_config']['autoscaling_config']['policy']",
    )
    assert policy["policy_function"] == "orion_ray.serving.gpu_policy:GpuUtilizationPolicy", policy
