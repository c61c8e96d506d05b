"""Seasonal forecast of a pool's node demand from the autoscaler's own history.

Demand is strongly weekly (office hours, nightly batches): the best guess for Monday 09:05 is
what past Mondays between 09:00 and 10:00 needed. Pure stdlib; times are UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

QUANTILE = 0.9  # high, so the forecast covers a busy week, but robust to a one-off spike


@dataclass(frozen=True)
class HistoryPoint:
    """What the reactive rule saw for ``pool`` at ``at``: ``nodes_needed`` nodes of demand."""

    at: float
    pool: str
    nodes_needed: float


def slot(t: float) -> tuple[int, int]:
    """(weekday with Monday = 0, hour of day), UTC. Arithmetic, not datetime: called per point."""
    days = math.floor(t / 86400)
    return (days + 3) % 7, int((t - days * 86400) // 3600)  # 1970-01-01 was a Thursday


def quantile(values: list[float], q: float = QUANTILE) -> float:
    """Nearest-rank quantile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def seasonal_forecast(
    points: Iterable[HistoryPoint], at: float, now: float, lookback_s: float, q: float = QUANTILE
) -> tuple[Optional[int], str]:
    """Nodes needed at ``at`` (rounded up), from points in ``[now - lookback_s, now]``.

    Uses the points in the same weekday and hour as ``at``; with none, the same hour on any day.
    ``(None, reason)`` when there is nothing to go on. ``points`` may hold several pools' points;
    the caller filters by pool.
    """
    weekday, hour = slot(at)
    same_slot: list[float] = []
    same_hour: list[float] = []
    seen = 0
    for p in points:
        if not now - lookback_s <= p.at <= now:  # older than the lookback, or from the future
            continue
        seen += 1
        wd, h = slot(p.at)
        if h == hour:
            same_hour.append(p.nodes_needed)
            if wd == weekday:
                same_slot.append(p.nodes_needed)
    if not seen:
        return None, "no history"
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[weekday]
    if same_slot:
        values, where = same_slot, f"{day} {hour:02d}:00-{hour:02d}:59 UTC"
    elif same_hour:
        values, where = same_hour, f"{hour:02d}:00-{hour:02d}:59 UTC on any day"
    else:
        return None, f"no history for {hour:02d}:00 UTC in {seen} points"
    value = math.ceil(quantile(values, q) - 1e-9)
    return value, (
        f"p{round(q * 100)} of {len(values)} points at {where} "
        f"within {lookback_s / 86400:g}d is {value} nodes"
    )
