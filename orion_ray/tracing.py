"""Tracing: OpenTelemetry set-up, span helpers and W3C ``traceparent`` propagation (docs/tracing.md).

Call sites stay one or two lines: ``with tracing.span("orion.submit", tenant=t):``, or, for what
is only known when it is over (a workload's admission, placement and run; a pipeline run and its
nodes), ``tracing.record(name, parent=tp, start=t0, end=t1, ...)``, which emits a finished span
with explicit times. A workload keeps the ``traceparent`` it was submitted under (its lifecycle
JSON), so spans made later, in another process or after a restart, join the same trace.

Spans whose id must be known before they are emitted (a pipeline run is the parent of its nodes
long before it ends) get a *derived* id: a hash of the trace id and names (``derive``), the same
in every process and after a restart, so nothing but the parent's traceparent needs storing.

Spans are exported in batches off the calling thread (``file`` every ``FILE_DELAY_MS``), and
flushed at shutdown and at a clean exit; ``record`` builds its finished span directly rather than
starting and ending one through the SDK (the cheaper half of a workload's spans).

Off (the default) every helper returns at once: no provider, no span object, no context lookup.
Only the API of OpenTelemetry is imported here; the SDK when ``setup`` turns tracing on, and the
OTLP exporter only when it is configured.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import threading
from typing import Any, Callable, Iterator, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

log = logging.getLogger("orion.tracing")

# The environment variable a run's process gets its parent from (the name OpenTelemetry's
# environment-carrier convention uses), so tenant code with its own tracing joins the trace.
ENV_TRACEPARENT = "TRACEPARENT"

_tracer: Optional[trace.Tracer] = None
_provider: Any = None
# where ``record`` hands its finished spans (the provider's processor's ``on_end``; None when
# nothing exports them), and what they carry: the provider's resource and this library's scope
_sink: Optional[Callable[[Any], None]] = None
_resource: Any = None
_scope: Any = None
_UNSET = Status(StatusCode.UNSET)
_ratio = 1.0  # the sampling ratio, for the flags of a ``root`` context
_lock = threading.Lock()

# The ``file`` exporter's batching: spans wait at most FILE_DELAY_MS in memory (what a process
# killed without its exit handlers loses), a batch is written early once FILE_BATCH are waiting,
# and beyond FILE_QUEUE waiting spans new ones are dropped (a burst of ~1,000 workloads a second
# makes ~3,000 spans in a delay).
FILE_DELAY_MS = 500
FILE_BATCH = 512
FILE_QUEUE = 16384


def enabled() -> bool:
    """Whether this process makes spans."""
    return _tracer is not None


def setup(config: Any, *, service: str, exporter: Any = None) -> bool:
    """Turn tracing on in this process as ``config`` (a ``TracingConfig``) says; ``service``
    names the process (``orion-api``, ``orion-scheduler``). ``exporter`` replaces the configured
    one (tests pass the SDK's ``InMemorySpanExporter``). Idempotent: a second call replaces the
    first. Returns whether tracing is on."""
    global _tracer, _provider, _ratio
    if not getattr(config, "enabled", False):
        shutdown()
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    provider = TracerProvider(
        sampler=_sampler(config.sample_ratio),
        resource=Resource.create({"service.name": config.service_name, "orion.process": service}),
        shutdown_on_exit=True,  # atexit: the batch still buffered is written when the process ends
    )
    processor: Any = None
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    elif config.exporter == "file":
        # batched: the JSON encoding and the write happen on the processor's thread, off the
        # request and scheduling path; what a killed process loses is its last FILE_DELAY_MS
        processor = BatchSpanProcessor(
            JsonLinesExporter(config.path),
            max_queue_size=FILE_QUEUE,
            schedule_delay_millis=FILE_DELAY_MS,
            max_export_batch_size=FILE_BATCH,
        )
    elif config.exporter in ("console", "otlp"):
        processor = BatchSpanProcessor(_exporter(config))
    if processor is not None:
        provider.add_span_processor(processor)
    global _sink, _resource, _scope
    with _lock:
        old = _provider
        _provider, _tracer, _ratio = provider, provider.get_tracer("orion_ray"), config.sample_ratio
        _sink = processor.on_end if processor is not None else None
        # the scope as ``get_tracer`` makes it (no version, no schema: empty strings)
        _resource, _scope = provider.resource, InstrumentationScope("orion_ray", "", "")
    if old is not None:
        old.shutdown()
    return True


def shutdown() -> None:
    """Flush and turn tracing off in this process."""
    global _tracer, _provider, _sink
    with _lock:
        old, _provider, _tracer, _sink = _provider, None, None, None
    if old is not None:
        old.shutdown()


def flush(timeout_s: float = 5.0) -> bool:
    """Export what is buffered now (before a process stops, or in a test that reads the span
    file); waits at most ``timeout_s``. Returns whether everything was exported (True when
    tracing is off). Never raises: a process on its way out must not fail here."""
    provider = _provider
    if provider is None:
        return True
    try:
        return bool(provider.force_flush(int(timeout_s * 1000)))
    except Exception:
        log.warning("spans not flushed", exc_info=True)
        return False


def _exporter(config: Any) -> Any:
    """The configured exporter; the OTLP package only imported when it is asked for."""
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(formatter=lambda s: span_json(s) + os.linesep)
    try:
        if config.protocol == "http":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[no-redef]
                OTLPSpanExporter,
            )
    except ImportError as exc:
        from .errors import ConfigError

        raise ConfigError(
            f"tracing.exporter otlp needs the OTLP exporter: pip install 'orion-ray[tracing]' ({exc})",
            [{"field": "orion.tracing.exporter", "problem": "opentelemetry-exporter-otlp is not installed"}],
        ) from None
    return OTLPSpanExporter(endpoint=config.endpoint) if config.endpoint else OTLPSpanExporter()


def _sampler(ratio: float) -> Any:
    """A child follows its parent; a root is sampled by ``ratio`` of its trace id. At 1.0 (the
    default) the root's decision is ALWAYS_ON: the same answer without hashing a bound per span."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    return ParentBased(ALWAYS_ON if ratio >= 1.0 else TraceIdRatioBased(ratio))


# -- W3C traceparent ------------------------------------------------------------------------------
def parse(traceparent: Optional[str]) -> Optional[SpanContext]:
    """The span context of a W3C ``traceparent`` (``00-<trace>-<span>-<flags>``); None when it
    is absent or malformed (a bad value never fails a request: the span starts a new trace)."""
    if not traceparent or not isinstance(traceparent, str) or len(traceparent) > 128:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or parts[0] == "ff" or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0xFF))


