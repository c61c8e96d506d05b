"""The control plane's aggregated view of its regions (issue 17, docs/regions-config.md): per-region
gauges in Prometheus text, config drift, and the audit trail of regions' status changes.

Pure over the region records and ``now``, except ``audit_rows``/``status_audit``, which read and
write the control plane's own store (its ``audit`` table, the same one a regional Orion keeps).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..policy.region_state import RegionRecord

STATES = ("active", "draining", "inactive")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# every metric this module exposes (the alert rules may name only these)
METRICS = {
    "orion_region_state": "1 for the region's current state (active, draining, inactive)",
    "orion_region_lost": "1 while the region is silent past region_lost_timeout",
    "orion_region_free_gpus": "free GPUs of a type, as the last heartbeat said",
    "orion_region_free_cpus": "free CPUs, as the last heartbeat said",
    "orion_region_queue_depth": "queued workloads, as the last heartbeat said",
    "orion_region_launch_failures": "recent failed launches, as the last heartbeat said",
    "orion_region_launch_p95_seconds": "submit-to-running P95 of the region's recent launches",
    "orion_region_heartbeat_age_seconds": "seconds since the region's last heartbeat",
    "orion_region_applied_config_version": "the config snapshot version the region runs",
    "orion_region_config_drift": "1 while the region's applied config version is not the wanted one",
    "orion_config_wanted_version": "the newest published config snapshot version (0: none)",
    "orion_regions": "regions known to the control plane",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return repr(float(v))


def heartbeat_age(rec: RegionRecord, now: float) -> Optional[float]:
    """Seconds since the last heartbeat (None: never heard from)."""
    return None if rec.last_heartbeat is None else max(0.0, now - rec.last_heartbeat)


def render_metrics(records: Sequence[RegionRecord], *, wanted_version: int, now: float) -> str:
    """Prometheus text exposition of every region's gauges."""
    samples: dict[str, list[str]] = {m: [] for m in METRICS}
    for r in sorted(records, key=lambda r: r.name):
        reg = f'region="{_label(r.name)}"'
        hb = r.heartbeat
        for s in STATES:
            samples["orion_region_state"].append(f'{{{reg},state="{s}"}} {int(r.state == s)}')
        samples["orion_region_lost"].append(f"{{{reg}}} {int(r.lost)}")
        for gpu_type, n in sorted(hb.free_gpus.items()):
            samples["orion_region_free_gpus"].append(f'{{{reg},gpu_type="{_label(gpu_type)}"}} {_num(n)}')
        samples["orion_region_free_cpus"].append(f"{{{reg}}} {_num(hb.free_cpus)}")
        samples["orion_region_queue_depth"].append(f"{{{reg}}} {hb.queue_depth}")
        samples["orion_region_launch_failures"].append(f"{{{reg}}} {hb.launch_failures}")
        p95 = getattr(hb, "launch_p95_s", None)
        if p95 is not None:
            samples["orion_region_launch_p95_seconds"].append(f"{{{reg}}} {_num(p95)}")
        age = heartbeat_age(r, now)
        if age is not None:
            samples["orion_region_heartbeat_age_seconds"].append(f"{{{reg}}} {_num(age)}")
        samples["orion_region_applied_config_version"].append(f"{{{reg}}} {hb.applied_config_version}")
        drift = int(wanted_version > 0 and hb.applied_config_version != wanted_version)
        samples["orion_region_config_drift"].append(f"{{{reg}}} {drift}")
    samples["orion_config_wanted_version"].append(f" {wanted_version}")
    samples["orion_regions"].append(f" {len(records)}")
    lines = []
    for name, help_text in METRICS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{s}" for s in samples[name]]  # "{labels} v" or " v"
    return "\n".join(lines) + "\n"


def config_view(
    latest: Optional[Any], records: Iterable[RegionRecord], *, include_body: bool = True
) -> dict[str, Any]:
    """The current (wanted) snapshot and which regions run it: ``applied``, ``behind`` (an older
    version) and ``unknown`` (never heartbeated)."""
    applied, behind, unknown = [], [], []
    for r in sorted(records, key=lambda r: r.name):
        if r.last_heartbeat is None:
            unknown.append(r.name)
        elif latest is not None and (
            r.heartbeat.applied_config_version == latest.version
            and r.heartbeat.applied_config_sha256 in ("", latest.sha256)
        ):
            applied.append(r.name)
        else:
            behind.append(r.name)
    out: dict[str, Any] = {
        "version": latest.version if latest else 0,
        "sha256": latest.sha256 if latest else "",
        "regions": {"applied": applied, "behind": behind, "unknown": unknown},
    }
    if include_body:
        out["body"] = dict(latest.body) if latest else {}
    return out


# -- audit ---------------------------------------------------------------------------------------
def status_audit(
    region: str, applied: Sequence[Mapping[str, Any]], stale: Sequence[Mapping[str, Any]]
) -> list[tuple]:
    """Audit rows ``(at, who, action, target, details)`` for a batch of a region's status changes:
    each applied one, and each stale one (a fenced generation) for the record."""
    rows = []
    for action, changes in (("status", applied), ("status_stale", stale)):
        for c in changes:
            details = {
                "region": region,
                "seq": c.get("seq"),
                "generation": c.get("generation"),
                "status": c.get("status"),
                "reason": c.get("reason") or "",
            }
            rows.append(
                (float(c.get("at") or 0.0), f"region:{region}", action, str(c["workload_id"]), details)
            )
    return rows


def audit_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """An audit row as the control plane lists it, with its ``region`` (None for an operator's)."""
    details = row.get("details")
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            details = {"raw": details}
    who = str(row.get("who") or "")
    region = (details or {}).get("region") if isinstance(details, dict) else None
    if region is None and who.startswith("region:"):
        region = who.split(":", 1)[1]
    return {**row, "details": details, "region": region}


def audit_page(
    store: Any,
    *,
    region: Optional[str] = None,
    workload_id: Optional[str] = None,
    limit: int = 100,
    cursor: Optional[int] = None,
) -> dict[str, Any]:
    """The control plane's audit trail, newest first, a page at a time: every region's status
    changes (``region`` filters one) and operators' actions."""
    from ..models import iso

    sql, params = "SELECT id, at, who, action, target, details FROM audit WHERE 1=1", []
    if region is not None:
        sql += " AND who=?"
        params.append(f"region:{region}")
    if workload_id is not None:
        sql += " AND target=?"
        params.append(workload_id)
    if cursor is not None:
        sql += " AND id<?"
        params.append(cursor)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(int(limit) + 1)
    rows = [
        audit_item({"id": i, "at": iso(at), "who": who, "action": a, "target": t, "details": d})
        for i, at, who, a, t, d in store._query(sql, tuple(params))
    ]
    return {"items": rows[:limit], "next_cursor": rows[limit - 1]["id"] if len(rows) > limit else None}
