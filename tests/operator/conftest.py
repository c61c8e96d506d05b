"""The operator's tests. The live ones share one `orion up` per package (``live_orion``) and run
the real operator (kopf) against kmock's Kubernetes API emulator (``kube.py``).

The status timer ticks every second here (``ORION_OPERATOR_SYNC_S``, read when the handlers are
imported, so it is set before any test module imports them)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

os.environ.setdefault("ORION_OPERATOR_SYNC_S", "1")

# 16 logical CPUs (Ray's accounting, not cores): the example asks 2 CPUs for each of its 3
# replicas, and a rollout runs the new version beside the old one before the old one goes
NUM_CPUS = 16
CONFIG = """\
orion:
  scheduler: {pin_single_bundle_tasks: true}
  tenants:
    - {id: default, weight: 1}
    - {id: team-a, weight: 1}
"""


@pytest.fixture(scope="package")
def live_orion(tmp_path_factory) -> Iterator[dict]:
    from tests.live_orion import orion_up

    home = tmp_path_factory.mktemp("orion-operator")
    with orion_up(home, CONFIG, {}, num_cpus=NUM_CPUS) as (creds, env, ports):
        yield creds


@pytest.fixture(scope="package")
def kube_with_operator(live_orion) -> Iterator:
    """kmock's API server with the operator running against it and the live Orion (admin key)."""
    from orion_ray.operator.handlers import OperatorConfig
    from tests.operator.kube import api_server, operator

    config = OperatorConfig(url=live_orion["url"], api_key=live_orion["api_key"], tenant_mode="namespace")
    with api_server() as kube, operator(kube, config):
        yield kube
