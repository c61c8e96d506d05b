"""Cost rows in the store (schema 11): usage and capacity records, price-table versions, and the
batch workloads' usage read from their transitions (docs/cost.md). Here, not in ``store/``: the
store sits below this package and never imports it.

Batch usage is not written separately: every status change is already stored in the same
transaction as the workload, so the held stretches are read back from ``transitions`` and nothing
a workload ran can be missed or counted twice. Each bundle's pool and market come from the
workload's ``placement`` (the scheduler adds them from the node's labels when the run starts); a
run whose placement is gone (requeued after a preemption) is priced on-demand in pool ``unknown``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Union

from .prices import PriceBook, PriceTable
from .telemetry import USED_KIND, apply_used, used_samples
from .usage import CapacityRecord, UsageRecord, workload_records

UNKNOWN_POOL = "unknown"
_COLS = (
    "kind, ref, tenant_id, pool, market, start_at, end_at, gpus, cpus, memory_gib, gpu_type,"
    " used_gpus, used_cpus, used_memory_gib, tokens, nodes, instance_type"
)
_CHUNK = 500


def add_records(store: Any, records: Iterable[Union[UsageRecord, CapacityRecord]]) -> int:
    """Insert replica usage and capacity records in one transaction; how many."""
    rows = []
    for r in records:
        if isinstance(r, CapacityRecord):
            rows.append(
                ("capacity", r.pool, "", r.pool, r.market, r.start, r.end, r.gpus, r.cpus, r.memory_gib,
                 r.gpu_type, None, None, None, 0, r.nodes, r.instance_type)
            )  # fmt: skip
        else:
            rows.append(
                (r.kind, r.ref, r.tenant, r.pool, r.market, r.start, r.end, r.gpus, r.cpus, r.memory_gib,
                 r.gpu_type, r.used_gpus, r.used_cpus, r.used_memory_gib, r.tokens, 0, None)
            )  # fmt: skip
    if not rows:
        return 0
    with store._lock, store._tx():
        store._db.executemany(f"INSERT INTO usage_records({_COLS}) VALUES ({','.join('?' * 17)})", rows)
    return len(rows)


def stored_records(
    store: Any, *, since: float, until: float, tenant: Optional[str] = None
) -> tuple[list[UsageRecord], list[CapacityRecord]]:
    """Replica usage (of ``tenant`` only, if given) and capacity records overlapping [since, until)."""
    sql = f"SELECT {_COLS} FROM usage_records WHERE end_at > ? AND start_at < ?"
    usage: list[UsageRecord] = []
    caps: list[CapacityRecord] = []
    for row in store._query(sql, (since, until)):
        kind, ref, t, pool, market, s, e, g, c, m, gt, ug, uc, um, tok, nodes, inst = row
        if kind == "capacity":
            caps.append(CapacityRecord(pool, market, s, e, g, c, m, int(nodes), gt, inst))
        elif kind != USED_KIND and (tenant is None or t == tenant):  # samples: see workload_usage
            usage.append(UsageRecord(kind, ref, t, pool, market, s, e, g, c, m, gt, ug, uc, um, int(tok)))
    return usage, caps


def workload_usage(
    store: Any, *, since: float, until: float, now: float, tenant: Optional[str] = None
) -> list[UsageRecord]:
    """Batch workloads' usage records overlapping [since, until): workloads with a status change
    since ``since`` or still holding capacity (``tenant``'s only, if given)."""
    holding = "('starting','running','preempted')"
    sql = (
        "SELECT workload_id, tenant_id, spec, state FROM workloads WHERE (workload_id IN "
        f"(SELECT workload_id FROM transitions WHERE at >= ?) OR status IN {holding})"
    )
    params: tuple = (since,)
    if tenant is not None:
        sql += " AND tenant_id = ?"
        params += (tenant,)
    rows = store._query(sql, params)
    out: list[UsageRecord] = []
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i : i + _CHUNK]
        ids = [r[0] for r in chunk]
        hist: dict[str, list[tuple[str, float]]] = {w: [] for w in ids}
        marks = ",".join("?" * len(ids))
        q = f"SELECT workload_id, status, at FROM transitions WHERE workload_id IN ({marks}) ORDER BY id"
        for wid, status, at in store._query(q, tuple(ids)):
            hist[wid].append((status, at))
        for wid, t, spec_text, state_text in chunk:
            try:
                spec, state = json.loads(spec_text), json.loads(state_text)
            except ValueError:
                continue  # an unreadable row is the quarantine's business, not the report's
            bundles = spec.get("bundles") or [spec.get("resources") or {"cpu": 1.0}]
            pool, market = _where(state.get("placement"))
            for r in workload_records(
                workload_id=wid,
                tenant=t,
                history=hist[wid],
                bundles=[_ray_units(b) for b in bundles],
                gpu_type=next((b.get("gpu_type") for b in bundles if b.get("gpu_type")), None),
                pool=pool,
                market=market,
                now=now,
            ):
                if r.end > since and r.start < until:
                    out.append(r)
    if out:  # what telemetry measured while they ran (cost/telemetry.py)
        out = apply_used(out, used_samples(store, since=min(r.start for r in out), until=until))
    return out


