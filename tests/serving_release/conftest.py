"""One live Orion (`orion up` in a subprocess: real Ray, Serve, the scheduler and the serving
manager) shared by the release and scaling tests of this package."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from tests.live_orion import orion_up

CONFIG = """\
orion:
  tenants:
    - {id: acme, weight: 1, api_key_env: ORION_KEY_ACME}
"""


@pytest.fixture(scope="package")
def admin(tmp_path_factory) -> Iterator[httpx.Client]:
    """An admin HTTP client on the live Orion."""
    home = tmp_path_factory.mktemp("orion-serving-release")
    # a loaded 2-core machine can take Ray's dashboard past its default 60 s to start
    slow = {"RAY_DASHBOARD_STARTUP_TIMEOUT_S": "240"}
    with orion_up(home, CONFIG, {"acme": "acme-serving-release-key-0123"}, extra_env=slow) as (creds, _, _):
        headers = {"Authorization": f"Bearer {creds['api_key']}"}
        with httpx.Client(base_url=creds["url"], headers=headers, timeout=120) as client:
            yield client
