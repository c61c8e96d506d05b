"""One live Orion (`orion up` in a subprocess, real Ray, token auth) for the backup package, with
scheduled snapshots and the Litestream replica turned on (see ``test_restore_drill.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.live_orion import orion_up

KEYS = {"alice": "alice-backup-key-0123456789"}


def config(home: Path) -> str:
    return f"""\
orion:
  tenants:
    - {{id: alice, weight: 1, api_key_env: ORION_KEY_ALICE}}
  backup:
    enabled: true
    interval: 1h
    keep: 5
    dir: {home}/backups
    replica: {{enabled: true, url: "file://{home}/replica", sync_interval: 200ms}}
"""


class Live:
    """The running Orion: URL, admin key, the environment of its CLI, its home and ports."""

    def __init__(self, creds: dict[str, Any], env: dict[str, str], ports: dict[str, int], home: Path):
        self.url, self.admin, self.env, self.ports, self.home = (
            creds["url"],
            creds["api_key"],
            env,
            ports,
            home,
        )

    def client(self, who: str = "admin") -> httpx.Client:
        key = self.admin if who == "admin" else KEYS[who]
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[Live]:
    from orion_ray.backup.replica import litestream_bin

    try:
        litestream_bin()
    except RuntimeError as exc:  # the drill runs with the replica on
        if os.environ.get("ORION_REQUIRE_LITESTREAM") == "1":
            raise
        pytest.skip(str(exc))
    home = tmp_path_factory.mktemp("orion-backup")
    with orion_up(home, config(home), KEYS, num_cpus=2) as (creds, env, ports):
        yield Live(creds, env, ports, home)
