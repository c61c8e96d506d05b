"""`orion up` with the PostgreSQL store: tasks run to completion; `orion backup` while it runs
(pg_dump, online); the head goes (`orion down`, which ends the scheduler's lease; its ORION_HOME
thrown away); the store is damaged and `orion restore` brings it back; a new `orion up` on the same
database has every acknowledged workload and its history; the API replica answers from PostgreSQL
(no SQLite file is ever made)."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from orion_ray.store import lease as stored
from orion_ray.store.postgres import PostgresStore
from tests.live_orion import BIN, orion_up

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


def orion(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "orion"), *args], env=env, capture_output=True, text=True, timeout=300)


def restore_when_free(env: dict, *args: str, within_s: float = 30) -> subprocess.CompletedProcess:
    """`orion restore`, again while the server still lists a session of the stopped head (its
    backends end a moment after their clients; a bound on waiting, not a timing test)."""
    end = time.monotonic() + within_s
    while True:
        p = orion(env, "restore", *args)
        if p.returncode == 0 or "session" not in p.stderr or time.monotonic() > end:
            return p
        time.sleep(0.5)


@pytest.mark.timeout(900)  # two `orion up`s and two `orion down`s
def test_the_store_outlives_the_head_and_is_restored_from_a_backup(tmp_path, store_dsn):
    env = {"ORION_STORE_DSN": store_dsn}
    alice = {"Authorization": f"Bearer {KEYS['alice']}"}
    first, second = tmp_path / "head1", tmp_path / "head2"
    first.mkdir()
    second.mkdir()
    backups = str(tmp_path / "backups")
    with orion_up(first, CONFIG, KEYS, extra_env=env, num_cpus=2) as (creds, cli_env, _ports):
        cfg = ["--config", str(first / "orion.yaml")]
        with httpx.Client(base_url=creds["url"], headers=alice, timeout=60) as c:
            ids = []
            for n in (5, 6, 7):
                r = c.post(
                    "/api/v1/workloads",
                    json={"workload_type": "task", "function": "math:factorial", "args": [n]},
                )
                assert r.status_code == 202, r.text
                ids.append(r.json()["workload_id"])
            wid = ids[0]
            for w in ids:
                done = wait_done(c, w)
                assert done["status"] == "completed", done
            assert wait_done(c, wid)["result"] == 120
            assert (first / "store.dsn").stat().st_mode & 0o077 == 0  # the DSN file: owner only
            taken = orion(cli_env, "backup", "--to", backups, *cfg, "-o", "json")  # online
            assert taken.returncode == 0, taken.stderr
            snap = json.loads(taken.stdout)
            assert snap["backend"] == "postgres" and snap["workloads"] == 3, snap
            refused = orion(cli_env, "restore", snap["name"], "--from", backups, "--yes", *cfg)
            assert refused.returncode == 2 and "orion down" in refused.stderr, refused.stderr
            late = {"workload_type": "task", "function": "math:factorial", "args": [3]}
            assert c.post("/api/v1/workloads", json=late).status_code == 202  # after the snapshot: not in it
    store = PostgresStore(store_dsn, read_only=True)
    try:
        history = [h["status"] for h in store.history(wid)]
        assert history[:2] == ["submitted", "queued"] and history[-1] == "completed"
        lease = stored.read(store)
        assert lease is not None and lease.token >= 1 and lease.expires_at == 0.0  # `orion down` ended it
    finally:
        store.close()
    import psycopg

    with psycopg.connect(store_dsn, autocommit=True) as raw:  # damage
        raw.execute("DELETE FROM audit")
        raw.execute("DROP TABLE workloads CASCADE")
    restored = restore_when_free(cli_env, snap["name"], "--from", backups, "--yes", *cfg, "-o", "json")
    assert restored.returncode == 0, restored.stderr
    assert "before_restore" in json.loads(restored.stdout)["previous"]
    with orion_up(second, CONFIG, KEYS, extra_env=env, num_cpus=2) as (creds, _env, _ports):
        with httpx.Client(base_url=creds["url"], headers=alice, timeout=60) as c:
            again = c.get(f"/api/v1/workloads/{wid}")
            assert again.status_code == 200 and again.json()["status"] == "completed"
            assert again.json()["result"] == 120
            listed = c.get("/api/v1/workloads").json()["items"]
            assert sorted(w["workload_id"] for w in listed) == sorted(ids)  # every acknowledged one
            assert all(w["status"] == "completed" for w in listed)
        admin = {"Authorization": f"Bearer {creds['api_key']}"}
        audit = httpx.get(creds["url"] + "/admin/v1/audit", headers=admin, timeout=60).json()
        items = audit["items"] if isinstance(audit, dict) else audit
        assert any(e.get("target") == wid and e["action"] == "submit" for e in items), audit
    store = PostgresStore(store_dsn, read_only=True)
    try:
        assert [h["status"] for h in store.history(wid)] == history  # nothing ran twice
    finally:
        store.close()
    assert not (first / "orion.db").exists() and not (second / "orion.db").exists()
