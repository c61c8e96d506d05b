"""Where snapshots are kept: a local directory or an S3 bucket (through a boto3 client the caller
owns: its credentials and endpoint, e.g. a moto server on loopback in tests).

Each target stores opaque objects by name (``<snapshot>.db.gz``, ``<snapshot>.manifest.json``).
The manifest is written last, so a listing (by manifests) never shows a half-copied snapshot.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Optional, Protocol
from urllib.parse import urlparse

from ..store.files import PRIVATE_FILE, private_dir
from .manifest import DATA_SUFFIX, MANIFEST_SUFFIX, is_snapshot_name


class Target(Protocol):
    """A place snapshots are stored."""

    def put(self, local: Path, name: str) -> None:
        """Copy the local file ``local`` to the object ``name``."""

    def get(self, name: str, local: Path) -> None:
        """Copy the object ``name`` to the local file ``local``; ``FileNotFoundError`` if absent."""

    def read_text(self, name: str) -> str: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> list[str]:
        """Every object's name."""

    def describe(self) -> str: ...


def snapshots(target: Target) -> list[str]:
    """The complete snapshots' names, oldest first (those whose manifest was written)."""
    names = target.names()
    return sorted(
        n[: -len(MANIFEST_SUFFIX)]
        for n in names
        if n.endswith(MANIFEST_SUFFIX) and is_snapshot_name(n[: -len(MANIFEST_SUFFIX)])
    )


class LocalTarget:
    """A directory (0700 when Orion creates it; the files 0600: they hold every tenant's data)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser()

    def put(self, local: Path, name: str) -> None:
        private_dir(self.root)
        part = self.root / f".{name}.part"
        # created 0600 before a byte is written: a snapshot holds every tenant's data
        fd = os.open(part, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as out, open(local, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, self.root / name)

    def get(self, name: str, local: Path) -> None:
        shutil.copyfile(self.root / name, local)

    def read_text(self, name: str) -> str:
        return (self.root / name).read_text()

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.is_file()]

    def describe(self) -> str:
        return str(self.root)


class S3Target:
    """``s3://bucket/prefix`` through ``client`` (a boto3 S3 client)."""

    def __init__(self, bucket: str, prefix: str, client: Any):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, local: Path, name: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(name))

    def get(self, name: str, local: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(name), str(local))
        except Exception as exc:
            if "404" in str(exc) or "NoSuchKey" in str(exc) or "Not Found" in str(exc):
                raise FileNotFoundError(f"s3://{self.bucket}/{self._key(name)}") from None
            raise

    def read_text(self, name: str) -> str:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except Exception as exc:
            if "NoSuchKey" in str(exc) or "404" in str(exc):
                raise FileNotFoundError(f"s3://{self.bucket}/{self._key(name)}") from None
            raise
        return body.read().decode()

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def names(self) -> list[str]:
        out: list[str] = []
        start = f"{self.prefix}/" if self.prefix else ""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            out += [o["Key"][len(start) :] for o in page.get("Contents", [])]
        return [n for n in out if "/" not in n]

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def s3_client(region: Optional[str] = None, endpoint_url: Optional[str] = None) -> Any:
    """A boto3 S3 client from the usual AWS chain (``orion-ray[aws]``)."""
    try:
        import boto3
    except ImportError:  # pragma: no cover - boto3 is in the aws and test extras
        raise RuntimeError("S3 backups need boto3 (pip install 'orion-ray[aws]')") from None
    return boto3.client("s3", region_name=region, endpoint_url=endpoint_url)


def open_target(where: str, *, region: Optional[str] = None, endpoint_url: Optional[str] = None) -> Target:
    """``DIR`` or ``s3://bucket/prefix`` as a target."""
    if where.startswith("s3://"):
        u = urlparse(where)
        if not u.netloc:
            raise ValueError(f"{where!r}: an S3 target is s3://bucket/prefix")
        return S3Target(u.netloc, u.path, s3_client(region, endpoint_url))
    return LocalTarget(where)


def data_name(snapshot: str) -> str:
    return snapshot + DATA_SUFFIX


def manifest_name(snapshot: str) -> str:
    return snapshot + MANIFEST_SUFFIX
