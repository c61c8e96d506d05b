"""The attack suite's live Orion: one `orion up` (a subprocess, as a user runs it) for the whole
session, with two tenants that must not reach each other, and helpers to call it as each of them.

Every module in ``tests/security/`` reads as a list of what was tried against the trust boundary
(``README.md`` → trust model) and what Orion answered.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

BIN = Path(sys.executable).parent
TENANT_KEYS = {"alice": "alice-secret-key-0123456789", "bob": "bob-secret-key-0123456789"}
CONFIG = """\
orion:
  scheduler: {pin_single_bundle_tasks: true}
  tenants:
    - {id: alice, weight: 1, api_key_env: ORION_KEY_ALICE}
    - {id: bob, weight: 1, api_key_env: ORION_KEY_BOB}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def submit(self, who: str, spec: dict[str, Any]) -> httpx.Response:
        """POST a workload as ``who``."""
        with self.client(who) as c:
            return c.post("/api/v1/workloads", json=spec)


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> Any:
    """One `orion up` for the attack suite (4 CPUs, 2 fake GPUs), stopped by `orion down`."""
    home = tmp_path_factory.mktemp("orion-security")
    env = dict(os.environ, ORION_HOME=str(home), PATH=f"{BIN}:{os.environ['PATH']}")
    for var in ("ORION_URL", "ORION_API_KEY"):
        env.pop(var, None)
    env.update({f"ORION_KEY_{t.upper()}": k for t, k in TENANT_KEYS.items()})
    env.update(AWS_ACCESS_KEY_ID="AKIAORIONLIVETEST", AWS_SECRET_ACCESS_KEY="aws-secret-never-in-ray")
    env["RAY_AUTH_MODE"] = "token"  # a driver started with this env can join Orion's head (token auth)
    ports = {"api": _free_port(), "ray": _free_port(), "dashboard": _free_port()}
    (home / "orion.yaml").write_text(CONFIG)
    cmd = [str(BIN / "orion"), "up", "--config", str(home / "orion.yaml"), "--num-cpus", "4"]
    cmd += ["--num-gpus", "2", "--port", str(ports["api"]), "--ray-port", str(ports["ray"])]
    cmd += ["--dashboard-port", str(ports["dashboard"])]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert p.returncode == 0, f"orion up failed:\n{p.stdout}\n{p.stderr}"
        creds = json.loads((home / "credentials").read_text())
        yield Live(url=creds["url"], admin_key=creds["api_key"], env=env, home=home, ports=ports)
    finally:
        subprocess.run([str(BIN / "orion"), "down"], env=env, capture_output=True, text=True, timeout=120)
