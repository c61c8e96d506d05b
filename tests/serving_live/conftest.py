"""One live Orion (`orion up` in a subprocess: real Ray and Serve, the scheduler, the serving manager,
keys in the store) shared by every serving test of this package: the first hop at a model's own base
URL, per-tenant serving limits and usage, rolling releases and serving's scaling events.

Each test file has its own tenants and models, so their limits and counters do not meet: ``alice``
and ``bob`` (the first hop; ``hop`` deployed in two versions with a 10 % canary; the base-URL
tests' models, alice's 1 request a second on ``split``), ``lima`` and
``limb`` (serving limits; ``pub`` shared and ``chat`` of lima's), ``acme`` (releases; the release
tests deploy their own models)."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Optional

import httpx
import pytest

from tests.live_orion import orion_up

KEYS = {
    "alice": "alice-hop-key-0123456789abcdef",
    "bob": "bob-hop-key-0123456789abcdef",
    "lima": "lima-limits-key-0123456789",
    "limb": "limb-limits-key-0123456789",
    "acme": "acme-serving-release-key-0123",
}
# 36 per vCPU-hour is 0.01 per vCPU-second; 10 per 1,000 tokens: both show in cents at once
PRICES = {"cpu": {"on_demand": 36.0}, "tokens": {"default": 10.0}}
# alice's request rate above the 300-request canary test's pace: the API's default (50/s, bursts of
# 100) holds at the base URL too, and a quiet machine answers faster than that
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
      weight: 1
      api_key_env: ORION_KEY_ALICE
      rate_limit: {per_tenant_rps: 2000, burst: 2000}
      serving_limits: {models: {split: {requests_per_second: 1, burst: 4}}}
    - {id: bob, weight: 1, api_key_env: ORION_KEY_BOB}
    - id: lima
      api_key_env: ORION_KEY_LIMA
      serving_limits: {requests_per_second: 0.2, burst: 3}
    - id: limb
      api_key_env: ORION_KEY_LIMB
      serving_limits: {models: {pub: {tokens_per_minute: 40}}}
    - {id: acme, weight: 1, api_key_env: ORION_KEY_ACME}
"""
HOP = "hop"  # alice's model, v1 stable and v2 a 10 % canary
MODELS = [
    {"model_id": HOP, "version": "v1", "engine": "test", "tenant_id": "alice"},
    {"model_id": HOP, "version": "v2", "engine": "test", "tenant_id": "alice"},
    {"model_id": "pub", "version": "v1", "engine": "test", "cpus_per_replica": 0.25},
    {"model_id": "chat", "version": "v1", "engine": "test", "cpus_per_replica": 0.5, "tenant_id": "lima"},
]
WAIT_S = 240  # a bound on waiting on a loaded 2-core machine, not a timing assertion


class Live:
    """The running Orion: its URL and admin key, the environment and ports `orion up` ran with;
    ``client(who)`` talks with ``who``'s key (a key that is not a tenant's is sent as it is)."""

    def __init__(self, url: str, admin: str, env: dict[str, str], ports: dict[str, int]):
        self.url, self.admin, self.env, self.ports = url, admin, env, ports

    def client(self, who: str = "alice", **kw) -> httpx.Client:
        key = self.admin if who == "admin" else KEYS.get(who, who)
        kw.setdefault("timeout", 120)
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, **kw)


def until(what: str, probe: Callable[[], Optional[Any]], within_s: float = WAIT_S, every: float = 0.3) -> Any:
    """Poll ``probe`` until it returns something truthy, and return it (a bound on waiting, not a
    timing assertion)."""
    end = time.monotonic() + within_s
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < end, f"waited {within_s:g}s for {what}"
        time.sleep(every)


def deploy(c: httpx.Client, **spec) -> None:
    """Create a deployment of the test engine (``spec`` overrides)."""
    r = c.post("/internal/deployments/create", json={"engine": "test", **spec})
    assert r.status_code == 201, r.text


def status(c: httpx.Client, dep_id: str) -> dict:
    """A deployment's status, with its replicas."""
    r = c.get(f"/internal/deployments/{dep_id}/status")
    assert r.status_code == 200, r.text
    return r.json()


def healthy(c: httpx.Client, dep_id: str, n: int) -> dict:
    """Wait until ``dep_id`` is healthy with ``n`` running replicas; returns its listing row."""

    def ok():
        rows = c.get("/internal/deployments", params={"model_id": dep_id.split("--")[0]}).json()["items"]
        d = next((r for r in rows if r["id"] == dep_id), None)
        return d if d and d["status"] == "healthy" and d["running_replicas"] == n else None

    return until(f"{dep_id} healthy with {n}", ok)


def start_rolling(c: httpx.Client, model_id: str, progress_deadline: str) -> None:
    """A rolling release v1 → v2 of ``model_id`` (maxSurge 1, maxUnavailable 0)."""
    rolling = {"maxSurge": 1, "maxUnavailable": 0, "progressDeadline": progress_deadline}
    body = {"model_id": model_id, "stable": "v1", "candidate": "v2", "strategy": "rolling"}
    body["rolling"] = rolling
    r = c.put(f"/internal/models/{model_id}/release", json=body)
    assert r.status_code == 200, r.text


def release_ended(c: httpx.Client, model_id: str) -> Optional[dict]:
    """The release of ``model_id`` once it is no longer running (a probe for ``until``)."""
    rel = c.get(f"/internal/models/{model_id}/release").json()
    return rel if rel["phase"] != "running" else None


def model_events(c: httpx.Client, model_id: str) -> list[dict]:
    """Serving's scaling events of ``model_id``, newest first."""
    items = c.get("/admin/v1/scaling/events", params={"kind": "model", "limit": 200}).json()["items"]
    return [e for e in items if (e.get("details") or {}).get("model_id") == model_id]


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[Live]:
    """The package's Orion with the first hop's and the limits' models deployed and healthy, and
    ``hop``'s 10 % canary started."""
    home = tmp_path_factory.mktemp("orion-serving")
    # a loaded 2-core machine can take Ray's dashboard past its default 60 s to start; logical CPUs
    # enough for every test's replicas at once (the rolling release's surge included)
    slow = {"RAY_DASHBOARD_STARTUP_TIMEOUT_S": "240"}
    with orion_up(home, CONFIG, KEYS, extra_env=slow, num_cpus=16) as (creds, env, ports):
        lv = Live(creds["url"], creds["api_key"], env, ports)
        with lv.client("admin") as c:
            for spec in MODELS:
                deploy(c, **spec)
            for spec in MODELS:
                healthy(c, f"{spec['model_id']}--{spec['version']}", 1)
            r = c.put(
                f"/internal/models/{HOP}/release",
                json={
                    "model_id": HOP,
                    "strategy": "canary",
                    "stable": "v1",
                    "candidate": "v2",
                    "steps": [{"weight": 10, "duration": "24h"}, {"weight": 100, "duration": 0}],
                    "success_criteria": {"error_rate": 1.0, "min_requests": 1},
                },
            )
            assert r.status_code == 200, r.text
            until("the model's base URL", lambda: c.get(f"/models/{HOP}/v1/models").status_code == 200, 60)
        yield lv


@pytest.fixture(scope="package")
def admin(live: Live) -> Iterator[httpx.Client]:
    """An admin HTTP client on the package's Orion."""
    with live.client("admin") as c:
        yield c
