"""``SqliteBackup``: online snapshots of the SQLite store (its backup API) and verified restores.

Snapshot: a read-only connection copies every page in ONE backup step, i.e. inside one read
transaction, so the copy is the store as of one commit even while the scheduler and the API write
(WAL readers never block the writer). The copy is counted, then gzip-compressed with its sha256.

Restore: the compressed file's sha256 against the manifest, then decompressed next to the store
(same filesystem), ``PRAGMA integrity_check``, its schema version (≤ the code's, = the manifest's)
and every table's row count; only then the swap: the old store is checkpointed and hard-linked
aside (``<store>.before-restore-<time>``), its ``-wal``/``-shm`` moved aside with it, and the
verified file renamed over the store (one atomic ``rename``: at every instant the path names a
whole database).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, BinaryIO

from .._version import __version__
from ..store.files import PRIVATE_FILE, private_dir
from ..store.schema import SCHEMA_VERSION
from .base import SnapshotRejected
from .manifest import DATA_SUFFIX, Manifest, problems

CHUNK = 1 << 20
_SIDES = ("-wal", "-shm", "-journal")


def table_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Rows per table (SQLite's own bookkeeping tables left out)."""
    names = [
        r[0]
        for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
    ]
    return {n: int(db.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]) for n in sorted(names)}


def _max_seq(db: sqlite3.Connection) -> int:
    try:
        return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM workloads").fetchone()[0])
    except sqlite3.Error:
        return 0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _copy(src: BinaryIO, dst: BinaryIO) -> str:
    """Copy ``src`` into ``dst``; the sha256 of what was copied."""
    h = hashlib.sha256()
    while block := src.read(CHUNK):
        h.update(block)
        dst.write(block)
    return h.hexdigest()


def _private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, PRIVATE_FILE)
    return os.fdopen(fd, "wb")


