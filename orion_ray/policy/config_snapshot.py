"""Configuration as data: versioned, hashed snapshots, their diff, and what a region applies (pure).

A snapshot holds every section a region needs — tenants, quotas, policies, worker pools, cluster
templates, prices — as one canonical JSON document (sorted keys, no spaces, integral floats written
as integers so YAML's ``2`` and JSON's ``2.0`` hash alike) with its sha256. Versions only go up: a
rollback is a new version with old content, so "applied version" always says which bytes a region
runs. A region applies a snapshot whole (every section or none), which ``plan_apply`` describes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

SECTIONS: tuple[str, ...] = ("tenants", "quotas", "policies", "pools", "templates", "prices")


class SnapshotError(ValueError):
    """A snapshot that cannot be built or applied; the message names the field."""


def _normal(value: Any, where: str) -> Any:
    """``value`` with integral floats as ints, keys as strings; NaN, infinities and unknown types
    refused (they have no canonical JSON)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SnapshotError(f"{where}: {value} is not a finite number")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SnapshotError(f"{where}: keys must be strings, not {k!r}")
            out[k] = _normal(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_normal(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise SnapshotError(f"{where}: {type(value).__name__} is not JSON")


def canonical(body: Mapping[str, Any]) -> str:
    """The canonical JSON text of a snapshot's body."""
    return json.dumps(_normal(body, "config"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(text: str) -> str:
    """sha256 of canonical text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """One version of the configuration: the body, its canonical text and hash."""

    version: int
    sha256: str
    body: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def text(self) -> str:
        """The canonical JSON of the body (what the hash is of)."""
        return canonical(self.body)


def build(sections: Mapping[str, Any], *, version: int) -> Snapshot:
    """A snapshot of ``sections`` (absent ones empty), each a mapping of name → settings."""
    if version < 1:
        raise SnapshotError("version: must be 1 or more")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SnapshotError(f"{unknown[0]}: not a config section (one of {', '.join(SECTIONS)})")
    body: dict[str, Any] = {}
    for s in SECTIONS:
        value = sections.get(s) or {}
        if not isinstance(value, Mapping):
            raise SnapshotError(f"{s}: a mapping of name → settings, not {type(value).__name__}")
        body[s] = _normal(value, s)
    return Snapshot(version=version, sha256=digest(canonical(body)), body=body)


def publish(previous: Optional[Snapshot], sections: Mapping[str, Any]) -> Snapshot:
    """The next snapshot: the previous one itself when nothing changed (no version churn), else
    the same content under ``previous.version + 1``."""
    candidate = build(sections, version=(previous.version + 1) if previous else 1)
    if previous is not None and candidate.sha256 == previous.sha256:
        return previous
    return candidate


def verify(version: int, sha256: str, text: str) -> Snapshot:
    """A snapshot received as canonical ``text``: the hash must match and the text be canonical."""
    if digest(text) != sha256:
        raise SnapshotError("sha256: does not match the snapshot's text")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"body: not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise SnapshotError("body: a JSON object")
    snap = build(body, version=version)
    if snap.sha256 != sha256:
        raise SnapshotError("body: not in canonical form")
    return snap


def diff(old: Optional[Snapshot], new: Snapshot) -> dict[str, dict[str, list[str]]]:
    """Per section that differs: the names ``added``, ``removed`` and ``changed``."""
    out: dict[str, dict[str, list[str]]] = {}
    for s in SECTIONS:
        a = dict(old.body.get(s, {})) if old else {}
        b = dict(new.body.get(s, {}))
        added = sorted(set(b) - set(a))
        removed = sorted(set(a) - set(b))
        changed = sorted(k for k in set(a) & set(b) if canonical({"v": a[k]}) != canonical({"v": b[k]}))
        if added or removed or changed:
            out[s] = {"added": added, "removed": removed, "changed": changed}
    return out


@dataclass(frozen=True)
class ApplyPlan:
    """What a region swaps in one step: every changed section, from one version to another."""

    from_version: int
    to_version: int
    sha256: str
    changes: Mapping[str, Mapping[str, list[str]]]
    body: Mapping[str, Mapping[str, Any]]

    @property
    def noop(self) -> bool:
        """Nothing to change (the region already runs these bytes)."""
        return not self.changes

    @property
    def restarts_pools(self) -> list[str]:
        """Pools added, removed or changed: the region's autoscaler reconciles them in place."""
        p = self.changes.get("pools", {})
        return sorted(set(p.get("added", [])) | set(p.get("removed", [])) | set(p.get("changed", [])))


def plan_apply(applied: Optional[Snapshot], wanted: Snapshot) -> ApplyPlan:
    """How a region at ``applied`` reaches ``wanted``; an older version is refused (stale push)."""
    if applied is not None and wanted.version < applied.version:
        raise SnapshotError(f"version: {wanted.version} is older than the applied {applied.version}")
    if applied is not None and wanted.version == applied.version and wanted.sha256 != applied.sha256:
        raise SnapshotError(f"sha256: version {wanted.version} already applied with another hash")
    return ApplyPlan(
        from_version=applied.version if applied else 0,
        to_version=wanted.version,
        sha256=wanted.sha256,
        changes=diff(applied, wanted),
        body=wanted.body,
    )
