"""Durations as orion.yaml writes them: seconds as a number, or ``"30s"``, ``"10m"``, ``"8h"``,
``"14d"``."""
from __future__ import annotations

import re

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(field: str, value: object) -> float:
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
