"""Serving usage records into ``usage_records`` (docs/serving-limits.md): replica-hours and tokens
the serving manager cut (``serving/usage_meter.py``), written by the scheduler, which holds the
store.

The manager resends records it could not confirm (the scheduler restarted mid-call, a timeout
after the write), so a record identical in (kind, ref, tenant, pool, market, start, end) to a
stored one is skipped: a resend never counts twice. Bad input is refused whole before anything is written.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from ..errors import ValidationError
from .store_rows import add_records
from .usage import UsageRecord

MAX_RECORDS = 10_000
_FIELDS = ("ref", "tenant", "pool", "market")
_NUMBERS = ("start", "end", "gpus", "cpus", "memory_gib")


def parse_records(records: Iterable[Any]) -> list[UsageRecord]:
    """The records as ``UsageRecord``s (kind ``replica`` only); a ``ValidationError`` names the
    first bad field."""
    out: list[UsageRecord] = []
    for i, r in enumerate(records):
        where = f"records[{i}]"
        if i >= MAX_RECORDS:
            raise ValidationError(
                "too many usage records", [{"field": "records", "problem": f"> {MAX_RECORDS}"}]
            )
        if not isinstance(r, dict) or r.get("kind") != "replica":
            raise ValidationError(
                "not a serving usage record", [{"field": f"{where}.kind", "problem": "not 'replica'"}]
            )
        for f in _FIELDS:
            if not isinstance(r.get(f), str) or not 0 < len(r[f]) <= 256:
                raise ValidationError(
                    "bad usage record", [{"field": f"{where}.{f}", "problem": "a short string"}]
                )
        nums = {}
        for f in _NUMBERS:
            v = r.get(f, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValidationError(
                    "bad usage record", [{"field": f"{where}.{f}", "problem": "a number >= 0"}]
                )
            nums[f] = float(v)
        tokens = r.get("tokens", 0)
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValidationError(
                "bad usage record", [{"field": f"{where}.tokens", "problem": "an integer >= 0"}]
            )
        if nums["end"] < nums["start"]:
            raise ValidationError("bad usage record", [{"field": f"{where}.end", "problem": "before start"}])
        gpu_type = r.get("gpu_type")
        out.append(
            UsageRecord(
                kind="replica",
                ref=r["ref"],
                tenant=r["tenant"],
                pool=r["pool"],
                market=r["market"],
                start=nums["start"],
                end=nums["end"],
                gpus=nums["gpus"],
                cpus=nums["cpus"],
                memory_gib=nums["memory_gib"],
                gpu_type=gpu_type if isinstance(gpu_type, str) else None,
                tokens=tokens,
            )
        )
    return out


def add_replica_records(store: Any, records: Iterable[Any]) -> int:
    """Write the serving manager's records, skipping those already stored; how many written."""
    parsed = parse_records(records)
    if not parsed:
        return 0
    lo = min(r.end for r in parsed)
    # one deployment's span may be cut into one record per pool its replicas ran on
    seen = {
        (ref, tenant, pool, market, float(s), float(e))
        for ref, tenant, pool, market, s, e in store._query(
            "SELECT ref, tenant_id, pool, market, start_at, end_at FROM usage_records"
            " WHERE kind = 'replica' AND end_at >= ?",
            (lo,),
        )
    }
    fresh = [r for r in parsed if (r.ref, r.tenant, r.pool, r.market, r.start, r.end) not in seen]
    return add_records(store, fresh)
