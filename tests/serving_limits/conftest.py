"""One live Orion (`orion up` in a subprocess, real Ray and Serve, token auth) shared by the serving
limits tests: alice and bob with serving limits, prices for CPU-hours and tokens, and two test-engine
models deployed once — ``pub`` (shared) and ``chat`` (alice's) — docs/serving-limits.md."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Iterator

import httpx
import pytest

from tests.live_orion import orion_up

KEYS = {"alice": "alice-limits-key-0123456789", "bob": "bob-limits-key-0123456789"}
# 36 per vCPU-hour is 0.01 per vCPU-second; 10 per 1,000 tokens: both show in cents at once
PRICES = {"cpu": {"on_demand": 36.0}, "tokens": {"default": 10.0}}
CONFIG = """\
orion:
  cost:
    currency: USD
    share_idle: none
    prices:
      cpu: {on_demand: 36.0}
      tokens: {default: 10.0}
  tenants:
    - id: alice
      api_key_env: ORION_KEY_ALICE
      serving_limits: {requests_per_second: 0.2, burst: 3}
    - id: bob
      api_key_env: ORION_KEY_BOB
      serving_limits: {models: {pub: {tokens_per_minute: 40}}}
"""
MODELS = [
    {"model_id": "pub", "version": "v1", "engine": "test", "cpus_per_replica": 0.25},
    {"model_id": "chat", "version": "v1", "engine": "test", "cpus_per_replica": 0.5, "tenant_id": "alice"},
]


def client(live, who: str) -> httpx.Client:
    key = live.admin if who == "admin" else KEYS[who]
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def wait_healthy(admin: httpx.Client, dep_id: str, within_s: float = 180) -> None:
    """Poll until the deployment runs one replica (a bound on waiting, not a timing assertion)."""
    end = time.monotonic() + within_s
    while True:
        d = admin.get(f"/internal/deployments/{dep_id}/status").json()
        if d.get("status") == "healthy" and d.get("running_replicas") == 1:
            return
        assert time.monotonic() < end, d
        time.sleep(0.5)


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("orion-serving-limits")
    with orion_up(home, CONFIG, KEYS) as (creds, env, ports):
        ns = SimpleNamespace(url=creds["url"], admin=creds["api_key"], env=env)
        with client(ns, "admin") as admin:
            for spec in MODELS:
                r = admin.post("/internal/deployments/create", json=spec)
                assert r.status_code == 201, r.text
            for spec in MODELS:
                wait_healthy(admin, f"{spec['model_id']}--v1")
        yield ns
