"""Serving usage for cost (docs/serving-limits.md, docs/cost.md): each deployment's replica-hours
with the replica's resources, and the tokens its answers used per calling tenant, cut into usage
records (kind ``replica``) the scheduler stores in ``usage_records``.

No Ray and no store here: the manager feeds the meter on every tick (running replicas from Serve's
status, so replica-time is integrated to the tick) and with the routers' token reports; the meter
hands back record dicts every ``period_s`` and when a deployment scales or is undeployed. Its
marks (where each deployment's unrecorded time starts) and the records not yet accepted by the
store are part of the manager's saved state, so a restarted manager records the time it was down
(at the replica count it last saw) and resends what was pending; only the tokens reported since
the last cut are lost in a crash (at most one period's).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

SHARED = "(shared)"  # the owner of a shared model's replica-hours (no tenant holds it)
POOL = "unknown"  # cost.store_rows.UNKNOWN_POOL: replica-time whose node's pool is not known
MARKET = "on_demand"  # policy.markets.market_of: a node that does not say is on-demand
MAX_PENDING = 10_000  # records kept while the store is unreachable (oldest dropped beyond)


class UsageMeter:
    """Unrecorded replica-time per deployment and tokens per (deployment, tenant)."""

    def __init__(self, period_s: float = 60.0):
        self.period_s = period_s
        # deployment → {"since", "last", "replicas", "replica_s", "tenant", "gpus", "cpus", ...}
        self.open: dict[str, dict[str, Any]] = {}
        self.tokens: dict[tuple[str, str], int] = {}
        self.tokens_since: Optional[float] = None
        self.pending: list[dict[str, Any]] = []
        self.cut_at: Optional[float] = None
        self.dropped = 0

    # -- feeding -----------------------------------------------------------------------------------
    def observe(
        self,
        dep_id: str,
        now: float,
        *,
        replicas: int,
        tenant: Optional[str],
        gpus: float,
        cpus: float,
        memory_gib: float = 0.0,
        gpu_type: Optional[str] = None,
        where: Optional[Mapping[tuple[str, str], int]] = None,
    ) -> None:
        """The deployment runs ``replicas`` now: the time since the last observation is counted
        at the count seen then (the count changes between ticks, not during one). ``where``:
        its running replicas by the (pool, market) of their nodes, when it was read (None: as
        last read); the replica-time is split in its proportions, so each part is priced like
        a workload on that pool. Time while none was read is in pool ``unknown``, on-demand."""
        d = self.open.get(dep_id)
        if d is None:
            d = self.open[dep_id] = {"since": now, "last": now, "replicas": 0, "replica_s": 0.0}
        _advance(d, now)
        if where is not None:
            total = sum(n for n in where.values() if n > 0)
            d["where"] = {_key(p, m): n / total for (p, m), n in where.items() if n > 0} if total else {}
        d.update(
            replicas=max(0, int(replicas)),
            tenant=tenant or SHARED,
            gpus=float(gpus),
            cpus=float(cpus),
            memory_gib=float(memory_gib),
            gpu_type=gpu_type,
        )
        if self.cut_at is None:
            self.cut_at = now

    def add_tokens(self, dep_id: str, tenant: str, tokens: int, now: float) -> None:
        """Tokens of answers ``dep_id`` gave ``tenant``."""
        if tokens <= 0:
            return
        if self.tokens_since is None:
            self.tokens_since = now
        if self.cut_at is None:
            self.cut_at = now
        self.tokens[(dep_id, tenant)] = self.tokens.get((dep_id, tenant), 0) + int(tokens)

    # -- cutting records ---------------------------------------------------------------------------
    def due(self, now: float) -> bool:
        """Whether a period has passed since the last cut (or records wait to be sent)."""
        return self.cut_at is not None and now - self.cut_at >= self.period_s

    def cut(self, now: float, only: Optional[str] = None) -> list[dict[str, Any]]:
        """Records of everything unrecorded up to ``now`` (``only``: one deployment's, e.g. when
        it scales), added to ``pending`` and returned."""
        out: list[dict[str, Any]] = []
        for dep_id, d in sorted(self.open.items()):
            if only is not None and dep_id != only:
                continue
            _advance(d, now)
            span = d["last"] - d["since"]
            split = dict(d.get("split") or {})
            rest = d["replica_s"] - sum(split.values())  # time while the placement was unknown
            if rest > 1e-9 * max(1.0, d["replica_s"]):
                split[_key(POOL, MARKET)] = split.get(_key(POOL, MARKET), 0.0) + rest
            for key, replica_s in sorted(split.items()):
                if replica_s <= 0 or span <= 0:
                    continue
                avg = replica_s / span  # replicas on average over the span, on that pool
                pool, market = key.rsplit("|", 1)
                out.append(
                    _record(
                        dep_id,
                        d["tenant"],
                        d["since"],
                        d["last"],
                        gpus=d["gpus"] * avg,
                        cpus=d["cpus"] * avg,
                        memory_gib=d["memory_gib"] * avg,
                        gpu_type=d["gpu_type"],
                        pool=pool,
                        market=market,
                    )
                )
            d["since"], d["replica_s"], d["split"] = d["last"], 0.0, {}
        since = self.tokens_since if self.tokens_since is not None else now
        end = max(now, since + 1e-3)  # a record needs a length to be clipped into report buckets
        for (dep_id, tenant), n in sorted(self.tokens.items()):
            if only is None or dep_id == only:
                out.append(_record(dep_id, tenant, since, end, tokens=n))
        self.tokens = {k: v for k, v in self.tokens.items() if only is not None and k[0] != only}
        if not self.tokens:
            self.tokens_since = None
        if only is None:
            self.cut_at = now
        self._queue(out)
        return out

    def close(self, dep_id: str, now: float) -> list[dict[str, Any]]:
        """The deployment is gone (undeployed): its last records, and it is forgotten."""
        out = self.cut(now, only=dep_id)
        self.open.pop(dep_id, None)
        return out

    def _queue(self, records: list[dict[str, Any]]) -> None:
        self.pending.extend(records)
        if len(self.pending) > MAX_PENDING:
            self.dropped += len(self.pending) - MAX_PENDING
            del self.pending[: len(self.pending) - MAX_PENDING]

    def sent(self, n: int) -> None:
        """The first ``n`` pending records are stored."""
        del self.pending[:n]

    # -- persistence -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What the manager saves: the marks and the records not yet stored (tokens since the
        last cut are not saved: a crash loses at most one period's)."""
        return {
            "open": {k: dict(v) for k, v in self.open.items()},
            "pending": list(self.pending),
            "cut_at": self.cut_at,
        }

    def load(self, saved: Optional[dict[str, Any]]) -> None:
        """Resume from ``state()``: the time between the save and the next observation is counted
        at the replica count saved."""
        if not saved:
            return
        self.open = {k: dict(v) for k, v in (saved.get("open") or {}).items()}
        self.pending = list(saved.get("pending") or [])
        self.cut_at = saved.get("cut_at")


