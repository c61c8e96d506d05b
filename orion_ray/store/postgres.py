"""The PostgreSQL store: the same interface, queries and transactions as ``SQLiteStore`` (it is
one, over a ``PgConnection``), for a store that outlives the head and is shared by several API
replicas and a control plane (docs/store-postgres.md).

Writers are serialised by a transaction-scoped advisory lock (``BEGIN IMMEDIATE`` in the shared
code), so the single-writer assumption the queue limits and ``request_id`` idempotency rest on
holds across processes; the unique index on ``(tenant_id, request_id)`` stays as a second guard.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from . import dialect
from .guard import FileIdentity
from .pg_connection import PgConnection
from .schema import SCHEMA_VERSION, check_version, migrate
from .sqlite import SQLiteStore


class PostgresStore(SQLiteStore):
    """``SQLiteStore``'s methods on a PostgreSQL database named by ``dsn`` (never logged; errors
    name the host and database only). ``read_only`` sessions refuse writes; the schema is then the
    writers' to create. ``busy_timeout_ms`` bounds a wait for the write lock (``lock_timeout``)."""

    def __init__(
        self,
        dsn: str,
        synchronous: str = "normal",
        read_only: bool = False,
        *,
        busy_timeout_ms: int = 5000,
    ):
        self.read_only = read_only
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._lock = threading.Lock()
        self.quarantined: dict[str, str] = {}
        # the single writer's fence (store/lease.Fence), checked inside every write like SQLite's
        self.fence: Optional[Any] = None
        self._db = PgConnection(dsn, read_only=read_only, lock_timeout_ms=busy_timeout_ms)  # type: ignore[assignment]
        self.path = self._db.name  # what messages show: host, port, database
        self._identity = FileIdentity(None)  # no file to be replaced under the connection
        if read_only:
            check_version(self._db, self.path)  # type: ignore[arg-type]
            return
        if check_version(self._db, self.path) < SCHEMA_VERSION:  # type: ignore[arg-type]
            with self._lock, self._tx():
                for stmt in dialect.PRELUDE:
                    self._db.execute(stmt)
                migrate(self._db, self.path)  # type: ignore[arg-type]

    def check_file(self) -> None:
        """No file: the server's health is what ``ping`` asks."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the server cannot answer."""
        self._query("SELECT 1", ())
