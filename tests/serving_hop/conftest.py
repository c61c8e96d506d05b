"""One live Orion (`orion up` in a subprocess: real Ray, Serve, keys in the store) shared by the
first-hop tests, with one model of tenant alice deployed in two versions and a 10 % canary."""

from __future__ import annotations

import time
from typing import Iterator

import httpx
import pytest

from tests.live_orion import orion_up

KEYS = {"alice": "alice-hop-key-0123456789abcdef", "bob": "bob-hop-key-0123456789abcdef"}
# alice's request rate above the 300-request canary test's pace: the API's default (50/s, bursts of
# 100) holds at the base URL too, and a quiet machine answers faster than that
CONFIG = """\
orion:
  tenants:
    - {id: alice, weight: 1, api_key_env: ORION_KEY_ALICE, rate_limit: {per_tenant_rps: 2000, burst: 2000}}
    - {id: bob, weight: 1, api_key_env: ORION_KEY_BOB}
"""
MODEL = "hop"


class Live:
    """The running Orion: its URL and admin key; ``client(who)`` talks with ``who``'s key."""

    def __init__(self, url: str, admin: str):
        self.url, self.admin = url, admin

    def client(self, who: str = "alice", **kw) -> httpx.Client:
        key = self.admin if who == "admin" else KEYS.get(who, who)
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kw)


def _wait(pred, within_s: float, what: str):
    """Poll ``pred`` until it is truthy (a bound on waiting, not a timing assertion)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {within_s:g}s")


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("orion-serving-hop")
    with orion_up(home, CONFIG, KEYS) as (creds, _env, _ports):
        lv = Live(creds["url"], creds["api_key"])
        with lv.client("admin") as c:
            for version in ("v1", "v2"):
                r = c.post(
                    "/internal/deployments/create",
                    json={"model_id": MODEL, "version": version, "engine": "test", "tenant_id": "alice"},
                )
                assert r.status_code == 201, r.text

            def healthy():
                states = [c.get(f"/internal/deployments/{MODEL}--{v}/status").json() for v in ("v1", "v2")]
                return all(s["status"] == "healthy" and s["running_replicas"] == 1 for s in states)

            _wait(healthy, 180, "both versions healthy")
            r = c.put(
                f"/internal/models/{MODEL}/release",
                json={
                    "model_id": MODEL,
                    "strategy": "canary",
                    "stable": "v1",
                    "candidate": "v2",
                    "steps": [{"weight": 10, "duration": "24h"}, {"weight": 100, "duration": 0}],
                    "success_criteria": {"error_rate": 1.0, "min_requests": 1},
                },
            )
            assert r.status_code == 200, r.text
            base = f"/models/{MODEL}/v1"
            _wait(lambda: c.get(f"{base}/models").status_code == 200, 60, "the model's base URL")
        yield lv
