"""Which store a process opens: ``store.backend`` (``sqlite``, the embedded default, or
``postgres``), with the DSN resolved from the configuration, a file or the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from .sqlite import SQLiteStore

DSN_ENV = "ORION_STORE_DSN"


def resolve_dsn(cfg: Any, environ: Optional[dict[str, str]] = None) -> str:
    """``cfg.dsn``, else the first line of ``cfg.dsn_file``, else ``$ORION_STORE_DSN``.
    ``ValueError`` naming the field (never a value) when there is none or the file cannot be read."""
    env = os.environ if environ is None else environ
    if cfg.dsn:
        return str(cfg.dsn).strip()
    if cfg.dsn_file:
        try:
            text = Path(cfg.dsn_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ValueError(f"store.dsn_file: cannot be read ({exc.strerror})") from None
        if not text:
            raise ValueError("store.dsn_file: the file is empty")
        return text.splitlines()[0].strip()
    if env.get(DSN_ENV, "").strip():
        return env[DSN_ENV].strip()
    raise ValueError(f"store.dsn: backend postgres needs store.dsn, store.dsn_file or ${DSN_ENV}")


def open_store(cfg: Any, *, read_only: bool = False, busy_timeout_ms: Optional[int] = None) -> SQLiteStore:
    """The store ``cfg`` (a ``StoreConfig``) names: a ``SQLiteStore`` on its path, or a
    ``PostgresStore`` on its DSN (same interface, same SQL)."""
    busy = int(cfg.busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms)
    if getattr(cfg, "backend", "sqlite") == "postgres":
        from .postgres import PostgresStore

        return PostgresStore(resolve_dsn(cfg), cfg.synchronous, read_only=read_only, busy_timeout_ms=busy)
    return SQLiteStore(cfg.resolved_path(), cfg.synchronous, read_only=read_only, busy_timeout_ms=busy)


def prepare_for_cluster(cfg: Any, home: Path) -> None:
    """``orion up``'s step for ``cfg`` (a ``StoreConfig``, changed in place) before anything starts.
    SQLite: refuse a file a newer Orion wrote. PostgreSQL: the DSN, wherever it came from, is
    written to ``<home>/store.dsn`` (0600) unless it is already in ``dsn_file``, and only the file's
    path travels to the actors and the API replica (Serve keeps an application's arguments where
    workload code can read them; the environment of Ray's processes is an allowlist); then the
    server must answer and its schema must not be newer than this Orion's."""
    if getattr(cfg, "backend", "sqlite") != "postgres":
        from .schema import check_file

        check_file(cfg.resolved_path())
        return
    import sqlite3

    from .files import private_dir, write_private

    dsn = resolve_dsn(cfg)
    if not cfg.dsn_file or cfg.dsn:
        target = private_dir(home) / "store.dsn"
        write_private(target, dsn + "\n")
        cfg.dsn, cfg.dsn_file = None, str(target)
    try:
        open_store(cfg, read_only=True).close()
    except sqlite3.Error as exc:  # already redacted: host and database, never the password
        raise RuntimeError(f"store: PostgreSQL is not reachable: {exc}") from None
