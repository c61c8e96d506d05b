"""The single-writer lease in the store (table ``leases``, schema 9), and the fence that refuses
an older holder's writes.

Each call is one write transaction (``BEGIN IMMEDIATE``), so two schedulers asking at once are
served one after the other, and the decision (``policy/lease.py``) sees the row as it is. The
fence (``Fence``) runs at the start of every write transaction of the store it is set on, inside
that transaction: the token is read under the write lock, so no newer holder can appear between
the check and the commit.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Optional

from ..errors import LeaseLost
from ..policy.lease import SCHEDULER_LEASE, Grant, Lease, acquire, fenced, renew

_COLS = "name, holder, token, expires_at, acquired_at"


def _get(db: sqlite3.Connection, name: str) -> Optional[Lease]:
    row = db.execute(f"SELECT {_COLS} FROM leases WHERE name=?", (name,)).fetchone()
    return None if row is None else Lease(row[0], row[1], int(row[2]), float(row[3]), float(row[4]))


def _put(db: sqlite3.Connection, lease: Lease) -> None:
    db.execute(
        f"INSERT OR REPLACE INTO leases({_COLS}) VALUES (?,?,?,?,?)",
        (lease.name, lease.holder, lease.token, lease.expires_at, lease.acquired_at),
    )


def read(store: Any, name: str = SCHEDULER_LEASE) -> Optional[Lease]:
    """The stored lease (None: never taken)."""
    rows = store._query(f"SELECT {_COLS} FROM leases WHERE name=?", (name,))
    if not rows:
        return None
    r = rows[0]
    return Lease(r[0], r[1], int(r[2]), float(r[3]), float(r[4]))


def try_acquire(store: Any, *, holder: str, now: float, ttl_s: float, name: str = SCHEDULER_LEASE) -> Grant:
    """Take the lease for ``holder`` if ``policy.lease.acquire`` grants it, in one transaction."""
    with store._lock, store._raw_tx():
        grant = acquire(_get(store._db, name), name=name, holder=holder, now=now, ttl_s=ttl_s)
        if grant.granted and grant.lease is not None:
            _put(store._db, grant.lease)
        return grant


def try_renew(
    store: Any, *, holder: str, token: int, now: float, ttl_s: float, name: str = SCHEDULER_LEASE
) -> Optional[Lease]:
    """Extend ``holder``'s lease; None (nothing written) when a newer token holds it."""
    with store._lock, store._raw_tx():
        lease = renew(_get(store._db, name), holder=holder, token=token, now=now, ttl_s=ttl_s)
        if lease is not None:
            _put(store._db, lease)
        return lease


def release(store: Any, *, name: str = SCHEDULER_LEASE, holder: Optional[str] = None) -> bool:
    """End the lease now, keeping its token (the next holder takes the one after): for ``orion
    down``, which has just stopped the holder. ``holder`` given: only if it still holds it."""
    with store._lock, store._raw_tx():
        current = _get(store._db, name)
        if current is None or (holder is not None and current.holder != holder):
            return False
        _put(store._db, Lease(name, current.holder, current.token, 0.0, current.acquired_at))
        return True


def release_file(path: str, name: str = SCHEDULER_LEASE) -> bool:
    """``release`` on the store file at ``path`` (False when there is no such file or no lease)."""
    import os

    from .sqlite import SQLiteStore

    if not os.path.exists(path):
        return False
    store = SQLiteStore(path)
    try:
        return release(store, name=name)
    finally:
        store.close()


def release_recorded(state: dict[str, Any]) -> bool:
    """``release`` on the store ``orion up`` recorded in its state (``orion down``): the SQLite
    file at ``store_path``, or the PostgreSQL database whose DSN is in ``store_dsn_file`` (the
    state holds that file's path, never the DSN). False when there is no store or no lease."""
    if state.get("store_backend") == "postgres":
        if not state.get("store_dsn_file"):
            return False
        from ..config import StoreConfig
        from .open import open_store

        store = open_store(StoreConfig(backend="postgres", dsn_file=state["store_dsn_file"]))
        try:
            return release(store)
        finally:
            store.close()
    return release_file(state["store_path"]) if state.get("store_path") else False


class Fence:
    """Set on a store (``store.fence``): every write transaction of that store first checks that
    no newer token than ``token`` is stored for lease ``name``, and raises ``LeaseLost`` (the
    write is rolled back, nothing committed) when one is. ``refused`` counts refusals, so the
    holder learns of its loss at its next tick even before its renewal is due."""

    def __init__(self, token: int, name: str = SCHEDULER_LEASE):
        self.token = token
        self.name = name
        self.refused = 0

    def check(self, db: sqlite3.Connection) -> None:
        """Raise ``LeaseLost`` when the store holds a newer token (inside the caller's transaction)."""
        row = db.execute("SELECT token, holder FROM leases WHERE name=?", (self.name,)).fetchone()
        if row is not None and fenced(int(row[0]), self.token):
            self.refused += 1
            raise LeaseLost(
                f"write refused: this scheduler's lease (token {self.token}) was taken over by "
                f"{row[1]} (token {row[0]}); it stops acting",
                retry_after=5,
            )