def format_traceparent(ctx: SpanContext) -> str:
    """``ctx`` as a W3C ``traceparent`` (of its flags, the sampled bit only: the same text for
    the same span whichever process formats it)."""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags) & 0x01:02x}"


def traceparent() -> Optional[str]:
    """The current span's ``traceparent`` (None when tracing is off or no span is current)."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return format_traceparent(ctx) if ctx.is_valid else None


def trace_id(tp: Optional[str]) -> Optional[str]:
    """The 32-hex trace id of a ``traceparent`` (what a status shows), or None."""
    ctx = parse(tp)
    return f"{ctx.trace_id:032x}" if ctx is not None else None


def derive(tp: Optional[str], *names: Any) -> Optional[str]:
    """A child ``traceparent`` of ``tp`` whose span id is a hash of the trace and ``names``: the
    same wherever and whenever it is computed (a pipeline run's span id, known to its nodes
    before the run span is emitted). None when ``tp`` is None or malformed."""
    ctx = parse(tp)
    if ctx is None:
        return None
    digest = hashlib.sha256("/".join([f"{ctx.trace_id:032x}", *map(str, names)]).encode()).digest()
    span_id = int.from_bytes(digest[:8], "big") or 1
    return format_traceparent(SpanContext(ctx.trace_id, span_id, True, ctx.trace_flags))


def root(*names: Any) -> Optional[str]:
    """A root ``traceparent`` whose trace and span ids are hashes of ``names`` (a pipeline run's
    trace, the same in every process and after a restart); sampled as the configured ratio
    would sample its trace id. None when tracing is off."""
    if _tracer is None:
        return None
    digest = hashlib.sha256("/".join(map(str, names)).encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    sampled = trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < TraceIdRatioBased.get_bound_for_rate(_ratio)
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return format_traceparent(SpanContext(trace_id, span_id, True, flags))


def _context_of(tp: Optional[str]) -> Optional[otel_context.Context]:
    ctx = parse(tp)
    return trace.set_span_in_context(NonRecordingSpan(ctx)) if ctx is not None else None


# -- spans ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def span(
    name: str, *, parent: Optional[str] = None, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any
) -> Iterator[Any]:
    """A span around the block (the current one's child, or ``parent``'s, a ``traceparent``);
    yields the span, or None when tracing is off. An exception leaving the block marks it an
    error and goes on."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(
        name, context=_context_of(parent), kind=kind, attributes=clean(attributes)
    ) as s:
        yield s


