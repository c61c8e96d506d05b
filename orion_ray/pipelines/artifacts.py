"""The artifact store: where a node's large outputs live (issue 16, data between nodes).

A small interface — ``put(key, data) -> uri``, ``get(uri) -> bytes``, ``delete(uri)`` — with two
adapters: ``LocalArtifacts(root)``, a directory (the default, next to the store file under
ORION_HOME), and ``S3Artifacts(bucket, prefix, client)``, a bucket through a boto3 client the caller
makes (so tests point one at a moto server, and Orion's process holds the credentials: tenant code
never does, see docs/pipelines-data.md).

Keys are ``<tenant>/<submission>/<node>/<attempt>/<out>`` (``artifact_key``): each part a plain name,
never ``.``/``..`` nor a ``/``, so a key cannot leave its tenant's namespace. ``get`` and ``delete``
accept only URIs this store made (its root, its bucket and prefix) and, given ``within``, only keys
under that prefix: a URI read from anywhere else is refused, never fetched.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Optional, Protocol

_PART = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class ArtifactError(Exception):
    """An artifact cannot be written or read (a refused URI, a missing object, over a bound)."""


class ArtifactTooLarge(ArtifactError):
    """The artifact is larger than the reader's bound."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"the artifact is {size} bytes, over the {limit}-byte bound")
        self.size, self.limit = size, limit


class ArtifactUnavailable(ArtifactError):
    """The store did not answer (network, permissions): try again later, the data may be fine."""


class ArtifactStore(Protocol):
    """What the controller and the outputs route need of an artifact store."""

    def put(self, key: str, data: bytes) -> str: ...

    def get(self, uri: str, *, within: Optional[str] = None, max_bytes: Optional[int] = None) -> bytes: ...

    def delete(self, uri: str, *, within: Optional[str] = None) -> None: ...


def artifact_key(tenant_id: str, submission_id: str, node_id: str, attempt: int, out: str) -> str:
    """The key of one output of one attempt of one node of one run, namespaced per tenant."""
    return "/".join((tenant_id, submission_id, node_id, str(int(attempt)), out))


def run_prefix(tenant_id: str, submission_id: str) -> str:
    """The key prefix every artifact of one run lives under (``within`` for reads)."""
    return f"{tenant_id}/{submission_id}/"


def check_key(key: str) -> str:
    """``key`` if every part is a plain name (no empty part, no ``.`` or ``..``), else an error."""
    parts = key.split("/")
    if not parts or any(p in (".", "..") or not _PART.match(p) for p in parts):
        raise ArtifactError(f"invalid artifact key {key[:300]!r}")
    return key


def _inside(key: str, within: Optional[str]) -> None:
    if within is not None and not key.startswith(within):
        raise ArtifactError("the artifact is not this run's")


class LocalArtifacts:
    """Artifacts as files under ``root`` (URIs ``file:///<root>/<key>``); writes are atomic
    (a temporary file renamed), so a crash leaves the old object or the new one, never half."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _key_of(self, uri: str) -> str:
        prefix = self.root.as_uri() + "/"
        if not uri.startswith(prefix):
            raise ArtifactError("not an artifact of this store")
        return check_key(uri[len(prefix) :])

    def put(self, key: str, data: bytes) -> str:
        """Write ``data`` under ``key`` (replacing it: a repeated put of an attempt is the same
        bytes); its URI."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        except OSError as exc:
            raise ArtifactUnavailable(f"cannot write artifact {key!r}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.as_uri()

    def get(self, uri: str, *, within: Optional[str] = None, max_bytes: Optional[int] = None) -> bytes:
        """The artifact's bytes (``within``: a key prefix it must be under; ``max_bytes``: a bound)."""
        key = self._key_of(uri)
        _inside(key, within)
        path = self._path(key)
        try:
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                raise ArtifactTooLarge(size, max_bytes)
            return path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"artifact {key!r} is missing") from None
        except OSError as exc:
            raise ArtifactUnavailable(f"cannot read artifact {key!r}: {exc.strerror}") from None

    def delete(self, uri: str, *, within: Optional[str] = None) -> None:
        """Remove the artifact (absent already: nothing to do)."""
        key = self._key_of(uri)
        _inside(key, within)
        self._path(key).unlink(missing_ok=True)


class S3Artifacts:
    """Artifacts as objects in ``bucket`` under ``prefix`` (URIs ``s3://<bucket>/<prefix><key>``),
    through ``client`` (a boto3 S3 client: the caller owns its credentials and endpoint)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        if client is None:
            raise ArtifactError("S3Artifacts needs a boto3 S3 client")
        self.bucket, self.client = bucket, client
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key_of(self, uri: str) -> str:
        head = f"s3://{self.bucket}/{self.prefix}"
        if not uri.startswith(head):
            raise ArtifactError("not an artifact of this store")
        return check_key(uri[len(head) :])

    def put(self, key: str, data: bytes) -> str:
        """Write ``data`` as the object of ``key`` (a put replaces whole: atomic in S3)."""
        name = self.prefix + check_key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)
        except Exception as exc:  # botocore's errors: the reason, without the request's details
            raise ArtifactUnavailable(
                f"cannot write artifact {key!r}: {type(exc).__name__}: {exc}"[:500]
            ) from None
        return f"s3://{self.bucket}/{name}"

    def get(self, uri: str, *, within: Optional[str] = None, max_bytes: Optional[int] = None) -> bytes:
        """The object's bytes (``within``: a key prefix it must be under; ``max_bytes``: a bound,
        checked on the object's length before its body is read)."""
        key = self._key_of(uri)
        _inside(key, within)
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise ArtifactError(f"artifact {key!r} is missing") from None
            raise ArtifactUnavailable(f"cannot read artifact {key!r}: {type(exc).__name__}"[:500]) from None
        size = int(got.get("ContentLength") or 0)
        body = got["Body"]
        try:
            if max_bytes is not None and size > max_bytes:
                raise ArtifactTooLarge(size, max_bytes)
            data = body.read() if max_bytes is None else body.read(max_bytes + 1)
        finally:
            body.close()
        if max_bytes is not None and len(data) > max_bytes:
            raise ArtifactTooLarge(len(data), max_bytes)
        return bytes(data)

    def delete(self, uri: str, *, within: Optional[str] = None) -> None:
        """Remove the object (absent already: S3 answers the same)."""
        key = self._key_of(uri)
        _inside(key, within)
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


def open_artifacts(cfg: Any, *, default_root: str) -> "LocalArtifacts | S3Artifacts":
    """The store ``cfg`` (an ``ArtifactsConfig``) names: a directory (``root``, else
    ``default_root``), or an S3 bucket through a boto3 client made here from the usual AWS
    credential chain of this (Orion's) process."""
    if cfg.backend == "s3":
        try:
            import boto3
        except ImportError:
            raise ArtifactError(
                "pipelines.artifacts.backend s3 needs boto3 (pip install 'orion-ray[aws]')"
            ) from None
        client = boto3.client("s3", region_name=cfg.region, endpoint_url=cfg.endpoint_url)
        return S3Artifacts(cfg.bucket, cfg.prefix, client)
    return LocalArtifacts(cfg.root or default_root)
