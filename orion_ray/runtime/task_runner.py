"""What runs inside a task workload's reservation: import the callable, call it, capture its output.

Returns an envelope instead of raising so the scheduler always learns the outcome, the captured
stdout/stderr included, even when the callable fails.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
import traceback
import types
from typing import Any, Iterable, Optional

# absolute, and the one non-stdlib import: the denylist, itself standard library only
from orion_ray.trust import function_problem, module_denied, origin_denied

# Orion's own runners: the only ``orion_ray`` callables a task may be, put there by Orion itself
# (an inference workload's task); the door refuses them in a tenant's spec.
ORION_RUNNERS = frozenset(
    {"orion_ray.serving.inference:run_inference", "orion_ray.pipelines.sql_task:run_sql"}
)


class _Tee(io.TextIOBase):
    """Write to the worker's real stream (Ray's own logs) and keep a capped copy for Orion."""

    def __init__(self, real, buffer: list[str], cap: int):
        self.real, self.buffer, self.cap, self.size = real, buffer, cap, 0

    def write(self, s: str) -> int:
        try:
            self.real.write(s)
        except Exception:  # the worker's stream is best effort; Orion's copy is what matters
            pass
        if self.size < self.cap:
            self.buffer.append(s[: self.cap - self.size])
            if self.size + len(s) > self.cap:  # marked, so a reader knows the rest is missing
                self.buffer.append(f"\n…[truncated by Orion: output over {self.cap} characters]\n")
        self.size += len(s)
        return len(s)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self.real.flush()


MAX_RESULT_DEPTH = 64  # input_limits.MAX_RESULT_DEPTH


def _depth(value: Any, limit: int = MAX_RESULT_DEPTH + 1) -> int:
    """Nesting depth of lists/dicts, counted no further than ``limit`` (no deep recursion)."""
    level, frontier = 0, [value]
    while frontier and level < limit:
        nxt: list = []
        for v in frontier:
            if isinstance(v, dict):
                nxt.extend(v.values())
            elif isinstance(v, (list, tuple)):
                nxt.extend(v)
        if not nxt:
            break
        level, frontier = level + 1, nxt
    return level


class RefusedFunction(PermissionError):
    """The task names a callable the denylist refuses (``orion_ray.trust``)."""


def resolve(function: str, allowed: Iterable[str] = ()):
    """Import ``package.module:attr.path`` and return the object, unless the denylist refuses it.

    Checked again here, in the worker, whatever the door decided (defence in depth): the named
    module, every module the attribute path walks through, and the module the callable itself
    comes from (``mypkg:run`` where ``run = os.system`` is ``os``'s)."""
    allowed = tuple(allowed)
    trusted = function in ORION_RUNNERS
    problem = None if trusted else function_problem(function, allowed)
    if problem:
        raise RefusedFunction(f"{function}: {problem}")
    module_name, _, attr_path = function.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
        if not trusted and isinstance(obj, types.ModuleType) and module_denied(obj.__name__, allowed):
            raise RefusedFunction(f"{function}: reaches module {obj.__name__!r}, which tenants may not call")
    if not callable(obj):
        raise TypeError(f"{function} is not callable")
    origin = getattr(obj, "__module__", None)
    # a module the operator allowed is trusted whole (os.path's callables are posixpath's)
    named_allowed = any(module_name == a or module_name.startswith(a + ".") for a in allowed)
    if not (trusted or named_allowed) and isinstance(origin, str) and origin_denied(origin, allowed):
        raise RefusedFunction(f"{function}: is {origin!r}'s, which tenants may not call")
    return obj


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """Set environment variables for one call (workers are reused across workloads)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_callable(
    function: str,
    args: list,
    kwargs: dict,
    max_result_bytes: int,
    max_log_bytes: int,
    env: Optional[dict[str, str]] = None,
    allowed_modules: Iterable[str] = (),
) -> dict:
    """Call ``function(*args, **kwargs)`` with ``env`` set; return
    ``{"ok", "result"|"error", "logs"}``. ``allowed_modules``: the tenant's exceptions to the
    task-function denylist."""
    captured: list[str] = []
    out = _Tee(sys.stdout, captured, max_log_bytes)
    err = _Tee(sys.stderr, captured, max_log_bytes)
    try:
        with _environ(env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            fn = resolve(function, allowed_modules)
            value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, SystemExit included
        captured.append(traceback.format_exc())
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "logs": "".join(captured)}
    logs = "".join(captured)
    # strict JSON only: a NaN or a too-deep value would be stored, then break every read of it
    # (the scheduler checks again with ``input_limits.strict_json_problem``; a worker imports
    # the standard library only, so the depth bound is repeated here)
    try:
        if _depth(value) > MAX_RESULT_DEPTH:
            raise ValueError(f"nested deeper than {MAX_RESULT_DEPTH} levels")
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return {"ok": False, "error": f"result is not valid JSON ({type(exc).__name__}: {exc})", "logs": logs}
    if len(text.encode()) > max_result_bytes:
        return {
            "ok": False,
            "logs": logs,
            "error": f"result is {len(text.encode())} bytes, over the {max_result_bytes}-byte cap",
        }
    return {"ok": True, "result": value, "logs": logs}
