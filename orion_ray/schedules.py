"""Durations and schedule windows as ``orion.yaml`` writes them (a model-layer parser, standard
library only): the config validates them at load, and the autoscaling policy evaluates the windows.

Durations: seconds as a number, or ``"30s"``, ``"10m"``, ``"8h"``, ``"14d"``.

Cron: five-field expressions, times in UTC. Fields: minute hour day-of-month month day-of-week, each
``*``, a number, a list ``1,3``, a range ``1-5`` or a step ``*/15`` / ``0-30/10``; day-of-week 0-6
with 0 = Sunday (7 is also Sunday). As in Vixie cron, when both day-of-month and day-of-week are
restricted a day matches if either does; otherwise both must match.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Optional

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(field: str, value) -> float:
    """Seconds; ``ValueError("<field>: '5x' is not a duration")`` for anything else, negatives
    included."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"{field}: {value!r} is not a duration")
        return float(value)
    if isinstance(value, str):
        m = _RE.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"{field}: {value!r} is not a duration")


_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)


class Cron(NamedTuple):
    minutes: tuple[int, ...]  # ascending
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_any: bool  # day-of-month field was "*"
    weekday_any: bool

    def day_matches(self, day: _dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays  # isoweekday: Monday 1 .. Sunday 7
        if self.day_any or self.weekday_any:
            return dom and dow
        return dom or dow


def _parse_field(text: str, name: str, lo: int, hi: int, expr: str) -> set[int]:
    def bad(why: str) -> ValueError:
        return ValueError(f"cron: {expr!r} {name} field {text!r}: {why}")

    def num(s: str) -> int:
        if not s.isdigit():
            raise bad(f"{s!r} is not a number")
        v = int(s)
        if not lo <= v <= hi:
            raise bad(f"{v} is out of range {lo}-{hi}")
        return v

    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        step = 1
        if _:
            if not step_s.isdigit() or int(step_s) == 0:
                raise bad(f"step {step_s!r} is not a positive number")
            step = int(step_s)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a_s, _, b_s = rng.partition("-")
            a, b = num(a_s), num(b_s)
            if a > b:
                raise bad(f"range {rng!r} is backwards")
        else:
            a = num(rng)
            b = hi if _ else a  # "5/15" means from 5 every 15, as in Vixie cron
        out.update(range(a, b + 1, step))
    return out


def parse_cron(expr: str) -> Cron:
    """Parse a 5-field cron expression; ``ValueError`` whose message starts with ``cron:``."""
    if not isinstance(expr, str):
        raise ValueError(f"cron: {expr!r} is not a string")
    return _parse_cron(expr)


@functools.lru_cache(maxsize=256)  # windows are re-checked every autoscaler cycle
def _parse_cron(expr: str) -> Cron:
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(
            f"cron: {expr!r} has {len(parts)} fields, expected 5 (minute hour day-of-month month day-of-week)"
        )
    sets = [_parse_field(p, name, lo, hi, expr) for p, (name, lo, hi) in zip(parts, _FIELDS)]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    return Cron(
        tuple(sorted(sets[0])),
        tuple(sorted(sets[1])),
        frozenset(sets[2]),
        frozenset(sets[3]),
        weekdays,
        parts[2].startswith("*"),
        parts[4].startswith("*"),
    )


def last_match(cron: Cron, now: float, not_before: float) -> Optional[float]:
    """Latest match time ``t`` (a whole UTC minute) with ``not_before < t <= now``, or ``None``.

    Walks back a day at a time and, in a matching day, takes the latest hour/minute directly, so
    a 7-day window costs about 8 day checks instead of 10,000 minute checks.
    """
    moment = _dt.datetime.fromtimestamp(now, tz=_dt.timezone.utc)
    day = moment.date()
    limit = (moment.hour, moment.minute)
    while True:
        start = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.timezone.utc).timestamp()
        if start + 86400 <= not_before:
            return None
        if cron.day_matches(day):
            hm = _latest_time(cron, limit)
            if hm is not None:
                t = start + hm[0] * 3600 + hm[1] * 60
                return t if t > not_before else None
        day -= _dt.timedelta(days=1)
        limit = (23, 59)


def _latest_time(cron: Cron, limit: tuple[int, int]) -> Optional[tuple[int, int]]:
    for h in reversed(cron.hours):
        if h > limit[0]:
            continue
        minutes = [m for m in cron.minutes if h < limit[0] or m <= limit[1]]
        if minutes:
            return h, minutes[-1]
    return None


@dataclass(frozen=True)
class ScheduleWindow:
    """From each cron match on, for ``duration_s``, the pool keeps at least ``size`` nodes."""

    cron: str
    duration_s: float
    size: int

    def __post_init__(self) -> None:
        parse_cron(self.cron)  # fail at construction, with the field named

    def opened_at(self, now: float) -> Optional[float]:
        """Start of the occurrence open at ``now`` (``t <= now < t + duration_s``), or ``None``."""
        if self.duration_s <= 0:
            return None
        return last_match(parse_cron(self.cron), now, now - self.duration_s)

    def is_open(self, now: float) -> bool:
        return self.opened_at(now) is not None


def parse_window(d: Mapping[str, Any]) -> ScheduleWindow:
    """A window from its orion.yaml shape ``{cron: "0 9 * * 1-5", duration: "8h", size: 4}``.

    ``ValueError`` names the bad field."""
    if not isinstance(d, Mapping):
        raise ValueError(f"schedule window: {d!r} is not a mapping")
    for key in ("cron", "duration", "size"):
        if key not in d:
            raise ValueError(f"{key}: missing in schedule window {dict(d)!r}")
    size = d["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size: {size!r} is not a non-negative integer")
    duration = parse_duration("duration", d["duration"])
    if duration <= 0:
        raise ValueError(f"duration: {d['duration']!r} must be positive")
    return ScheduleWindow(d["cron"], duration, size)