def _ray_units(b: dict) -> dict:
    mem = b.get("memory") or 0
    return {"GPU": float(b.get("gpu") or 0.0), "CPU": float(b.get("cpu", 1.0) or 0.0), "memory": float(mem)}


def _where(placement: Optional[list]) -> tuple[str, str]:
    first = (placement or [{}])[0] or {}
    return first.get("pool") or UNKNOWN_POOL, first.get("market") or "on_demand"


# -- price table versions -------------------------------------------------------------------------
def record_prices(store: Any, table: PriceTable, *, now: float) -> bool:
    """Store ``table`` as the version in effect from ``now`` unless it already is the latest;
    whether it was new."""
    rows = store._query("SELECT version FROM price_tables ORDER BY effective_at DESC LIMIT 1", ())
    if rows and rows[0][0] == table.version:
        return False
    with store._lock, store._tx():
        store._db.execute(
            "INSERT INTO price_tables(version, effective_at, body) VALUES (?,?,?)",
            (table.version, now, json.dumps(table.as_json(), sort_keys=True)),
        )
    return True


def price_book(store: Any, current: PriceTable) -> PriceBook:
    """Every stored version (the scheduler stores the configured table when it starts and on
    reload); ``current`` alone when none is stored yet (a reader never writes)."""
    versions: list[tuple[float, PriceTable]] = []
    for _v, at, body in store._query(
        "SELECT version, effective_at, body FROM price_tables ORDER BY effective_at", ()
    ):
        d = json.loads(body)
        versions.append(
            (
                float(at),
                PriceTable.from_config(
                    {k: d[k] for k in ("gpu", "cpu", "memory_gib", "instances", "tokens") if k in d},
                    d.get("currency", "USD"),
                ),
            )
        )
    if not versions:
        versions.append((0.0, current))
    return PriceBook(versions)


def cost_rows(
    store: Any, *, start: float, end: float, now: float, step: Optional[float], share_idle: str
) -> tuple[list[dict[str, Any]], PriceTable]:
    """``allocate``'s rows for [start, end) from everything stored (every tenant: idle is
    shared among them; callers filter what a tenant may see), and the newest price table."""
    from .allocation import allocate

    settings = store.get_setting(COST_SETTING, None) or {}
    book = price_book(store, PriceTable(currency=settings.get("currency", "USD")))
    until = min(end, now)
    usage = workload_usage(store, since=start, until=until, now=now)
    replicas, caps = stored_records(store, since=start, until=until)
    rows = allocate(usage + replicas, caps, book, start=start, end=end, step=step, share_idle=share_idle)
    return rows, book.current


COST_SETTING = "cost"  # {"currency", "share_idle"}: the configured defaults, for API replicas