@contextlib.contextmanager
def within(tp: Optional[str]) -> Iterator[None]:
    """Make ``tp`` the current parent for the block (spans and ``traceparent()`` inside it are
    its children), e.g. a pipeline node's context while its workload is made."""
    ctx = _context_of(tp) if _tracer is not None else None
    if ctx is None:
        yield
        return
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def record(
    name: str,
    *,
    parent: Optional[str],
    start: float,
    end: float,
    own: Optional[str] = None,
    error: Optional[str] = None,
    **attributes: Any,
) -> Optional[str]:
    """Emit a finished span from ``start`` to ``end`` (POSIX seconds) under ``parent``; with
    ``own`` (a ``derive``-d or ``root`` traceparent) the span takes that id, and with ``own`` and
    no parent it is the root of ``own``'s trace. Nothing when tracing is off, or with neither (a
    workload submitted while tracing was off). ``error`` marks it failed. Returns the span's
    traceparent."""
    if _tracer is None:
        return None
    forced = parse(own)
    if parent is not None:
        up = parse(parent)
        if up is None:
            return None
        trace_id, sampled = up.trace_id, up.trace_flags.sampled  # ParentBased: the parent decides
    elif forced is not None:
        up, trace_id, sampled = None, forced.trace_id, forced.trace_flags.sampled  # a root: ``own``'s trace
        if not sampled:
            return None  # the same decision ``root`` made for its children
    else:
        return None
    span_id = forced.span_id if forced is not None else random.getrandbits(64) or 1
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
    sink = _sink
    if sampled and sink is not None:
        # The finished span is built as it is exported, not started and ended through the SDK:
        # its times, ids and parent are all known, and this skips the sampler, the span's lock
        # and attribute re-validation (``clean`` made them valid), a third of a span's cost.
        from opentelemetry.sdk.trace import ReadableSpan

        sink(
            ReadableSpan(
                name=name,
                context=ctx,
                parent=up,
                resource=_resource,
                attributes=clean(attributes),
                kind=SpanKind.INTERNAL,
                status=Status(StatusCode.ERROR, error[:500]) if error else _UNSET,
                start_time=_ns(start),
                end_time=_ns(max(end, start)),
                instrumentation_scope=_scope,
            )
        )
    return format_traceparent(ctx)


def annotate(**attributes: Any) -> None:
    """Add attributes to the current span (a no-op when tracing is off or none is current)."""
    if _tracer is None:
        return
    s = trace.get_current_span()
    if s.is_recording():
        s.set_attributes(clean(attributes))


def current_ids() -> tuple[Optional[str], Optional[str]]:
    """``(trace_id, span_id)`` of the current span as hex, for log lines; Nones when none."""
    if _tracer is None:
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attributes OpenTelemetry accepts: ``orion.``-prefixed unless dotted already, Nones
    dropped, other values as text (lists of text stay lists)."""
    out: dict[str, Any] = {}
    for k, v in attributes.items():
        if v is None:
            continue
        key = k if "." in k else f"orion.{k}"
        if isinstance(v, (bool, int, float, str)):
            out[key] = v
        elif isinstance(v, (list, tuple)):
            out[key] = [x if isinstance(x, str) else json.dumps(x, default=str) for x in v]
        else:
            out[key] = json.dumps(v, default=str)
    return out


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


# -- the file exporter ----------------------------------------------------------------------------
# one encoder for every line (``json.dumps`` with ``default=`` builds a new one per call)
_encode = json.JSONEncoder(default=str).encode


def span_json(s: Any) -> str:
    """One finished span as a compact JSON object (the file and console exporters' line)."""
    ctx = s.get_span_context()
    parent = s.parent
    return _encode(
        {
            "name": s.name,
            "trace_id": f"{ctx.trace_id:032x}",
            "span_id": f"{ctx.span_id:016x}",
            "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
            "kind": s.kind.name,
            "start": s.start_time / 1e9 if s.start_time else None,
            "end": s.end_time / 1e9 if s.end_time else None,
            "status": s.status.status_code.name,
            "status_message": s.status.description,
            "attributes": dict(s.attributes or {}),
            "service": s.resource.attributes.get("orion.process"),
        }
    )


class JsonLinesExporter:
    """Appends each span as one JSON line to ``path`` (several processes may share the file:
    a batch is one ``write`` in append mode, so lines of different processes never interleave
    within a line). ``setup`` puts it behind a ``BatchSpanProcessor``: ``export`` runs on the
    processor's thread, every ``FILE_DELAY_MS`` or ``FILE_BATCH`` spans, and on flush and
    shutdown."""

    def __init__(self, path: str):
        self.path = os.path.expanduser(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._fd: Optional[int] = None  # opened once: an open per span cost more than the span

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        text = "".join(span_json(s) + "\n" for s in spans)
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._fd, text.encode())
        except OSError:
            log.warning("cannot append spans to %s", self.path, exc_info=True)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is held here: a batch is written when it is exported (the processor's
        ``force_flush`` exports what it buffers)."""
        return True
