"""Cost reports and the monthly chargeback export: query parameters checked, rows rendered (pure).

``parse_query`` turns the REST parameters into a ``CostQuery`` or raises ``QueryError`` naming the
field; ``report`` and ``chargeback`` shape ``allocation``'s rows for JSON, and ``to_csv`` writes
either as CSV. A tenant sees its own rows only (idle shared to it included); the operator sees
every tenant and ``(idle)``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..policy.budget import month_end, month_start
from .allocation import AGGREGATE_KEYS, SHARE_MODES, aggregate, cents, spot_share
from .prices import MARKETS

_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
MAX_WINDOW_S = 400 * 86400.0
MIN_STEP_S = 3600.0
MAX_BUCKETS = 2000
FORMATS = ("json", "csv")


class QueryError(ValueError):
    """A bad parameter: ``field`` and ``problem`` go into the 422's details."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class CostQuery:
    """A checked cost query: the window [start, end), buckets, grouping, idle sharing, format."""

    start: float
    end: float
    step: Optional[float]
    aggregate: tuple[str, ...]
    share_idle: str
    format: str


def duration(text: str, field: str) -> float:
    """Seconds of ``30m``, ``12h``, ``7d`` or ``2w``; ``QueryError`` otherwise."""
    m = re.fullmatch(r"([1-9][0-9]{0,4})([mhdw])", text or "")
    if not m:
        raise QueryError(field, f"{text!r} is not a duration such as 12h, 7d or 2w")
    return int(m.group(1)) * _UNITS[m.group(2)]


def month_window(text: str, field: str = "month") -> tuple[float, float]:
    """[start, end) of a UTC month written ``2026-11``."""
    m = re.fullmatch(r"(20[0-9]{2})-(0[1-9]|1[0-2])", text or "")
    if not m:
        raise QueryError(field, f"{text!r} is not a month such as 2026-11")
    t = datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=timezone.utc).timestamp()
    return month_start(t), month_end(t)


def parse_query(
    *,
    now: float,
    window: Optional[str] = "7d",
    month: Optional[str] = None,
    aggregate: Optional[str] = "tenant",
    step: Optional[str] = None,
    share_idle: Optional[str] = None,
    format: Optional[str] = "json",
    default_share_idle: str = "none",
) -> CostQuery:
    """The query of ``GET /api/v1/costs``; ``QueryError`` names the first bad field."""
    if month:
        start, end = month_window(month)
    else:
        length = duration(window or "7d", "window")
        if length > MAX_WINDOW_S:
            raise QueryError("window", "at most 400d")
        start, end = now - length, now
    keys = tuple(k.strip() for k in (aggregate or "").split(",") if k.strip())
    for k in keys:
        if k not in AGGREGATE_KEYS:
            raise QueryError("aggregate", f"{k!r} is not one of {', '.join(AGGREGATE_KEYS)}")
    if len(set(keys)) != len(keys):
        raise QueryError("aggregate", "a key is listed twice")
    step_s = None
    if step:
        step_s = duration(step, "step")
        if step_s < MIN_STEP_S:
            raise QueryError("step", "at least 1h")
        if (end - start) / step_s > MAX_BUCKETS:
            raise QueryError("step", f"more than {MAX_BUCKETS} buckets in the window; take a larger step")
    mode = share_idle or default_share_idle
    if mode not in SHARE_MODES:
        raise QueryError("share_idle", f"{mode!r} is not one of {', '.join(SHARE_MODES)}")
    fmt = format or "json"
    if fmt not in FORMATS:
        raise QueryError("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    return CostQuery(start, min(end, now) if not month else end, step_s, keys, mode, fmt)


def iso(t: float) -> str:
    """UTC ISO-8601 with a Z."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def visible(rows: Iterable[Mapping[str, Any]], tenant: Optional[str]) -> list[Mapping[str, Any]]:
    """``rows`` a caller may see: all for the operator (``tenant`` None), else that tenant's."""
    return [r for r in rows if tenant is None or r["tenant"] == tenant]


def report(
    rows: Sequence[Mapping[str, Any]],
    q: CostQuery,
    *,
    currency: str,
    price_version: str,
    tenant: Optional[str],
) -> dict[str, Any]:
    """The JSON body of ``GET /api/v1/costs`` from ``allocate``'s rows."""
    mine = visible(rows, tenant)
    out_rows = aggregate(mine, q.aggregate, per_bucket=q.step is not None)
    for r in out_rows:
        if "start" in r:
            r["start"], r["end"] = iso(r["start"]), iso(r["end"])
    totals = aggregate(mine, (), per_bucket=False)
    total = totals[0] if totals else {}
    share = spot_share(mine)
    return {
        "currency": currency,
        "price_version": price_version,
        "start": iso(q.start),
        "end": iso(q.end),
        "step_s": q.step,
        "aggregate": list(q.aggregate),
        "share_idle": q.share_idle,
        "rows": out_rows,
        "totals": {
            k: total.get(k, 0)
            for k in ("gpu_hours", "cpu_hours", "tokens", "usage_cost", "idle_cost", "cost")
        },
        "spot_share": None if share is None else round(share, 4),
    }


def chargeback(rows: Sequence[Mapping[str, Any]], *, tenant: Optional[str]) -> list[dict[str, Any]]:
    """Per tenant for the period: GPU-hours, CPU-hours, usage cost by market, idle share, total,
    tokens (money in cents). ``(idle)`` is a row of its own when idle was not shared."""
    per: dict[str, dict[str, float]] = {}
    for r in visible(rows, tenant):
        t = per.setdefault(r["tenant"], {"gpu_hours": 0.0, "cpu_hours": 0.0, "idle": 0.0, "tokens": 0.0})
        t["gpu_hours"] += r["gpu_hours"]
        t["cpu_hours"] += r["cpu_hours"]
        t["tokens"] += r["tokens"]
        t["idle"] += r["idle_cost"]
        t[r["market"]] = t.get(r["market"], 0.0) + r["usage_cost"]
    out = []
    for name in sorted(per):
        t = per[name]
        row: dict[str, Any] = {
            "tenant": name,
            "gpu_hours": round(t["gpu_hours"], 6),
            "cpu_hours": round(t["cpu_hours"], 6),
        }
        for m in MARKETS:
            row[f"cost_{m}"] = cents(t.get(m, 0.0))
        row["cost_idle"] = cents(t["idle"])
        row["cost_total"] = cents(sum(t.get(m, 0.0) for m in MARKETS) + t["idle"])
        row["tokens"] = int(t["tokens"])
        out.append(row)
    return out


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as CSV with a header (the keys of the first row; empty input: empty text)."""
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()
