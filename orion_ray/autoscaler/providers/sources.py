"""Which capacity sources a pool tries, in which order, in which zones — pure, no boto3.

Order per pool: its targeted capacity reservations first (they are paid for whether used or not),
then on-demand; for ``market: spot``, spot first, then on-demand when ``fallback: on_demand``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Optional, Sequence

from .pools import PoolConfig

RESERVATION, SPOT, ON_DEMAND = "reservation", "spot", "on_demand"


@dataclass(frozen=True)
class Reservation:
    """What a launch needs to know of one capacity reservation."""

    reservation_id: str
    instance_type: str
    zone: str
    available: int
    total: int = 0
    state: str = "active"
    match_criteria: str = "targeted"
    end_date: Optional[str] = None

    def to_dict(self) -> dict:
        return {
            "reservation_id": self.reservation_id,
            "instance_type": self.instance_type,
            "availability_zone": self.zone,
            "available": self.available,
            "total": self.total,
            "state": self.state,
            "instance_match_criteria": self.match_criteria,
            "end_date": self.end_date,
        }


@dataclass(frozen=True)
class Attempt:
    """One ``RunInstances`` call: a source in one zone (through one of the pool's subnets)."""

    source: str
    zone: str
    subnet_id: str
    reservation_id: Optional[str] = None

    @property
    def quota_bucket(self) -> str:
        """Reservations draw on the on-demand quota; spot has its own (AWS counts them apart)."""
        return SPOT if self.source == SPOT else ON_DEMAND

    def blocklist_key(self, instance_type: str) -> Hashable:
        if self.source == RESERVATION:
            return (RESERVATION, self.reservation_id)
        return (self.source, instance_type, self.zone)

    def describe(self) -> dict:
        d = {"source": self.source, "zone": self.zone, "subnet_id": self.subnet_id}
        if self.reservation_id:
            d["reservation_id"] = self.reservation_id
        return d


def source_order(pool: PoolConfig) -> list[str]:
    """The pool's sources, best first."""
    order = [RESERVATION] if pool.capacity_reservations else []
    if pool.market == SPOT:
        order.append(SPOT)
        if pool.fallback == ON_DEMAND:
            order.append(ON_DEMAND)
    else:
        order.append(ON_DEMAND)
    return order


def usable_reservations(
    pool: PoolConfig, reservations: Sequence[Reservation], count: int
) -> list[Reservation]:
    """The pool's reservations a gang of ``count`` fits in whole, in the pool's order.

    A reservation of another instance type, not active, or with fewer free slots than the gang is
    passed over: splitting a gang across sources would break all-or-nothing."""
    by_id = {r.reservation_id: r for r in reservations}
    out = []
    for rid in pool.capacity_reservations:
        r = by_id.get(rid)
        if (
            r is not None
            and r.state == "active"
            and r.instance_type == pool.instance_type
            and r.available >= count
        ):
            out.append(r)
    return out


def plan_attempts(
    pool: PoolConfig, subnet_zones: dict[str, str], reservations: Sequence[Reservation], count: int
) -> list[Attempt]:
    """Every attempt of one pass, in order: for each source, each zone of the pool once (the first
    subnet of a zone stands for it), reservations only in their own zone."""
    zones: dict[str, str] = {}
    for subnet in pool.subnets:
        zone = subnet_zones.get(subnet)
        if zone is not None and zone not in zones:
            zones[zone] = subnet
    attempts: list[Attempt] = []
    for source in source_order(pool):
        if source == RESERVATION:
            for r in usable_reservations(pool, reservations, count):
                if r.zone in zones:  # a reservation in a zone the pool has no subnet in is unusable
                    attempts.append(Attempt(RESERVATION, r.zone, zones[r.zone], r.reservation_id))
        else:
            attempts.extend(Attempt(source, zone, subnet) for zone, subnet in zones.items())
    return attempts


def split_blocked(
    attempts: Sequence[Attempt], instance_type: str, blocked_until: Callable[[Hashable], Optional[float]]
) -> tuple[list[Attempt], list[tuple[Attempt, float]]]:
    """``(to_try, skipped)``: attempts whose key is on the blocklist are skipped, with when it
    expires."""
    to_try, skipped = [], []
    for a in attempts:
        until = blocked_until(a.blocklist_key(instance_type))
        if until is None:
            to_try.append(a)
        else:
            skipped.append((a, until))
    return to_try, skipped
