"""Tracing helpers (orion_ray/tracing.py) with the SDK's in-memory exporter: W3C parsing and
propagation, derived ids, spans emitted after the fact, sampling, and the off switch."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orion_ray import tracing
from orion_ray.config import OrionConfig
from orion_ray.models import WorkloadSpec, new_workload
from orion_ray.observability_config import TracingConfig

TASK = {"workload_type": "task", "function": "math:factorial"}
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans():
    """Tracing on in this process, every span kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    tracing.setup(TracingConfig(enabled=True), service="test", exporter=exporter)
    yield exporter
    tracing.shutdown()


def hexid(n: int, width: int) -> str:
    return f"{n:0{width}x}"


# -- W3C traceparent ------------------------------------------------------------------------------
def test_a_traceparent_round_trips():
    ctx = tracing.parse(TP)
    assert ctx is not None and ctx.trace_flags.sampled and ctx.is_remote
    assert tracing.format_traceparent(ctx) == TP
    assert tracing.trace_id(TP) == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "garbage",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff is invalid
        "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",
        "00-" + "a" * 200,
        42,
    ],
)
def test_a_malformed_traceparent_is_ignored_not_an_error(bad):
    assert tracing.parse(bad) is None
    assert tracing.trace_id(bad) is None
    assert tracing.derive(bad, "x") is None


def test_derived_ids_are_the_same_everywhere_and_differ_by_name():
    a, b = tracing.derive(TP, "wl-1", 1, "run"), tracing.derive(TP, "wl-1", 1, "run")
    assert a == b and a is not None
    assert tracing.trace_id(a) == tracing.trace_id(TP)  # same trace, new span
    assert a.split("-")[2] != TP.split("-")[2]
    assert tracing.derive(TP, "wl-1", 2, "run") != a
    assert a.endswith("-01")  # the parent's sampling decision is kept


# -- off ------------------------------------------------------------------------------------------
def test_off_every_helper_is_a_no_op():
    tracing.shutdown()
    assert not tracing.enabled()
    with tracing.span("x", tenant_id="t") as s:
        assert s is None
        assert tracing.traceparent() is None
        tracing.annotate(a=1)
    assert tracing.record("y", parent=TP, start=1.0, end=2.0) is None
    assert tracing.root("pipeline", "r") is None
    assert tracing.current_ids() == (None, None)
    with tracing.within(TP):
        assert tracing.traceparent() is None
    w = new_workload(WorkloadSpec.model_validate(TASK), "acme", 1.0)
    assert w.traceparent is None and w.public()["trace_id"] is None


def test_setup_with_enabled_false_leaves_tracing_off():
    assert tracing.setup(TracingConfig(enabled=False), service="t") is False
    assert not tracing.enabled()


# -- on -------------------------------------------------------------------------------------------
def test_spans_nest_and_the_current_traceparent_is_the_inner_span(spans):
    with tracing.span("outer", tenant_id="acme") as outer:
        with tracing.span("inner"):
            tp = tracing.traceparent()
    inner, outer_s = spans.get_finished_spans()
    assert (inner.name, outer_s.name) == ("inner", "outer")
    assert inner.parent.span_id == outer_s.context.span_id
    assert tp == tracing.format_traceparent(inner.context)
    assert outer_s.attributes["orion.tenant_id"] == "acme"
    assert outer is not None


def test_a_span_under_a_remote_parent_joins_its_trace(spans):
    with tracing.span("child", parent=TP):
        pass
    (s,) = spans.get_finished_spans()
    assert hexid(s.context.trace_id, 32) == tracing.trace_id(TP)
    assert hexid(s.parent.span_id, 16) == TP.split("-")[2]


def test_an_exception_marks_the_span_failed_and_goes_on(spans):
    with pytest.raises(ValueError), tracing.span("boom"):
        raise ValueError("bad")
    (s,) = spans.get_finished_spans()
    assert s.status.status_code.name == "ERROR"


def test_record_emits_a_finished_span_with_its_own_times_and_derived_id(spans):
    own = tracing.derive(TP, "wl-1", 1, "run")
    got = tracing.record("orion.run", parent=TP, own=own, start=100.0, end=160.5, outcome="completed")
    (s,) = spans.get_finished_spans()
    assert got == own == tracing.format_traceparent(s.context)
    assert (s.start_time, s.end_time) == (100_000_000_000, 160_500_000_000)
    assert s.attributes["orion.outcome"] == "completed"
    assert hexid(s.parent.span_id, 16) == TP.split("-")[2]


def test_record_without_a_parent_or_own_id_emits_nothing(spans):
    assert tracing.record("x", parent=None, start=1.0, end=2.0) is None
    assert spans.get_finished_spans() == ()