class SqliteBackup:
    """Backups of the SQLite store at ``path``."""

    backend = "sqlite"

    def __init__(self, path: str):
        self.path = Path(path).expanduser()

    # -- snapshot ------------------------------------------------------------------------------
    def snapshot(self, workdir: Path, *, name: str, now: float) -> tuple[Manifest, Path]:
        """See ``StoreBackup.snapshot``."""
        if not self.path.exists():
            raise FileNotFoundError(f"there is no store at {self.path}")
        private_dir(workdir)
        copy = workdir / f".{name}.db"
        try:
            src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            dst = sqlite3.connect(copy)
            try:
                src.backup(dst)  # pages=-1: every page in one step, one read transaction
            finally:
                src.close()
            try:
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                tables = table_counts(dst)
                schema = int(dst.execute("PRAGMA user_version").fetchone()[0])
                max_seq = _max_seq(dst)
            finally:
                dst.close()
            os.chmod(copy, PRIVATE_FILE)
            data = workdir / (name + DATA_SUFFIX)
            with open(copy, "rb") as raw, _private(data) as out:
                with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=6, mtime=0) as gz:
                    db_sha = _copy(raw, gz)  # type: ignore[arg-type]
                out.flush()
                os.fsync(out.fileno())
            manifest = Manifest(
                name=name,
                backend=self.backend,
                created_at=now,
                orion_version=__version__,
                schema_version=schema,
                tables=tables,
                sha256=file_sha256(data),
                db_sha256=db_sha,
                size_bytes=data.stat().st_size,
                db_size_bytes=copy.stat().st_size,
                max_seq=max_seq,
            )
            return manifest, data
        finally:
            copy.unlink(missing_ok=True)

    # -- verify --------------------------------------------------------------------------------
    def restore_dir(self) -> Path:
        return private_dir(self.path.parent)

    def verify(self, data: Path, manifest: Manifest, *, workdir: Path) -> Path:
        """See ``StoreBackup.verify``; the verified database is left in ``workdir``."""
        sha = file_sha256(data)
        if sha != manifest.sha256:  # nothing else is read from a file that is not the one described
            raise _rejected(
                manifest.name,
                [f"sha256 mismatch: the file has {sha[:16]}…, the manifest says {manifest.sha256[:16]}…"],
            )
        out = workdir / f".{manifest.name}.restoring-{secrets.token_hex(3)}"
        try:
            try:
                with gzip.open(data, "rb") as gz, _private(out) as f:
                    db_sha = _copy(gz, f)  # type: ignore[arg-type]
                    f.flush()
                    os.fsync(f.fileno())
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise _rejected(manifest.name, [f"cannot decompress: {exc}"]) from None
            found = self.check_database(out, manifest, db_sha256=db_sha)
            if found:
                raise _rejected(manifest.name, found)
            return out
        except BaseException:
            out.unlink(missing_ok=True)
            raise

    def check_database(self, db_path: Path, manifest: Manifest | None, *, db_sha256: str | None) -> list[str]:
        """Problems of a decompressed database: integrity, schema version, row counts (against
        ``manifest`` when there is one: a replica's restore has none)."""
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            try:
                integrity = "\n".join(r[0] for r in db.execute("PRAGMA integrity_check"))
                schema = int(db.execute("PRAGMA user_version").fetchone()[0])
                tables = table_counts(db) if integrity == "ok" else None
            finally:
                db.close()
        except sqlite3.Error as exc:
            return [f"not a readable SQLite database: {exc}"]
        if manifest is None:
            out = [] if integrity == "ok" else [f"PRAGMA integrity_check failed: {integrity[:300]}"]
            if schema > SCHEMA_VERSION:
                out.append(f"schema version {schema} is newer than this Orion's ({SCHEMA_VERSION})")
            if tables is not None and "workloads" not in tables:
                out.append("it has no workloads table: not an Orion store")
            return out
        return problems(
            manifest,
            sha256=manifest.sha256,
            integrity=integrity,
            schema_version=schema,
            code_schema_version=SCHEMA_VERSION,
            tables=tables if tables is not None else {},
            db_sha256=db_sha256,
        )

    # -- install -------------------------------------------------------------------------------
    def install(self, verified: Path, *, now: float) -> dict[str, Any]:
        """See ``StoreBackup.install``."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
        aside = self.path.with_name(f"{self.path.name}.before-restore-{stamp}")
        n = 1
        while aside.exists():  # two restores in one millisecond: never overwrite a kept store
            aside = self.path.with_name(f"{self.path.name}.before-restore-{stamp}-{n}")
            n += 1
        kept = None
        if self.path.exists():
            self._checkpoint()
            os.link(self.path, aside)  # the old store stays whole at its path until the rename
            kept = str(aside)
        for side in _SIDES:  # a stale WAL next to the new file would be replayed into it
            p = Path(str(self.path) + side)
            if p.exists():
                os.replace(p, Path(str(aside) + side))
        os.replace(verified, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself is durable
        finally:
            os.close(fd)
        return {"store": str(self.path), "previous": kept}

    def _checkpoint(self) -> None:
        """Fold the old store's WAL into it, so the copy kept aside is whole by itself."""
        try:
            db = sqlite3.connect(self.path, timeout=5)
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()
        except sqlite3.Error:
            pass  # unreadable (it may be why we restore): kept aside as it is, WAL beside it

    def in_use(self) -> list[str]:
        """Processes that hold the store (or its WAL) open, found through ``/proc/<pid>/fd``."""
        wanted = {str(self.path)} | {str(self.path) + s for s in _SIDES}
        out = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                fds = list((proc / "fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) in wanted:
                        cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                        out.append(f"pid {proc.name} ({cmd.strip()[:80]})")
                        break
                except OSError:
                    continue
        return out


def _rejected(name: str, found: list[str]) -> SnapshotRejected:
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return SnapshotRejected(
        f"snapshot {name} is refused: {found[0]}{more}",
        [{"field": "snapshot", "problem": p} for p in found],
    )
