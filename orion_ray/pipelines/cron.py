"""Cron slots of a schedule in its time zone (croniter over ``zoneinfo``). Pure: no Ray, no clock.

Expressions: the five standard fields (minute hour day-of-month month day-of-week), the macros
``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``, or six fields whose first is the
second (as Quartz, Spring and robfig/cron's ``WithSeconds`` write it: ``*/5 * * * * *`` is every
five seconds). Times are wall-clock times in the schedule's ``timezone`` (an IANA name, default
``UTC``).

Daylight saving time, as Vixie/Debian cron does it: a wall-clock time that does not exist (the
hour skipped in spring) fires at the first instant after the jump; a wall-clock time that happens
twice (the hour repeated in autumn) fires once, at its first occurrence, unless the hour field is
a wildcard (``*``, ``*/2``…), whose every real hour is a slot. So a daily ``30 2 * * *`` runs
once on both change days, and ``30 * * * *`` runs every real hour.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
MAX_CRON_CHARS = 256


@dataclass(frozen=True)
class Cron:
    """A parsed expression in its zone."""

    expr: str
    timezone: str
    seconds: bool  # six fields, the first one seconds
    hour_wildcard: bool  # every real hour is a slot (see the module's DST rule)

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_cron(expr: str, timezone: str = "UTC") -> Cron:
    """A ``Cron`` or ``ValueError`` whose message says what is wrong (the caller names the field:
    ``cron`` or ``timezone``). Raises ``LookupError`` for an unknown time zone."""
    if not isinstance(expr, str) or not expr.strip() or len(expr) > MAX_CRON_CHARS:
        raise ValueError(f"a cron expression is a text of 1-{MAX_CRON_CHARS} characters")
    if not isinstance(timezone, str) or not timezone or len(timezone) > 64 or ".." in timezone:
        raise LookupError(f"{str(timezone)[:64]!r} is not an IANA time zone such as 'Europe/Paris'")
    try:
        _zone(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise LookupError(f"{timezone!r} is not an IANA time zone such as 'Europe/Paris'") from None
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValueError(f"{text!r}: the macros are {', '.join(MACROS)}")
        return Cron(text.lower(), timezone, False, text.lower() == "@hourly")
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ValueError(
            f"{len(fields)} fields: write five (minute hour day-of-month month day-of-week) "
            "or six with seconds first"
        )
    seconds = len(fields) == 6
    try:
        croniter(text, 0.0, second_at_beginning=seconds).get_next(float)
    except Exception as exc:  # croniter's errors vary by field (CroniterError, KeyError…)
        raise ValueError(f"{text!r} is not a valid cron expression ({str(exc)[:200]})") from None
    hour = fields[2 if seconds else 1]
    return Cron(text, timezone, seconds, hour.startswith("*"))


def _iter(cron: Cron, start: float) -> croniter:
    begin = dt.datetime.fromtimestamp(start, tz=cron.zone)
    return croniter(cron.expr, begin, second_at_beginning=cron.seconds)


def _repeated(moment: dt.datetime) -> bool:
    """The second occurrence of a wall-clock time the autumn change repeats."""
    return bool(moment.fold) and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def slots_after(cron: Cron, after: float, *, until: float, limit: int) -> list[float]:
    """The slots ``t`` with ``after < t <= until``, oldest first, at most ``limit`` of them."""
    out: list[float] = []
    it = _iter(cron, after)
    while len(out) < limit:
        moment = it.get_next(dt.datetime)
        t = moment.timestamp()
        if t > until:
            break
        if t <= after or (_repeated(moment) and not cron.hour_wildcard):
            continue
        out.append(t)
    return out


def next_slot(cron: Cron, after: float) -> float:
    """The first slot strictly after ``after``."""
    it = _iter(cron, after)
    for _ in range(4):  # a skipped repeated time is followed by a real slot
        moment = it.get_next(dt.datetime)
        t = moment.timestamp()
        if t > after and not (_repeated(moment) and not cron.hour_wildcard):
            return float(t)
    return float(t)


def latest_slot(cron: Cron, at_or_before: float) -> Optional[float]:
    """The latest slot at or before ``at_or_before`` (``None`` for none in the last 400 days)."""
    it = _iter(cron, at_or_before + 0.001)
    for _ in range(4):
        moment = it.get_prev(dt.datetime)
        t = moment.timestamp()
        if t < at_or_before - 400 * 86400:
            return None
        if not (_repeated(moment) and not cron.hour_wildcard):
            return float(t)
    return None


def slot_name(t: float) -> str:
    """The slot's time as it appears in a run's ``submission_id``: UTC, to the second."""
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def iso(t: Optional[float]) -> Optional[str]:
    """A time for the API: ISO 8601 in UTC (``None`` stays ``None``)."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).isoformat().replace("+00:00", "Z")
