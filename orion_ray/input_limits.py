"""Bounds on what a tenant may send and on what Orion stores and returns (issue 14, items 4 and 6).

Every free-form value of a submission (``args``, ``kwargs``, ``runtime_env``, ``input``, labels)
is walked once at the door: a value Orion could accept but never read back (nested deeper than
pydantic's JSON parser allows, a NaN that JSON cannot carry, an integer no other language can
hold) is a 422 naming its path, never a 500 later on a read, a listing or a recovery. Error text
and logs shown to a tenant are capped with a marked truncation. Pure: no Ray, no FastAPI.
The numbers are documented in ``docs/workloads.md`` (Limits).
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

MAX_DEPTH = 32  # nesting of lists/objects in one field (pydantic's JSON parser stops at 200)
MAX_ITEMS = 10_000  # elements of one list or members of one object
MAX_NODES = 100_000  # values in one field altogether
MAX_STRING_CHARS = 65_536  # one string value
MAX_KEY_CHARS = 256  # one object key
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what every JSON reader (and SQLite) can hold
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 128
MAX_LABEL_VALUE_CHARS = 1024
MAX_ERROR_CHARS = 4096  # a stored or shown ``error`` / ``reason``
MAX_LOG_CHARS = 1_048_576  # stored and live logs (the task runner's own cap is in bytes)
MAX_RESULT_DEPTH = 64  # a task's result: readable back by every reader, answerable as JSON
TRUNCATED = "…[truncated by Orion: {n} more characters]"


class LimitError(ValueError):
    """A value over a bound: ``path`` (dotted, list indexes as numbers) and ``reason``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path, self.reason = path, reason


def _join(path: str, part: Any) -> str:
    return f"{path}.{part}" if path else str(part)


def check_value(value: Any, path: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``LimitError`` if ``value`` (parsed JSON) is over a bound or is not strict JSON:
    NaN/Infinity, an integer outside int64, a string or key too long, too deep, too many items."""
    budget = [MAX_NODES]

    def walk(v: Any, p: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise LimitError(p, f"more than {MAX_NODES} values in one field")
        if v is None or isinstance(v, bool):
            return
        if isinstance(v, int):
            if not INT_MIN <= v <= INT_MAX:
                raise LimitError(p, "integer outside the 64-bit range")
            return
        if isinstance(v, float):
            if not math.isfinite(v):
                raise LimitError(p, "NaN and Infinity are not JSON numbers")
            return
        if isinstance(v, str):
            if len(v) > MAX_STRING_CHARS:
                raise LimitError(p, f"string longer than {MAX_STRING_CHARS} characters")
            return
        if isinstance(v, (list, tuple, dict)):
            if depth >= max_depth:
                raise LimitError(p, f"nested deeper than {max_depth} levels")
            if len(v) > MAX_ITEMS:
                raise LimitError(p, f"more than {MAX_ITEMS} items")
            if isinstance(v, dict):
                for k, item in v.items():
                    if not isinstance(k, str):
                        raise LimitError(p, "object keys must be strings")
                    if len(k) > MAX_KEY_CHARS:
                        raise LimitError(p, f"a key is longer than {MAX_KEY_CHARS} characters")
                    walk(item, _join(p, k), depth + 1)
            else:
                for i, item in enumerate(v):
                    walk(item, _join(p, i), depth + 1)
            return
        raise LimitError(p, f"{type(v).__name__} is not a JSON value")

    walk(value, path, 0)


def strict_json_problem(value: Any) -> Optional[str]:
    """Why ``value`` (a task's result) cannot be stored and answered as strict JSON, or None."""
    try:
        check_value(value, "result", max_depth=MAX_RESULT_DEPTH)
        json.dumps(value, allow_nan=False)
    except LimitError as exc:
        return f"result is not valid JSON ({exc})"
    except (TypeError, ValueError, RecursionError) as exc:
        return f"result is not valid JSON ({type(exc).__name__}: {exc})"
    return None


def cap_text(text: Optional[str], limit: int = MAX_ERROR_CHARS, *, keep: str = "head") -> Optional[str]:
    """``text`` cut to ``limit`` characters with a marked truncation (``keep="tail"`` keeps the
    end: the useful part of a log). None stays None."""
    if text is None or len(text) <= limit:
        return text
    cut = len(text) - limit
    mark = TRUNCATED.format(n=cut)
    if keep == "tail":
        return mark + "\n" + text[cut:]
    return text[:limit] + mark
