"""Structured logs: JSON lines with the tenant, the workload and the trace (``orion.logging``).

``log_context(tenant_id=…, workload_id=…)`` puts ids on every line logged inside it (the API sets
the tenant per request, the scheduler the workload while it drives one); a record's own
``extra={"workload_id": …}`` wins. Inside a span the line carries ``trace_id`` and ``span_id``,
so a log line leads to its trace and back.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

from . import tracing

# the ids a JSON line takes from the record's ``extra`` or the context
FIELDS = ("tenant_id", "workload_id", "pipeline_run_id", "node", "attempt")
_NONE: dict[str, Any] = {}
_fields: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("orion_log_fields", default=_NONE)


class _LogContext:
    """``with log_context(**ids):`` ids for the lines logged inside; ``log_context.set_fields``
    adds ids to the innermost open context (the request's, once its tenant is known)."""

    @contextlib.contextmanager
    def __call__(self, **fields: Any) -> Iterator[None]:
        token = _fields.set({**_fields.get(), **{k: v for k, v in fields.items() if v is not None}})
        try:
            yield
        finally:
            _fields.reset(token)

    def set_fields(self, **fields: Any) -> None:
        current = _fields.get()
        if current is _NONE:  # no context open: never mutate the shared default
            _fields.set({k: v for k, v in fields.items() if v is not None})
        else:
            current.update({k: v for k, v in fields.items() if v is not None})

    def get(self) -> dict[str, Any]:
        return dict(_fields.get())


log_context = _LogContext()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the ids, the trace, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = _fields.get()
        for k in FIELDS:
            v = getattr(record, k, None)
            if v is None:
                v = ids.get(k)
            if v is not None:
                out[k] = v
        trace_id, span_id = tracing.current_ids()
        if trace_id is not None:
            out["trace_id"], out["span_id"] = trace_id, span_id
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(config: Any, *, root: Optional[logging.Logger] = None) -> None:
    """Format this process's log lines as ``config`` (a ``LoggingConfig``) says. ``json``: every
    handler of the root logger (one on stderr if it has none) gets the JSON formatter; ``text``
    (the default) leaves the handlers as the process made them. A ``level`` is set either way."""
    root = root if root is not None else logging.getLogger()
    if config.level is not None:
        root.setLevel(config.level)
    if config.format != "json":
        return
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for h in root.handlers:
        h.setFormatter(JsonFormatter())


def setup_process(orion: Any, *, service: str) -> None:
    """Tracing and log format of one of Orion's processes from its ``orion`` config section;
    a tracing set-up that fails (an exporter not installed) is logged, never fatal."""
    configure_logging(orion.logging)
    try:
        tracing.setup(orion.tracing, service=service)
    except Exception:
        logging.getLogger("orion.tracing").exception("tracing not set up in %s", service)