def test_record_marks_an_error_and_never_ends_before_it_starts(spans):
    tracing.record("x", parent=TP, start=10.0, end=5.0, error="lost")
    (s,) = spans.get_finished_spans()
    assert s.status.status_code.name == "ERROR" and s.status.description == "lost"
    assert s.end_time == s.start_time


def test_a_root_is_deterministic_and_record_makes_it_the_trace_root(spans):
    root = tracing.root("pipeline", "run-1", 0)
    assert root == tracing.root("pipeline", "run-1", 0) != tracing.root("pipeline", "run-1", 1)
    tracing.record("orion.pipeline.run", parent=None, own=root, start=1.0, end=2.0)
    (s,) = spans.get_finished_spans()
    assert s.parent is None and tracing.format_traceparent(s.context) == root


def test_sampling_ratio_zero_keeps_ids_but_exports_nothing():
    exporter = InMemorySpanExporter()
    tracing.setup(TracingConfig(enabled=True, sample_ratio=0.0), service="t", exporter=exporter)
    try:
        with tracing.span("x"):
            pass
        root = tracing.root("pipeline", "r", 0)
        assert root is not None and root.endswith("-00")
        tracing.record("y", parent=None, own=root, start=1.0, end=2.0)
        tracing.record("z", parent=tracing.derive(root, "n"), start=1.0, end=2.0)
        assert exporter.get_finished_spans() == ()
    finally:
        tracing.shutdown()


def test_within_makes_a_stored_context_the_parent_of_new_workloads(spans):
    with tracing.within(TP):
        w = new_workload(WorkloadSpec.model_validate(TASK), "acme", 1.0)
    assert w.traceparent == TP
    assert w.public()["trace_id"] == tracing.trace_id(TP)


def test_attributes_are_cleaned_for_opentelemetry(spans):
    out = tracing.clean(
        {"tenant_id": "a", "http.route": "/x", "n": 3, "none": None, "codes": ["a", 1], "d": {"k": 1}}
    )
    assert out == {
        "orion.tenant_id": "a",
        "http.route": "/x",
        "orion.n": 3,
        "orion.codes": ["a", "1"],
        "orion.d": '{"k": 1}',
    }


def test_the_file_exporter_appends_one_json_line_a_span(tmp_path):
    import json

    path = tmp_path / "spans" / "spans.jsonl"
    tracing.setup(TracingConfig(enabled=True, exporter="file", path=str(path)), service="orion-test")
    try:
        with tracing.span("a"), tracing.span("b"):
            pass
    finally:
        tracing.shutdown()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["name"] for x in lines] == ["b", "a"]
    assert lines[0]["parent_span_id"] == lines[1]["span_id"] and lines[1]["parent_span_id"] is None
    assert lines[0]["service"] == "orion-test" and lines[0]["trace_id"] == lines[1]["trace_id"]


def test_otlp_without_its_package_is_a_clear_config_error(monkeypatch):
    import builtins

    from orion_ray.errors import ConfigError

    real = builtins.__import__

    def no_otlp(name, *a, **k):
        if name.startswith("opentelemetry.exporter.otlp"):
            raise ImportError("no module named " + name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_otlp)
    with pytest.raises(ConfigError) as err:
        tracing.setup(TracingConfig(enabled=True, exporter="otlp"), service="t")
    assert "orion-ray[tracing]" in err.value.message
    assert not tracing.enabled()


# -- config ---------------------------------------------------------------------------------------
def test_the_config_sections_load_with_defaults_off():
    c = OrionConfig.model_validate({"orion": {}})
    assert c.orion.tracing.enabled is False and c.orion.tracing.exporter == "none"
    assert c.orion.logging.format == "text"
    c = OrionConfig.model_validate(
        {
            "orion": {
                "tracing": {
                    "enabled": True,
                    "exporter": "otlp",
                    "endpoint": "http://127.0.0.1:4318/v1/traces",
                    "protocol": "http",
                    "sample_ratio": 0.25,
                    "service_name": "orion-prod",
                },
                "logging": {"format": "json", "level": "DEBUG"},
            }
        }
    )
    assert c.orion.tracing.sample_ratio == 0.25 and c.orion.logging.format == "json"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"exporter": "file"}, "path"),
        ({"exporter": "otlp", "endpoint": "collector:4317"}, "endpoint"),
        ({"sample_ratio": 1.5}, "sample_ratio"),
        ({"exporter": "zipkin"}, "exporter"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_tracing_config_is_refused_with_the_field(bad, field):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        TracingConfig.model_validate(bad)
    assert field in str(err.value)
