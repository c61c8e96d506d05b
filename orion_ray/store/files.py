"""Files Orion writes for itself in ORION_HOME (the store, its WAL and shared memory, the Ray
head's log, the cluster state, credentials) are its owner's only: 0600 files, a 0700 directory
when Orion creates it. They hold key hashes, specs, results and logs of every tenant."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path | str) -> Path:
    """Make ``path`` (and parents) if missing, the new ones 0700; an existing one is left as the
    operator set it."""
    p = Path(path)
    p.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    return p


def private_file(path: Path | str) -> None:
    """Create ``path`` (empty) with mode 0600 if it does not exist, and make it 0600 if it does."""
    p = Path(path)
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_APPEND, PRIVATE_FILE)
    os.close(fd)
    os.chmod(p, PRIVATE_FILE)


def open_private(path: Path | str, *, append: bool = True) -> BinaryIO:
    """``open(path, "ab")`` (or ``"wb"``) with the file created, or made, 0600."""
    flags = os.O_CREAT | os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, "ab" if append else "wb")


def write_private(path: Path | str, text: str) -> None:
    """Replace ``path``'s content with ``text``, the file 0600."""
    with open_private(path, append=False) as f:
        f.write(text.encode())
