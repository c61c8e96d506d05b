"""The live Orion the pipeline tests share (started by ``conftest.py``, one per package) and the
helpers they use to talk to it.

Tenants alice and bob; 4 CPUs, 2 fake GPUs. Node functions live in ``tests/pipelines/nodes.py``
(shipped to the workers on PYTHONPATH through the run's ``runtime_params.env``; the operator
submits for the tenant, as the attack suite does with its helper module).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

ROOT = str(Path(__file__).resolve().parents[2])
KEYS = {"alice": "alice-pipelines-key-0123456789", "bob": "bob-pipelines-key-0123456789"}
CONFIG = """\
orion:
  scheduler: {pin_single_bundle_tasks: true}
  tenants:
    - {id: alice, weight: 1, api_key_env: ORION_KEY_ALICE}
    - {id: bob, weight: 1, api_key_env: ORION_KEY_BOB}
"""


class Live:
    """The running Orion: its URL, admin key, environment (for `orion` CLI calls and drivers)
    and ports."""

    def __init__(self, url: str, admin: str, env: dict[str, str], ports: dict[str, int]):
        self.url, self.admin, self.env, self.ports = url, admin, env, ports

    def client(self, who: str = "alice") -> httpx.Client:
        """An HTTP client with ``who``'s key (``admin`` or a tenant)."""
        key = self.admin if who == "admin" else KEYS[who]
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def submit(self, body: dict[str, Any], tenant: str = "alice") -> str:
        """Submit a run for ``tenant`` with the admin key; its submission id."""
        with self.client("admin") as c:
            r = c.post(f"/api/orch/submit?tenant_id={tenant}", json=body)
        assert r.status_code == 202, r.text
        return r.json()["submission_id"]

    def status(self, sid: str, who: str = "alice") -> dict[str, Any]:
        with self.client(who) as c:
            r = c.get(f"/api/orch/status/{sid}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_run(self, sid: str, who: str = "alice", within_s: float = 180) -> dict[str, Any]:
        """Poll the run until it ends, or ``within_s`` passes (a bound on waiting, not a timing
        assertion: the caller asserts the state)."""
        end = time.monotonic() + within_s
        with self.client(who) as c:
            while True:
                r = c.get(f"/api/orch/status/{sid}")
                got = r.json()
                if r.status_code == 200 and got["state"] not in ("running", "cancelling"):
                    return got
                if time.monotonic() > end:
                    return got
                time.sleep(0.3)

    @staticmethod
    def node_env(runs_dir: Path, **extra: str) -> dict[str, str]:
        """``runtime_params.env`` that ships ``tests/pipelines/nodes.py`` to the workers and has
        each node record its runs under ``runs_dir``."""
        return {"PYTHONPATH": ROOT, "PIPELINE_RUNS_DIR": str(runs_dir), **extra}


def runs_of(runs_dir: Path) -> dict[str, int]:
    """How many times each node function ran (one line per run in ``runs_dir/<name>``)."""
    return {p.name: len(p.read_text().splitlines()) for p in runs_dir.iterdir()}
