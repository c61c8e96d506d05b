"""`orion up` with the PostgreSQL store: a task runs to completion; the head goes (`orion down`,
its ORION_HOME thrown away) and a new `orion up` on the same database has the workload and its
history; the API replica answers from PostgreSQL (no SQLite file is ever made)."""

from __future__ import annotations

import time

import httpx
import pytest

from orion_ray.store.postgres import PostgresStore
from tests.live_orion import orion_up

KEYS = {"alice": "alice-postgres-key-0123456789"}
CONFIG = """\
orion:
  store: {backend: postgres}
  tenants:
    - {id: alice, weight: 1, api_key_env: ORION_KEY_ALICE}
"""


def wait_done(c: httpx.Client, wid: str, within_s: float = 120) -> dict:
    """Poll until the workload ends or ``within_s`` passes (a bound on waiting, not an assertion)."""
    end = time.monotonic() + within_s
    while True:
        body = c.get(f"/api/v1/workloads/{wid}").json()
        if body.get("status") in ("completed", "failed", "cancelled") or time.monotonic() > end:
            return body


@pytest.mark.timeout(900)  # two `orion up`s and two `orion down`s
def test_the_store_outlives_the_head(tmp_path, store_dsn):
    env = {"ORION_STORE_DSN": store_dsn}
    alice = {"Authorization": f"Bearer {KEYS['alice']}"}
    first, second = tmp_path / "head1", tmp_path / "head2"
    first.mkdir()
    second.mkdir()
    with orion_up(first, CONFIG, KEYS, extra_env=env, num_cpus=2) as (creds, _env, _ports):
        with httpx.Client(base_url=creds["url"], headers=alice, timeout=60) as c:
            r = c.post(
                "/api/v1/workloads", json={"workload_type": "task", "function": "math:factorial", "args": [5]}
            )
            assert r.status_code == 202, r.text
            wid = r.json()["workload_id"]
            done = wait_done(c, wid)
            assert done["status"] == "completed" and done["result"] == 120, done
            assert (first / "store.dsn").stat().st_mode & 0o077 == 0  # the DSN file: owner only
    store = PostgresStore(store_dsn, read_only=True)
    history = [h["status"] for h in store.history(wid)]
    assert history[:2] == ["submitted", "queued"] and history[-1] == "completed"
    with orion_up(second, CONFIG, KEYS, extra_env=env, num_cpus=2) as (creds, _env, _ports):
        with httpx.Client(base_url=creds["url"], headers=alice, timeout=60) as c:
            again = c.get(f"/api/v1/workloads/{wid}")
            assert again.status_code == 200 and again.json()["status"] == "completed"
            assert again.json()["result"] == 120
            listed = c.get("/api/v1/workloads").json()["items"]
            assert [w["workload_id"] for w in listed] == [wid]
        admin = {"Authorization": f"Bearer {creds['api_key']}"}
        audit = httpx.get(creds["url"] + "/admin/v1/audit", headers=admin, timeout=60).json()
        items = audit["items"] if isinstance(audit, dict) else audit
        assert any(e.get("target") == wid and e["action"] == "submit" for e in items), audit
    assert [h["status"] for h in store.history(wid)] == history  # nothing ran twice
    assert not (first / "orion.db").exists() and not (second / "orion.db").exists()
