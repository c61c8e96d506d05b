"""What keeps a store fault visible and safe: the database file's identity, checked before any
commit, and SQLite's own errors turned into the contract's 503.

A SQLite connection keeps its file open: when the file is deleted or replaced under it, every
later write still "succeeds" into an unlinked inode and is lost at the next restart. So the
store remembers the file's (device, inode) when it opens it and compares before each commit (a
``stat``: microseconds), at each scheduler tick and on ``/health``; a mismatch refuses the write
and nothing is acknowledged.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Optional

from ..errors import StoreUnavailable
from .files import PRIVATE_FILE, private_file

__all__ = ["FileIdentity", "is_fault", "private_file", "tighten", "unavailable"]


def tighten(path: Path | str) -> None:
    """Mode 0600 on a database's ``-wal``/``-shm``/``-journal`` files that exist (an older Orion
    left them world-readable)."""
    for suffix in ("-wal", "-shm", "-journal"):
        side = Path(str(path) + suffix)
        try:
            os.chmod(side, PRIVATE_FILE)
        except FileNotFoundError:
            pass


class FileIdentity:
    """The (device, inode) of the database file as it was opened; ``check`` raises
    ``StoreUnavailable`` once the path names another file, or none."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self.ident = _identity(path) if path else None

    def problem(self) -> Optional[str]:
        """Why the open connection no longer writes to the file at ``path`` (None when it does)."""
        if self.path is None:
            return None
        now = _identity(self.path)
        if now is None:
            return f"the database file {self.path} was deleted while open"
        if now != self.ident:
            return f"the database file {self.path} was replaced while open"
        return None

    def check(self) -> None:
        """Raise ``StoreUnavailable`` when the file was deleted or replaced."""
        why = self.problem()
        if why is not None:
            raise StoreUnavailable(why + "; nothing is written until Orion restarts on it", retry_after=30)


def _identity(path: str) -> Optional[tuple[int, int]]:
    """(device, inode) of the file at ``path``, or None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    """A SQLite error that is the store's state, not the caller's input, as the contract's 503."""
    text = str(exc)
    retry = 1 if ("locked" in text or "busy" in text) else 5
    return StoreUnavailable(f"the store is busy or unavailable ({text}); retry", retry_after=retry)


def is_fault(exc: BaseException) -> bool:
    """SQLite errors that say the store is unavailable (locked, I/O, not a database), as
    opposed to a constraint a caller broke (``IntegrityError``) or a bug (``ProgrammingError``)."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError
