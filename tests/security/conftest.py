"""The attack suite's live Orion: one `orion up` (a subprocess, as a user runs it) for the whole
session, with two tenants that must not reach each other, and helpers to call it as each of them.

Every module in ``tests/security/`` reads as a list of what was tried against the trust boundary
(``README.md`` → trust model) and what Orion answered.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_orion import BIN, orion_up

ENDED = ("completed", "failed", "cancelled")
TENANT_KEYS = {"alice": "alice-secret-key-0123456789", "bob": "bob-secret-key-0123456789"}
CONFIG = """\
orion:
  scheduler: {pin_single_bundle_tasks: true}
  tenants:
    - {id: alice, weight: 1, api_key_env: ORION_KEY_ALICE}
    - {id: bob, weight: 1, api_key_env: ORION_KEY_BOB}
"""


@dataclass
class Live:
    """A running Orion: its URL, the admin key, the tenants' keys and the CLI's environment."""

    url: str
    admin_key: str
    env: dict[str, str]
    home: Path
    ports: dict[str, int]
    keys: dict[str, str] = field(default_factory=lambda: dict(TENANT_KEYS))

    def headers(self, who: str) -> dict[str, str]:
        """Authorization for ``who``: ``"admin"`` or a tenant id."""
        key = self.admin_key if who == "admin" else self.keys[who]
        return {"Authorization": f"Bearer {key}"}

    def client(self, who: str) -> httpx.Client:
        """An HTTP client to the API as ``who`` (close it, or use it in a ``with``)."""
        return httpx.Client(base_url=self.url, headers=self.headers(who), timeout=60)

    def orion(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
        """Run the ``orion`` CLI against this Orion."""
        p = subprocess.run(
            [str(BIN / "orion"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and p.returncode != 0:
            raise AssertionError(f"orion {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    def wait(self, who: str, wid: str, done: tuple[str, ...] = ENDED, within_s: float = 90) -> dict:
        """Poll ``wid`` as ``who`` until its status is one of ``done``; the body either way (a
        bound on waiting, not an assertion: the caller asserts the status)."""
        with self.client(who) as c:
            end = time.monotonic() + within_s
            while True:
                body = c.get(f"/api/v1/workloads/{wid}").json()
                if body["status"] in done or time.monotonic() > end:
                    return body
                time.sleep(0.2)

    def submit(self, who: str, spec: dict[str, Any]) -> httpx.Response:
        """POST a workload as ``who``."""
        with self.client(who) as c:
            return c.post("/api/v1/workloads", json=spec)


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Any:
    """One `orion up` for the attack suite (4 CPUs, 2 fake GPUs), stopped by `orion down` once the
    package's last test is done (not at the session's end: an idle Orion would load every later test)."""
    home = tmp_path_factory.mktemp("orion-security")
    aws = {"AWS_ACCESS_KEY_ID": "AKIAORIONLIVETEST", "AWS_SECRET_ACCESS_KEY": "aws-secret-never-in-ray"}
    with orion_up(home, CONFIG, TENANT_KEYS, extra_env=aws) as (creds, env, ports):
        yield Live(url=creds["url"], admin_key=creds["api_key"], env=env, home=home, ports=ports)
