"""The per-backend backup interface: what ``orion backup`` / ``orion restore`` ask of a store.

SQLite's is ``SqliteBackup`` (its online backup API); PostgreSQL's is ``PgBackup`` (``pg_dump``
from one exported snapshot; a restore swaps the store's schema in one transaction, see
``pg_backup.py``). ``backup_for`` picks the implementation from ``orion.store``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..errors import OrionError
from .manifest import Manifest


class SnapshotRejected(OrionError):
    """A snapshot failed verification: nothing was swapped (``details`` lists each problem)."""

    code = "snapshot_rejected"
    status_code = 422


class RestoreRefused(OrionError):
    """A restore that must not run now (Orion is running on the store, or it was not confirmed)."""

    code = "restore_refused"
    status_code = 409


class StoreBackup(Protocol):
    """Snapshots of one store, and restores into it."""

    backend: str

    def snapshot(self, workdir: Path, *, name: str, now: float) -> tuple[Manifest, Path]:
        """A consistent copy of the store taken while it is written, compressed into
        ``workdir``; returns its manifest and the compressed file."""

    def verify(self, data: Path, manifest: Manifest, *, workdir: Path) -> Path:
        """Check ``data`` against ``manifest`` (checksum, integrity, schema version, row
        counts); return the ready-to-install database, or raise ``SnapshotRejected``."""

    def install(self, verified: Path, *, now: float) -> dict[str, Any]:
        """Swap ``verified`` in as the store, atomically; the previous store is kept aside
        (its location is in the result)."""

    def in_use(self) -> list[str]:
        """Processes on this machine that have the store open (a restore refuses then)."""

    def restore_dir(self) -> Path:
        """A directory on the store's filesystem for ``verify``'s output (renames stay atomic)."""


def backup_for(store: Any) -> StoreBackup:
    """The backup implementation for ``orion.store`` (a ``StoreConfig``)."""
    backend = getattr(store, "backend", "sqlite")
    if backend == "postgres":
        from .pg_backup import PgBackup, dsn_of

        return PgBackup(dsn_of(store))
    if backend != "sqlite":
        raise OrionError(f"backups of the {backend!r} store are not implemented here (docs/backups.md)")
    from .sqlite_backup import SqliteBackup

    return SqliteBackup(store.resolved_path())
