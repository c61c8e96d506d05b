"""Cost of usage records and of idle capacity, per time bucket, aggregated by any keys.

cost of a record = max(requested, used) × hours × rate, for GPUs (fractions included), vCPUs and
GiB, at the rates of its market in the price-table version in effect when it started. Idle cost of
a pool in a bucket = what its capacity cost minus what its usage was charged (never below zero),
shared by ``share_idle``:

- ``none``: kept apart, under the tenant ``(idle)``;
- ``weighted``: among the tenants that used the pool in that bucket, in proportion to their cost;
- ``even``: among the same tenants, in equal parts.

A pool nobody used in a bucket shares its idle cost among the tenants that used anything in that
bucket (the cluster was kept up for them); with nobody at all it stays ``(idle)``.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping, Optional, Sequence

from .prices import PriceBook, Rates, token_cost
from .usage import CapacityRecord, UsageRecord

IDLE_TENANT = "(idle)"
SHARE_MODES = ("none", "weighted", "even")
AGGREGATE_KEYS = ("tenant", "pool", "market", "kind", "gpu_type")
_FIGURES = (
    "gpu_hours",
    "cpu_hours",
    "memory_gib_hours",
    "spot_gpu_hours",
    "usage_cost",
    "idle_cost",
    "tokens",
)


@dataclass(frozen=True)
class PoolShape:
    """What the price table needs of a pool to use an instance price."""

    instance_type: Optional[str] = None
    node_gpus: float = 0.0
    node_cpus: float = 0.0


def cents(x: float) -> float:
    """Money rounded half-up to the cent (what reports and exports show)."""
    return float(Decimal(repr(x)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _rates(
    book: PriceBook, at: float, market: str, gpu_type: Optional[str], shape: Optional[PoolShape]
) -> Rates:
    s = shape or PoolShape()
    return book.at(at).rates(
        market, gpu_type, instance_type=s.instance_type, node_gpus=s.node_gpus, node_cpus=s.node_cpus
    )


def record_cost(r: UsageRecord, book: PriceBook, shape: Optional[PoolShape] = None) -> float:
    """max(requested, used) × hours × rate, summed over GPUs, vCPUs and GiB, plus a serving
    record's tokens at their price per 1,000."""
    g, c, m = r.charged()
    rt = _rates(book, r.start, r.market, r.gpu_type, shape)
    return r.hours * (g * rt.gpu + c * rt.cpu + m * rt.memory_gib) + tokens_cost(r, book)


def tokens_cost(r: UsageRecord, book: PriceBook) -> float:
    """What a serving record's tokens cost (``ref`` is the deployment, ``<model>--<version>``);
    not capacity, so it never offsets a pool's idle cost."""
    if not r.tokens or r.kind != "replica":
        return 0.0
    return token_cost(book.at(r.start), r.ref.split("--", 1)[0], r.tokens)


def capacity_cost(c: CapacityRecord, book: PriceBook, shape: Optional[PoolShape] = None) -> float:
    """What ``c``'s node-hours cost at its market's rates."""
    rt = _rates(book, c.start, c.market, c.gpu_type, shape)
    hours = max(0.0, c.end - c.start) / 3600.0
    return hours * c.nodes * (c.gpus * rt.gpu + c.cpus * rt.cpu + c.memory_gib * rt.memory_gib)


def buckets(start: float, end: float, step: Optional[float]) -> list[tuple[float, float]]:
    """[start, end) cut into ``step``-second buckets (one bucket without a step)."""
    if not step or step <= 0:
        return [(start, end)]
    out, t = [], start
    while t < end:
        out.append((t, min(end, t + step)))
        t += step
    return out


