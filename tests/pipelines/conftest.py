"""One live Orion (`orion up` in a subprocess, real Ray, token auth) shared by every pipeline test
module in this package (see ``live.py``)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.live_orion import orion_up
from tests.pipelines.live import CONFIG, KEYS, Live


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("orion-pipelines")
    with orion_up(home, CONFIG, KEYS) as (creds, env, ports):
        yield Live(creds["url"], creds["api_key"], env, ports)