def _key(pool: str, market: str) -> str:
    """A (pool, market) as a JSON object key (markets never hold ``|``)."""
    return f"{pool}|{market}"


def _advance(d: dict[str, Any], now: float) -> None:
    """Count the time since ``d``'s last observation at the count (and placement) seen then."""
    dt = d["replicas"] * max(0.0, now - d["last"])
    d["replica_s"] += dt
    split = d.setdefault("split", {})
    for key, frac in (d.get("where") or {}).items():
        split[key] = split.get(key, 0.0) + dt * frac
    d["last"] = max(d["last"], now)


def _record(
    dep_id: str,
    tenant: str,
    start: float,
    end: float,
    *,
    gpus: float = 0.0,
    cpus: float = 0.0,
    memory_gib: float = 0.0,
    gpu_type: Optional[str] = None,
    tokens: int = 0,
    pool: str = POOL,
    market: str = MARKET,
) -> dict[str, Any]:
    """A ``cost.usage.UsageRecord`` as JSON (kind ``replica``, ref the deployment id)."""
    return {
        "kind": "replica",
        "ref": dep_id,
        "tenant": tenant,
        "pool": pool,
        "market": market,
        "start": start,
        "end": end,
        "gpus": gpus,
        "cpus": cpus,
        "memory_gib": memory_gib,
        "gpu_type": gpu_type,
        "tokens": int(tokens),
    }