def allocate(
    records: Iterable[UsageRecord],
    capacity: Iterable[CapacityRecord],
    book: PriceBook,
    *,
    start: float,
    end: float,
    step: Optional[float] = None,
    share_idle: str = "none",
    pools: Optional[Mapping[str, PoolShape]] = None,
) -> list[dict[str, Any]]:
    """Rows at the finest grain — (bucket, tenant, pool, market, kind, gpu_type) — with hours,
    usage cost, idle cost and tokens (unrounded: round when showing, ``aggregate`` does)."""
    if share_idle not in SHARE_MODES:
        raise ValueError(f"share_idle: {share_idle!r} is not one of {', '.join(SHARE_MODES)}")
    pools = pools or {}
    recs, caps = list(records), list(capacity)
    rows: dict[tuple, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_FIGURES, 0.0))
    for lo, hi in buckets(start, end, step):
        used_in_pool: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for r in recs:
            part = r.clip(lo, hi)
            if part is None:
                continue
            g, c, m = part.charged()
            cost = record_cost(part, book, pools.get(part.pool))
            row = rows[(lo, hi, part.tenant, part.pool, part.market, part.kind, part.gpu_type)]
            row["gpu_hours"] += g * part.hours
            row["cpu_hours"] += c * part.hours
            row["memory_gib_hours"] += m * part.hours
            if part.market == "spot" and part.kind == "workload":
                row["spot_gpu_hours"] += g * part.hours
            row["usage_cost"] += cost
            row["tokens"] += part.tokens
            used_in_pool[part.pool][part.tenant] += cost - tokens_cost(part, book)
        offered: dict[tuple[str, str, Optional[str]], float] = defaultdict(float)
        for c_rec in caps:
            cpart = c_rec.clip(lo, hi)
            if cpart is not None:
                offered[(cpart.pool, cpart.market, cpart.gpu_type)] += capacity_cost(
                    cpart, book, pools.get(cpart.pool)
                )
        by_pool: dict[str, float] = defaultdict(float)
        for (pool, _m, _g), cost in offered.items():
            by_pool[pool] += cost
        anyone: dict[str, float] = defaultdict(float)
        for per_tenant in used_in_pool.values():
            for t, cost in per_tenant.items():
                anyone[t] += cost
        for (pool, market, gpu_type), cost in offered.items():
            idle = max(0.0, by_pool[pool] - sum(used_in_pool[pool].values()))
            idle *= cost / by_pool[pool] if by_pool[pool] else 0.0  # this market's part of the pool
            if idle <= 0:
                continue
            for tenant, part_cost in _share(idle, used_in_pool[pool] or anyone, share_idle).items():
                rows[(lo, hi, tenant, pool, market, "idle", gpu_type)]["idle_cost"] += part_cost
    return [
        {
            "start": k[0],
            "end": k[1],
            "tenant": k[2],
            "pool": k[3],
            "market": k[4],
            "kind": k[5],
            "gpu_type": k[6],
            **v,
        }
        for k, v in sorted(rows.items(), key=lambda kv: tuple("" if x is None else x for x in kv[0]))
    ]


def _share(idle: float, weights: Mapping[str, float], mode: str) -> dict[str, float]:
    tenants = sorted(t for t in weights if t != IDLE_TENANT)
    if mode == "none" or not tenants:
        return {IDLE_TENANT: idle}
    total = sum(weights[t] for t in tenants)
    if mode == "weighted" and total > 0:
        return {t: idle * weights[t] / total for t in tenants}
    return {t: idle / len(tenants) for t in tenants}


def aggregate(
    rows: Iterable[Mapping[str, Any]], keys: Sequence[str], *, per_bucket: bool = True
) -> list[dict[str, Any]]:
    """Sum ``allocate``'s rows by ``keys`` (and by bucket unless ``per_bucket`` is false); money
    rounded to cents, hours to 6 places; ``cost`` = usage + idle."""
    for k in keys:
        if k not in AGGREGATE_KEYS:
            raise ValueError(f"aggregate: {k!r} is not one of {', '.join(AGGREGATE_KEYS)}")
    sums: dict[tuple, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_FIGURES, 0.0))
    for r in rows:
        head = (r["start"], r["end"]) if per_bucket else ()
        key = head + tuple(r[k] for k in keys)
        for f in _FIGURES:
            sums[key][f] += r[f]
    out = []
    for key, v in sorted(sums.items(), key=lambda kv: tuple("" if x is None else x for x in kv[0])):
        row: dict[str, Any] = {}
        if per_bucket:
            row["start"], row["end"] = key[0], key[1]
        row.update(zip(keys, key[2:] if per_bucket else key))
        row.update(
            {f: round(v[f], 6) for f in ("gpu_hours", "cpu_hours", "memory_gib_hours", "spot_gpu_hours")}
        )
        row["tokens"] = int(v["tokens"])
        row["usage_cost"], row["idle_cost"] = cents(v["usage_cost"]), cents(v["idle_cost"])
        row["cost"] = cents(v["usage_cost"] + v["idle_cost"])
        out.append(row)
    return out


def spot_share(rows: Iterable[Mapping[str, Any]]) -> Optional[float]:
    """Spot GPU-hours over all batch GPU-hours (``None`` when no batch work used a GPU)."""
    spot = total = 0.0
    for r in rows:
        if r["kind"] == "workload":
            spot += r["spot_gpu_hours"]
            total += r["gpu_hours"]
    return spot / total if total > 0 else None


def ratio_to_baseline(daily: Sequence[float]) -> Optional[float]:
    """Today's cost (the last entry) over the median of the days before it (up to 7); ``None``
    without a baseline (no earlier day, or a zero median)."""
    if len(daily) < 2:
        return None
    base = statistics.median(daily[-8:-1])
    if base <= 0 or not math.isfinite(base):
        return None
    return daily[-1] / base
