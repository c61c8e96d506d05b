"""A PostgreSQL connection (psycopg 3) that answers like the ``sqlite3.Connection`` the store and
its users were written against: ``execute``/``executemany`` with SQLite's SQL (translated by
``dialect``), cursors with ``fetchone``/``fetchall``/``lastrowid``/``rowcount``, and errors as
``sqlite3``'s classes, so the store's fault handling (a 503 for an unavailable store, a constraint
as an ``IntegrityError``) holds unchanged.

``BEGIN IMMEDIATE`` becomes ``BEGIN`` plus a transaction-scoped advisory lock: one write
transaction at a time per database, as SQLite's single writer, whichever process (scheduler, API
replicas) writes. Reads outside a transaction run in autocommit and never wait for it.
"""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from typing import Any, Iterable, Iterator, Optional, Sequence

from . import dialect


def redact(dsn: str) -> str:
    """``dsn`` with any password removed (URL ``user:secret@`` or ``password=secret``): what an
    error message or a log line may show."""
    out = re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:***@", dsn)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", out, flags=re.I)


def describe(dsn: str) -> str:
    """A short name for the database (host, port, database; never the password) for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        d = conninfo_to_dict(dsn)
    except Exception:  # unparsable: say so without echoing it
        return "postgresql (unparsable dsn)"
    host = d.get("host") or "localhost"
    return f"postgresql://{d.get('user') or ''}@{host}:{d.get('port') or 5432}/{d.get('dbname') or ''}"


class PgCursor:
    """The part of ``sqlite3.Cursor`` Orion uses, over a psycopg cursor's result."""

    def __init__(self, rows: list[tuple], rowcount: int, lastrowid: Optional[int]):
        self._rows = rows
        self._pos = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.row_factory = None  # accepted and ignored: rows are tuples

    def fetchone(self) -> Optional[tuple]:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list[tuple]:
        rest, self._pos = self._rows[self._pos :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[tuple]:
        while (row := self.fetchone()) is not None:
            yield row


def _plain(v: Any) -> Any:
    """PostgreSQL's ``numeric`` (``SUM`` of integers) as SQLite returns it: an int, or a float."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


class PgConnection:
    """One psycopg connection in autocommit mode; transactions are explicit (``Transaction``)."""

    def __init__(self, dsn: str, *, read_only: bool = False, lock_timeout_ms: int = 2000):
        self._dsn = dsn
        self.read_only = read_only
        self.lock_timeout_ms = max(1, int(lock_timeout_ms))  # 0 would mean "wait for ever"
        self.name = describe(dsn)
        self._conn: Any = None
        self._in_tx = False
        self._connect()

    def _connect(self) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise sqlite3.OperationalError(f"cannot connect to {self.name}: {redact(str(exc))}") from None
        self._conn.execute(f"SET lock_timeout = {self.lock_timeout_ms}")
        # named for its store's schema: a restore finds Orion's sessions on it (backup/pg_backup.py)
        self._conn.execute(
            "SELECT set_config('application_name', 'orion:' || COALESCE(current_schema(), ''), false)"
        )
        if self.read_only:
            self._conn.execute("SET default_transaction_read_only = on")

    def _ready(self) -> Any:
        """The connection, made again when the server dropped it (never inside a transaction:
        what it wrote is gone, the transaction fails)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._in_tx:
                raise sqlite3.OperationalError(f"the connection to {self.name} was lost in a transaction")
            self._connect()
        return self._conn

    # -- the sqlite3.Connection surface ----------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        word = sql.lstrip()[:16].upper()
        if word.startswith("BEGIN"):
            self._run("BEGIN", None)
            self._in_tx = True
            if "IMMEDIATE" in word or "EXCLUSIVE" in word:
                try:
                    self._run("SELECT pg_advisory_xact_lock(%s)", (dialect.WRITE_LOCK_KEY,))
                except BaseException:  # as SQLite's failed BEGIN IMMEDIATE: no transaction left
                    self.execute("ROLLBACK")
                    raise
            return PgCursor([], -1, None)
        if word.startswith("COMMIT") or word.startswith("ROLLBACK") or word.startswith("END"):
            self._in_tx = False
            if self._conn is not None and not self._conn.closed:
                self._run(word.split()[0] if not word.startswith("END") else "COMMIT", None)
            return PgCursor([], -1, None)
        p = dialect.pragma(sql)
        if p is not None:
            return self._pragma(p)
        text, returning = dialect.translate(sql)
        if dialect.is_script(text):
            for stmt in dialect.statements(text):
                self._run(stmt, None)
            return PgCursor([], -1, None)
        return self._run(text, tuple(params), returning)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PgCursor:
        text, _ = dialect.translate(sql, many=True)
        rows = [tuple(p) for p in seq]
        if not rows:
            return PgCursor([], 0, None)
        conn = self._ready()
        try:
            with conn.cursor() as cur:
                cur.executemany(text, rows)
                return PgCursor([], cur.rowcount, None)
        except Exception as exc:
            raise _as_sqlite(exc, self.name) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # -- internals -------------------------------------------------------------------------------
    def _run(self, text: str, params: Optional[tuple], returning: Optional[str] = None) -> PgCursor:
        conn = self._ready()
        try:
            with conn.cursor() as cur:
                cur.execute(text, params)
                rows = [tuple(map(_plain, r)) for r in cur.fetchall()] if cur.description else []
                last = int(rows[0][0]) if returning and rows else None
                return PgCursor([] if returning else rows, cur.rowcount, last)
        except Exception as exc:
            raise _as_sqlite(exc, self.name) from exc

    def _pragma(self, p: dialect.Pragma) -> PgCursor:
        """SQLite's ``PRAGMA``s Orion's schema code uses, answered from PostgreSQL's catalog."""
        if p.name == "user_version" and p.arg is None:
            have = self._run("SELECT to_regclass(%s)", (dialect.VERSION_TABLE,)).fetchone()
            if not have or have[0] is None:
                return PgCursor([(0,)], 1, None)
            row = self._run(f"SELECT MAX(version) FROM {dialect.VERSION_TABLE}", ()).fetchone()
            return PgCursor([(int(row[0]) if row and row[0] is not None else 0,)], 1, None)
        if p.name == "user_version":
            self._run(f"CREATE TABLE IF NOT EXISTS {dialect.VERSION_TABLE} (version INTEGER NOT NULL)", None)
            self._run(f"DELETE FROM {dialect.VERSION_TABLE}", None)
            self._run(f"INSERT INTO {dialect.VERSION_TABLE}(version) VALUES (%s)", (int(str(p.arg)),))
            return PgCursor([], 1, None)
        if p.name == "table_info":
            return self._run(
                "SELECT ordinal_position, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
                (p.arg,),
            )
        return PgCursor([], -1, None)  # journal_mode, synchronous, busy_timeout: SQLite's own


def _as_sqlite(exc: BaseException, name: str) -> BaseException:
    """A psycopg error as the ``sqlite3`` class the store's callers handle: the server's state
    (connection, lock timeout, serialization, shutdown) → ``OperationalError`` (503); a broken
    constraint → ``IntegrityError``; anything else (a bug) → ``ProgrammingError``."""
    import psycopg

    text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return sqlite3.OperationalError(f"database is locked ({name}: {text})")
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, psycopg.InternalError)):
        return sqlite3.OperationalError(f"{name}: {text}")
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return sqlite3.OperationalError(f"attempt to write a readonly database ({name})")
    if isinstance(exc, psycopg.Error):
        return sqlite3.ProgrammingError(f"{name}: {text}")
    return exc
