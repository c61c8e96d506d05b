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
    with orion_up(home, CONFIG, {"acme": "acme-serving-release-key-0123"}) as (creds, _env, _ports):
        headers = {"Authorization": f"Bearer {creds['api_key']}"}
        with httpx.Client(base_url=creds["url"], headers=headers, timeout=120) as client:
            yield client
