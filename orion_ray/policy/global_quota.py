"""Global quotas of the control plane: concurrent use and GPU-hours per window (pure; docs/regions.md).

Per tenant and resource (``gpu``, ``gpu:<type>``, ``cpu``): ``concurrent`` bounds what the tenant's
reserved and committed runs hold at once, over every region; ``gpu_hours`` bounds what its runs used
in the current window (fixed windows of ``window_s`` aligned to the epoch, so every process agrees on
the window without talking). A reservation is made before a dispatch, committed when a region
accepted, and released on refusal or when the run ends; each is keyed by an idempotency key, so a
retried call returns the first answer. ``LedgerBook`` is the in-memory model (the simulator's and
the tests'); ``orion_ray/store/ledger.py`` keeps the same rows durably and asks ``check`` the
same question.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional

EPS = 1e-9
ReservationState = Literal["reserved", "committed", "released"]
HOLDING: tuple[ReservationState, ...] = ("reserved", "committed")


class LedgerConflict(ValueError):
    """An idempotency key reused for another tenant or another demand."""


@dataclass(frozen=True)
class GlobalQuota:
    """One tenant's global limits (a resource not named is unbounded here)."""

    tenant_id: str
    concurrent: Mapping[str, float] = field(default_factory=dict)
    gpu_hours: Mapping[str, float] = field(default_factory=dict)
    window_s: float = 86_400.0


@dataclass(frozen=True)
class Usage:
    """What a tenant holds now and what it used in the current window."""

    concurrent: Mapping[str, float] = field(default_factory=dict)
    gpu_hours: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Reservation:
    """One reservation: its key, tenant, demand and state."""

    key: str
    tenant_id: str
    demand: Mapping[str, float]
    state: ReservationState
    at: float


@dataclass(frozen=True)
class ReserveResult:
    """The answer to ``reserve``: granted or not, why not, and whether it replays an earlier one."""

    ok: bool
    reason: Optional[dict[str, str]] = None
    reservation: Optional[Reservation] = None
    replay: bool = False


def window_start(now: float, window_s: float) -> float:
    """Start of the fixed window holding ``now``."""
    return math.floor(now / window_s) * window_s


def check(
    quota: Optional[GlobalQuota],
    usage: Usage,
    demand: Mapping[str, float],
    *,
    expected_gpu_hours: Optional[Mapping[str, float]] = None,
) -> Optional[dict[str, str]]:
    """None when ``demand`` fits the tenant's global quota, else a reason naming the resource.

    ``expected_gpu_hours`` (from the run's ``timeout_s``, when it has one) is counted against the
    window's budget up front, so a run that would certainly overrun it is not dispatched; without
    it only a budget already spent refuses.
    """
    if quota is None:
        return None
    for res, limit in sorted(quota.concurrent.items()):
        want = demand.get(res, 0.0)
        if want <= 0:
            continue
        held = usage.concurrent.get(res, 0.0)
        if held + want > limit + EPS:
            return {
                "code": "global_quota",
                "message": f"{res}: {held:g} held + {want:g} asked > global limit {limit:g}",
            }
    for res, limit in sorted(quota.gpu_hours.items()):
        if demand.get(res, 0.0) <= 0:
            continue
        used = usage.gpu_hours.get(res, 0.0)
        more = (expected_gpu_hours or {}).get(res, 0.0)
        if used >= limit - EPS or used + more > limit + EPS:
            return {
                "code": "global_gpu_hours",
                "message": f"{res}: {used:.2f} GPU-hours used (+{more:.2f} expected) of {limit:g} "
                f"this window",
            }
    return None


def split_gpu_hours(
    gpus: Mapping[str, float], start: float, end: float, window_s: float
) -> dict[float, dict[str, float]]:
    """GPU-hours of a run holding ``gpus`` from ``start`` to ``end``, per window it ran in."""
    out: dict[float, dict[str, float]] = {}
    t = start
    while t < end:
        w = window_start(t, window_s)
        stop = min(end, w + window_s)
        hours = (stop - t) / 3600.0
        out[w] = {res: n * hours for res, n in gpus.items() if n > 0}
        t = stop
    return out


class LedgerBook:
    """The ledger in memory: reservations by key and GPU-hour charges by (key, window, resource)."""

    def __init__(self) -> None:
        self.reservations: dict[str, Reservation] = {}
        self.charges: dict[tuple[str, float, str], tuple[str, float]] = {}  # → (tenant, hours)
        self._held: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def usage(self, tenant_id: str, now: float, window_s: float) -> Usage:
        """The tenant's held resources and its GPU-hours in the window of ``now``."""
        w = window_start(now, window_s)
        hours: dict[str, float] = defaultdict(float)
        for (_key, win, res), (tenant, amount) in self.charges.items():
            if tenant == tenant_id and win == w:
                hours[res] += amount
        return Usage(concurrent=dict(self._held[tenant_id]), gpu_hours=dict(hours))

    def reserve(
        self,
        key: str,
        tenant_id: str,
        demand: Mapping[str, float],
        *,
        quota: Optional[GlobalQuota],
        now: float,
        expected_gpu_hours: Optional[Mapping[str, float]] = None,
    ) -> ReserveResult:
        """Reserve ``demand`` under ``key``; the same key again returns the first grant."""
        prior = self.reservations.get(key)
        if prior is not None:
            if prior.tenant_id != tenant_id or dict(prior.demand) != dict(demand):
                raise LedgerConflict(f"key {key!r} was used for another tenant or demand")
            return ReserveResult(ok=prior.state != "released", reservation=prior, replay=True)
        window = quota.window_s if quota else 86_400.0
        why = check(quota, self.usage(tenant_id, now, window), demand, expected_gpu_hours=expected_gpu_hours)
        if why is not None:
            return ReserveResult(ok=False, reason=why)
        r = Reservation(key, tenant_id, dict(demand), "reserved", now)
        self.reservations[key] = r
        self._hold(r, 1.0)
        return ReserveResult(ok=True, reservation=r)

    def commit(self, key: str) -> Reservation:
        """Mark ``key`` accepted by a region (idempotent); a released one cannot be committed."""
        r = self._get(key)
        if r.state == "released":
            raise LedgerConflict(f"key {key!r} was released")
        r = Reservation(r.key, r.tenant_id, r.demand, "committed", r.at)
        self.reservations[key] = r
        return r

    def release(self, key: str) -> Reservation:
        """Give back what ``key`` holds (idempotent)."""
        r = self._get(key)
        if r.state != "released":
            self._hold(r, -1.0)
            r = Reservation(r.key, r.tenant_id, r.demand, "released", r.at)
            self.reservations[key] = r
        return r

    def charge(self, key: str, tenant_id: str, per_window: Mapping[float, Mapping[str, float]]) -> None:
        """Record ``key``'s GPU-hours so far per window (totals, not increments: a resend is a no-op)."""
        for win, by_res in per_window.items():
            for res, hours in by_res.items():
                self.charges[(key, win, res)] = (tenant_id, hours)

    def _get(self, key: str) -> Reservation:
        r = self.reservations.get(key)
        if r is None:
            raise KeyError(f"no reservation {key!r}")
        return r

    def _hold(self, r: Reservation, sign: float) -> None:
        held = self._held[r.tenant_id]
        for res, n in r.demand.items():
            held[res] += sign * n
