"""`orion down` ends the scheduler's lease on the store `orion up` recorded — the SQLite file or
the PostgreSQL database (a real server) — so the next scheduler on that store, a different holder,
takes it at once instead of waiting for it to expire."""

from __future__ import annotations

import json

import pytest

from orion_ray import cluster
from orion_ray.store import SQLiteStore
from orion_ray.store import lease as stored
from orion_ray.store.postgres import PostgresStore
from tests.pg_server import PgServer, pg_server  # noqa: F401

TTL = 15.0
NOW = 1000.0


def _held_then_down(store, state: dict, home, monkeypatch) -> None:
    """``old`` holds the lease; `orion down` runs on the recorded state; ``new`` asks at once."""
    assert stored.try_acquire(store, holder="actor:old", now=NOW, ttl_s=TTL).granted
    assert not stored.try_acquire(store, holder="actor:new", now=NOW + 1, ttl_s=TTL).granted
    monkeypatch.setenv("ORION_HOME", str(home))
    (home / "cluster.json").write_text(json.dumps({"started": True, "pid": None, **state}))
    said: list[str] = []
    assert cluster.down(say=said.append) is True
    assert not any("not released" in s for s in said), said
    g = stored.try_acquire(store, holder="actor:new", now=NOW + 1, ttl_s=TTL)
    assert g.granted and g.lease.token == 2  # at once, and the token goes on (fencing holds)


def test_down_releases_the_lease_on_the_sqlite_store(tmp_path, monkeypatch):
    path = str(tmp_path / "orion.db")
    store = SQLiteStore(path)
    try:
        _held_then_down(store, {"store_path": path, "store_backend": "sqlite"}, tmp_path, monkeypatch)
    finally:
        store.close()


def test_down_releases_the_lease_on_the_postgres_store(pg_server: PgServer, tmp_path, monkeypatch):  # noqa: F811
    dsn = pg_server.fresh_dsn()
    dsn_file = tmp_path / "store.dsn"
    dsn_file.write_text(dsn + "\n")
    store = PostgresStore(dsn)
    state = {"store_path": str(tmp_path / "orion.db"), "store_backend": "postgres"}
    state["store_dsn_file"] = str(dsn_file)
    try:
        _held_then_down(store, state, tmp_path, monkeypatch)
    finally:
        store.close()
    assert not (tmp_path / "orion.db").exists()  # no SQLite file made on the way


@pytest.mark.parametrize(
    "state", [{}, {"store_backend": "postgres"}, {"store_backend": "sqlite", "store_path": "/none/x.db"}]
)
def test_nothing_recorded_nothing_released(state):
    assert stored.release_recorded(state) is False
