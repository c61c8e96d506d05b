"""One live Orion (`orion up` in a subprocess, real Ray, token auth) shared by the cost tests:
prices and a tiny daily GPU-hour budget for alice in its orion.yaml (docs/cost.md)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Iterator

import pytest

from tests.live_orion import orion_up

KEYS = {"alice": "alice-cost-key-0123456789", "bob": "bob-cost-key-0123456789"}
# 36 000 per GPU-hour is 10 per GPU-second: a run of a second or two costs whole units, so the
# report's cents show the rate exactly; CPUs are free so the GPU rate is the whole cost.
PRICES = {"gpu": {"default": {"on_demand": 36000.0, "spot": 12000.0}}, "cpu": {"on_demand": 0.0}}
# 0.0001 GPU-hours is 0.36 GPU-seconds: one run of time.sleep(1) spends it
CONFIG = """\
orion:
  scheduler: {pin_single_bundle_tasks: true}
  cost:
    currency: USD
    share_idle: none
    prices:
      gpu: {default: {on_demand: 36000.0, spot: 12000.0}}
      cpu: {on_demand: 0.0}
  tenants:
    - {id: alice, api_key_env: ORION_KEY_ALICE, budget: {gpu_hours_per_day: 0.0001}}
    - {id: bob, api_key_env: ORION_KEY_BOB}
"""


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("orion-cost")
    with orion_up(home, CONFIG, KEYS) as (creds, env, ports):
        yield SimpleNamespace(url=creds["url"], admin=creds["api_key"], env=env)
