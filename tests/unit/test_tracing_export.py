"""The ``file`` exporter behind its batch processor (orion_ray/tracing.py): spans leave the thread
that ended them, reach the file on ``flush``, on ``shutdown`` and at a clean process exit, and
none is lost on a clean stop; the lease-lost exit writes them before ``os._exit``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orion_ray import tracing
from orion_ray.observability_config import TracingConfig

ROOT = str(Path(__file__).resolve().parents[2])


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def spans_file(tmp_path):
    """Tracing on with the ``file`` exporter (as ``orion up`` configures it); off afterwards."""
    path = tmp_path / "spans.jsonl"
    tracing.setup(TracingConfig(enabled=True, exporter="file", path=str(path)), service="orion-test")
    yield path
    tracing.shutdown()


def test_the_file_exporter_is_batched_with_a_short_delay(spans_file):
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    (processor,) = tracing._provider._active_span_processor._span_processors
    assert isinstance(processor, BatchSpanProcessor)
    assert isinstance(processor.span_exporter, tracing.JsonLinesExporter)
    assert tracing.FILE_DELAY_MS <= 1000  # what a killed process can lose (docs/tracing.md)


def test_spans_are_written_by_the_processor_thread_without_a_flush(spans_file, monkeypatch):
    writers: list[threading.Thread] = []
    export = tracing.JsonLinesExporter.export

    def spy(self, batch):
        writers.append(threading.current_thread())
        return export(self, batch)

    monkeypatch.setattr(tracing.JsonLinesExporter, "export", spy)
    with tracing.span("orion.submit", tenant_id="alice"):
        pass
    deadline = time.monotonic() + 30  # a bound on the wait, not a timing claim
    while not lines(spans_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    (got,) = lines(spans_file)
    assert got["name"] == "orion.submit" and got["attributes"]["orion.tenant_id"] == "alice"
    assert writers and threading.current_thread() not in writers  # off the span's own thread


def test_flush_writes_every_buffered_span_and_says_so(spans_file):
    for i in range(700):  # more than one batch
        tracing.record("orion.run", parent=None, own=tracing.root("w", i), start=1.0, end=2.0, attempt=i)
    assert tracing.flush() is True
    got = lines(spans_file)
    assert sorted(s["attributes"]["orion.attempt"] for s in got) == list(range(700))


def test_shutdown_writes_what_is_buffered_and_loses_nothing(tmp_path):
    path = tmp_path / "spans.jsonl"
    tracing.setup(TracingConfig(enabled=True, exporter="file", path=str(path)), service="orion-test")
    try:
        for i in range(tracing.FILE_BATCH * 2 + 7):
            with tracing.span("s", i=i):
                pass
    finally:
        tracing.shutdown()
    got = lines(path)
    assert sorted(s["attributes"]["orion.i"] for s in got) == list(range(tracing.FILE_BATCH * 2 + 7))
    assert tracing.flush() is True  # off: nothing to do


def test_a_second_setup_flushes_the_first_provider_s_spans(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    tracing.setup(TracingConfig(enabled=True, exporter="file", path=str(first)), service="t")
    try:
        with tracing.span("before"):
            pass
        tracing.setup(TracingConfig(enabled=True, exporter="file", path=str(second)), service="t")
        with tracing.span("after"):
            pass
    finally:
        tracing.shutdown()
    assert [s["name"] for s in lines(first)] == ["before"]
    assert [s["name"] for s in lines(second)] == ["after"]


def test_a_process_that_exits_cleanly_writes_its_buffered_spans(tmp_path):
    """No flush, no shutdown: the provider's exit handler writes the batch (a Ray worker that
    leaves through ``sys.exit`` on SIGTERM, ``orion down``, runs the same handlers)."""
    path = tmp_path / "spans.jsonl"
    code = f"""
from orion_ray import tracing
from orion_ray.observability_config import TracingConfig
tracing.setup(TracingConfig(enabled=True, exporter="file", path={str(path)!r}), service="child")
for i in range(50):
    with tracing.span("child", i=i):
        pass
"""
    env = {**os.environ, "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    got = lines(path)
    assert sorted(s["attributes"]["orion.i"] for s in got) == list(range(50))
    assert {s["service"] for s in got} == {"child"}


def test_the_lease_lost_exit_writes_the_spans_before_os_exit(spans_file, monkeypatch):
    from orion_ray.scheduler import actor

    exits: list[tuple[int, int]] = []
    monkeypatch.setattr(actor.os, "_exit", lambda code: exits.append((code, len(lines(spans_file)))))
    with tracing.span("last"):
        pass
    actor._flush_and_exit()
    assert exits == [(1, 1)]  # the span was on disk when the process would have left


def test_a_ratio_of_one_samples_roots_and_children_follow_their_parent(spans_file):
    with tracing.span("root") as s:
        assert s.get_span_context().trace_flags.sampled
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    with tracing.span("child", parent=unsampled) as s:
        assert not s.is_recording()
    tracing.flush()
    assert [x["name"] for x in lines(spans_file)] == ["root"]


def test_a_recorded_span_carries_what_a_started_one_does(spans_file):
    """``record`` builds its finished span without the SDK's start/end: the same resource, scope,
    parent, status and attributes reach the exporter."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    got = tracing.record("orion.placement", parent=tp, start=5.0, end=6.0, error="no fit", nodes=["n1"])
    assert got is not None and got.startswith("00-0af7651916cd43dd8448eb211c80319c-") and got.endswith("-01")
    tracing.flush()
    (line,) = lines(spans_file)
    assert line["service"] == "orion-test" and line["parent_span_id"] == "b7ad6b7169203331"
    assert line["status"] == "ERROR" and line["status_message"] == "no fit"
    assert line["attributes"] == {"orion.nodes": ["n1"]} and (line["start"], line["end"]) == (5.0, 6.0)
    assert got.split("-")[2] == line["span_id"]

    memory = InMemorySpanExporter()
    tracing.setup(TracingConfig(enabled=True), service="orion-test", exporter=memory)
    tracing.record("orion.run", parent=tp, start=5.0, end=6.0)
    with tracing.span("orion.submit", parent=tp):
        pass
    recorded, started = memory.get_finished_spans()
    assert recorded.resource is started.resource
    assert recorded.instrumentation_scope == started.instrumentation_scope
    assert recorded.context.trace_flags == started.context.trace_flags
    assert recorded.parent == started.parent and recorded.kind == started.kind
