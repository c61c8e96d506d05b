"""One live regional Orion (`orion up` in a subprocess, real Ray, token auth) shared by this
package's tests: a region that applies control-plane config snapshots."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.live_orion import orion_up

KEYS = {"acme": "acme-regions-config-key-0123456789"}
CONFIG = """\
orion:
  tenants:
    - {id: acme, weight: 1, api_key_env: ORION_KEY_ACME}
"""


@pytest.fixture(scope="package")
def region(tmp_path_factory) -> Iterator[dict]:
    """``{url, admin, env, ports}`` of the running region."""
    home = tmp_path_factory.mktemp("orion-regions-config")
    with orion_up(home, CONFIG, KEYS) as (creds, env, ports):
        yield {"url": creds["url"], "admin": creds["api_key"], "env": env, "ports": ports}
