"""One live Orion (`orion up` in a subprocess, real Ray, token auth) shared by the cost and the
tracing tests (docs/cost.md, docs/tracing.md): prices and a tiny daily GPU-hour budget for alice,
and tracing on with every span appended as a JSON line to a file the tracing tests read back
(their tenant is tracy, so the budget and the cost rows stay alice's and bob's)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import pytest

from tests.live_orion import orion_up

KEYS = {
    "alice": "alice-cost-key-0123456789",
    "bob": "bob-cost-key-0123456789",
    "tracy": "tracy-tracing-key-0123456789",
}
# 36 000 per GPU-hour is 10 per GPU-second: a run of a second or two costs whole units, so the
# report's cents show the rate exactly; CPUs are free so the GPU rate is the whole cost.
PRICES = {"gpu": {"default": {"on_demand": 36000.0, "spot": 12000.0}}, "cpu": {"on_demand": 0.0}}
# 0.0001 GPU-hours is 0.36 GPU-seconds: one run of time.sleep(1) spends it
CONFIG = """\
orion:
  scheduler: {{pin_single_bundle_tasks: true}}
  cost:
    currency: USD
    share_idle: none
    prices:
      gpu: {{default: {{on_demand: 36000.0, spot: 12000.0}}}}
      cpu: {{on_demand: 0.0}}
  tenants:
    - {{id: alice, api_key_env: ORION_KEY_ALICE, budget: {{gpu_hours_per_day: 0.0001}}}}
    - {{id: bob, api_key_env: ORION_KEY_BOB}}
    - {{id: tracy, weight: 1, api_key_env: ORION_KEY_TRACY}}
  tracing: {{enabled: true, exporter: file, path: "{spans}", service_name: orion-live}}
  logging: {{format: json}}
"""


class Traced:
    """The running Orion and its spans file."""

    def __init__(self, url: str, admin: str, spans_path: Path):
        self.url, self.admin, self.spans_path = url, admin, spans_path

    def client(self, who: str = "tracy") -> httpx.Client:
        key = self.admin if who == "admin" else KEYS[who]
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def spans(self) -> list[dict[str, Any]]:
        """Every span exported so far (the API replica's and the scheduler's)."""
        if not self.spans_path.exists():
            return []
        return [json.loads(line) for line in self.spans_path.read_text().splitlines() if line.strip()]

    def wait_spans(self, predicate, within_s: float = 60) -> list[dict[str, Any]]:
        """The spans once ``predicate(spans)`` holds, or after ``within_s`` (a bound on waiting:
        spans are written in batches, a moment after a reader sees the row)."""
        end = time.monotonic() + within_s
        while True:
            got = self.spans()
            if predicate(got) or time.monotonic() > end:
                return got
            time.sleep(0.2)


@pytest.fixture(scope="package")
def running(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The package's Orion: ``url``, ``admin``, ``env`` and its spans file."""
    home = tmp_path_factory.mktemp("orion-operations")
    spans_path = home / "spans.jsonl"
    with orion_up(home, CONFIG.format(spans=spans_path), KEYS) as (creds, env, _ports):
        yield SimpleNamespace(url=creds["url"], admin=creds["api_key"], env=env, spans_path=spans_path)


@pytest.fixture(scope="package")
def live(running) -> SimpleNamespace:
    """What the cost tests use: ``url``, ``admin``, ``env``."""
    return running


@pytest.fixture(scope="package")
def traced(running) -> Traced:
    """What the tracing tests use: clients (tracy's by default) and the spans written."""
    return Traced(running.url, running.admin, running.spans_path)
