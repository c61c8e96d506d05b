"""A snapshot's manifest and the pure decisions about snapshots: names, what to verify, what to keep.

A snapshot is two objects side by side: ``<name>.db.gz`` (the database, gzip-compressed) and
``<name>.manifest.json``. The manifest says what the snapshot must be (schema version, row counts
per table, the sha256 of the compressed file and of the database in it) so a restore can check
every one of them before it swaps anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

DATA_SUFFIX = ".db.gz"
MANIFEST_SUFFIX = ".manifest.json"
FORMAT = 1
# orion-20261207T013000Z-1a2b (UTC time, then 4 hex digits so two snapshots in one second differ)
NAME = re.compile(r"^orion-(\d{8}T\d{6})(\d{3})?Z-[0-9a-f]{4}$")


@dataclass
class Manifest:
    """What one snapshot holds (written next to it as JSON)."""

    name: str
    backend: str
    created_at: float
    orion_version: str
    schema_version: int
    tables: dict[str, int]
    sha256: str  # of the compressed file
    db_sha256: str  # of the database inside it
    size_bytes: int
    db_size_bytes: int
    max_seq: int = 0  # the newest workload's seq in it (how far it reaches)
    format: int = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        """Parse a manifest; ``ValueError`` naming what is wrong."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the manifest is not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError("the manifest is not a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        missing = sorted(f for f in known - set(raw) if f not in ("max_seq", "format", "extra"))
        if missing:
            raise ValueError(f"the manifest lacks {', '.join(missing)}")
        if int(raw.get("format", FORMAT)) > FORMAT:
            raise ValueError(f"the manifest's format {raw['format']} is newer than this Orion reads")
        tables = raw["tables"]
        if not isinstance(tables, dict) or not all(isinstance(v, int) for v in tables.values()):
            raise ValueError("the manifest's tables must map table names to row counts")
        return cls(**{k: v for k, v in raw.items() if k in known})

    def summary(self) -> dict[str, Any]:
        """What a listing shows."""
        return {
            "name": self.name,
            "created_at": iso(self.created_at),
            "backend": self.backend,
            "schema_version": self.schema_version,
            "size_bytes": self.size_bytes,
            "workloads": self.tables.get("workloads", 0),
            "orion_version": self.orion_version,
        }


def iso(at: float) -> str:
    """``at`` (epoch seconds) as an ISO-8601 UTC time."""
    return datetime.fromtimestamp(at, timezone.utc).isoformat().replace("+00:00", "Z")


def snapshot_name(now: float, token: str) -> str:
    """The name of a snapshot taken at ``now``; ``token``: 4 hex digits (unique within a second)."""
    t = datetime.fromtimestamp(now, timezone.utc)
    return f"orion-{t.strftime('%Y%m%dT%H%M%S')}{t.microsecond // 1000:03d}Z-{token}"


def is_snapshot_name(name: str) -> bool:
    return NAME.match(name) is not None


def to_prune(names: Iterable[str], keep: int) -> list[str]:
    """The snapshots to delete so that the ``keep`` newest remain (names sort by time); names
    that are not Orion's snapshots are never touched."""
    ours = sorted({n for n in names if is_snapshot_name(n)})
    return ours[: max(0, len(ours) - max(1, keep))]


def problems(
    manifest: Manifest,
    *,
    sha256: str,
    integrity: str,
    schema_version: int,
    code_schema_version: int,
    tables: Optional[dict[str, int]],
    db_sha256: Optional[str] = None,
) -> list[str]:
    """Why a snapshot must not be restored (empty: it may). Everything observed on the copy is
    compared with what the manifest promised; the schema must be one this code can open."""
    out: list[str] = []
    if sha256 != manifest.sha256:
        out.append(f"sha256 mismatch: the file has {sha256[:16]}…, the manifest says {manifest.sha256[:16]}…")
        return out  # the rest was read from a file that is not the one described
    if db_sha256 is not None and db_sha256 != manifest.db_sha256:
        out.append("the database inside the file does not match the manifest's db_sha256")
    if integrity != "ok":
        out.append(f"PRAGMA integrity_check failed: {integrity[:300]}")
    if schema_version != manifest.schema_version:
        out.append(f"schema version {schema_version} in the file, {manifest.schema_version} in the manifest")
    if schema_version > code_schema_version:
        out.append(
            f"schema version {schema_version} is newer than this Orion's ({code_schema_version}): "
            "upgrade Orion before restoring it"
        )
    if tables is not None:
        for table, want in sorted(manifest.tables.items()):
            got = tables.get(table)
            if got != want:
                out.append(f"table {table}: {got} rows, the manifest says {want}")
    return out


def name_time(name: str) -> Optional[float]:
    """When the snapshot ``name`` was taken (from its name; None for a name that is not one)."""
    m = NAME.match(name)
    if m is None:
        return None
    t = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return t.timestamp() + int(m.group(2) or 0) / 1000


def next_due(newest: Optional[float], interval_s: float, now: float) -> float:
    """When the next scheduled snapshot is due: ``interval_s`` after the newest one, whoever took
    it (so a restarted loop neither resets the period nor takes a burst), at once when there is
    none, and never later than ``interval_s`` from now (a clock stepped back)."""
    if newest is None:
        return now
    return min(newest + interval_s, now + interval_s)


def metrics_text(newest: Optional[float], now: float) -> str:
    """``orion_backup_last_success_timestamp`` and ``orion_backup_age_seconds`` as Prometheus
    text (no sample when no snapshot exists yet: an alert on ``absent()`` catches that)."""
    lines = [
        "# HELP orion_backup_last_success_timestamp When the newest snapshot was taken (epoch seconds).",
        "# TYPE orion_backup_last_success_timestamp gauge",
        "# HELP orion_backup_age_seconds How old the newest snapshot is.",
        "# TYPE orion_backup_age_seconds gauge",
    ]
    if newest is not None:
        lines.insert(2, f"orion_backup_last_success_timestamp {newest:.3f}")
        lines.append(f"orion_backup_age_seconds {max(0.0, now - newest):.3f}")
    return "\n".join(lines) + "\n"
