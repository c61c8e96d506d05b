"""A workload's and a pipeline run's spans end to end in-process (in-memory exporter, no Ray):
the API request's server span → submit → admission (with the policy's reasons) → placement → run,
one trace, kept across a scheduler restart; pipeline run → node → the node's workload; the trace
id on the statuses; JSON log lines with tenant, workload and trace ids."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orion_ray import tracing
from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.api.store_access import StoreAccess
from orion_ray.config import PolicyConfig, SchedulerConfig
from orion_ray.log_format import JsonFormatter, configure_logging, log_context
from orion_ray.observability_config import LoggingConfig, TracingConfig
from orion_ray.pipelines import run_spans
from orion_ray.pipelines import runs_store as runs
from orion_ray.pipelines.controller import PipelineController
from orion_ray.pipelines.intake import accept
from orion_ray.runtime.fake import FakeRuntime, fake_node
from orion_ray.scheduler import Scheduler
from orion_ray.scheduler.workload_spans import run_traceparent
from orion_ray.status import Status
from orion_ray.store import SQLiteStore
from tests.unit.pipeline_support import T0, Clock

ADMIN = {"Authorization": "Bearer admin-key"}
ACME = {"Authorization": "Bearer acme-key"}


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing.setup(TracingConfig(enabled=True), service="test", exporter=exporter)
    yield exporter
    tracing.shutdown()


def by_name(exporter) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


def hexid(n: int, width: int = 16) -> str:
    return f"{n:0{width}x}"


async def settle(predicate, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never reached: {what}")


def task(gpus: float, **fields) -> dict:
    return {
        "workload_type": "task",
        "function": "math:factorial",
        "resources": {"gpu": gpus, "cpu": 1},
        **fields,
    }


def scheduler(path: str, rt: FakeRuntime, clock) -> Scheduler:
    return Scheduler(SQLiteStore(path), rt, SchedulerConfig(), PolicyConfig(), clock=clock, sleep=_yield)


async def _yield(_s: float) -> None:
    await asyncio.sleep(0)


def status_of(s: Scheduler, wid: str) -> Status:
    return (s.active.get(wid) or s.store.get(wid)).status


# -- one workload: API request → submit → admission → placement → run ----------------------------
def test_a_workload_is_one_trace_from_the_api_request_to_its_end(tmp_path, spans):
    path = str(tmp_path / "orion.db")
    clock = Clock()
    rt = FakeRuntime([fake_node("n1", gpus=4)])

    async def scenario():
        sched = scheduler(path, rt, clock)
        access = StoreAccess(path, max_queue_size=10_000, clock=clock)
        keys = KeyRing([hash_key("admin-key")], {hash_key("acme-key"): "acme"})
        client = TestClient(build_app(keys, backend=sched, access=access))
        blocker = sched.store  # a first workload takes every GPU, so the traced one waits
        r = client.post("/api/v1/workloads", json=task(4), headers=ADMIN)
        first = r.json()["workload_id"]
        r = client.post("/api/v1/workloads", json=task(2), headers=ACME)
        assert r.status_code == 202
        wid = r.json()["workload_id"]
        sched.ingest.pull()
        sched.run_cycle()  # the first is admitted; ours waits for capacity
        await settle(lambda: status_of(sched, first) == Status.RUNNING, "the first running")
        assert status_of(sched, wid) == Status.QUEUED
        clock.now += 5
        rt.complete(first, result=1)
        await settle(lambda: status_of(sched, first) == Status.COMPLETED, "the first done")
        sched.run_cycle()
        await settle(lambda: status_of(sched, wid) == Status.RUNNING, "ours running")
        launch_tp = rt.run_of(wid).launch["traceparent"]
        clock.now += 30
        rt.complete(wid, result=120)
        await settle(lambda: status_of(sched, wid) == Status.COMPLETED, "ours done")
        shown = client.get(f"/api/v1/workloads/{wid}", headers=ACME).json()
        client.close()
        access.close()
        blocker.close()
        return wid, launch_tp, shown

    wid, launch_tp, shown = asyncio.run(scenario())
    got = by_name(spans)
    (server,) = [s for s in got["POST /api/v1/workloads"] if s.attributes.get("orion.tenant_id") == "acme"]
    trace = server.context.trace_id
    assert server.kind.name == "SERVER" and server.attributes["http.route"] == "/api/v1/workloads"
    assert server.attributes["http.response.status_code"] == 202
    (submit,) = [s for s in got["orion.submit"] if s.attributes["orion.workload_id"] == wid]
    assert submit.parent.span_id == server.context.span_id and submit.context.trace_id == trace

    def mine(name):
        (s,) = [s for s in got[name] if s.attributes["orion.workload_id"] == wid]
        assert s.context.trace_id == trace and s.parent.span_id == submit.context.span_id, name
        return s

    admission, placement, run = mine("orion.admission"), mine("orion.placement"), mine("orion.run")
    assert admission.attributes["orion.decision"] == "admitted"
    assert admission.attributes["orion.reason_codes"]  # it waited: the policy's reasons are kept
    assert any("capacity" in r or "gpu" in r.lower() for r in admission.attributes["orion.reasons"])
    assert admission.end_time - admission.start_time == 5_000_000_000  # queued 5 s
    assert placement.attributes["orion.outcome"] == "placed"
    assert list(placement.attributes["orion.nodes"]) == ["n1"]
    assert run.attributes["orion.outcome"] == "completed"
    assert run.end_time - run.start_time == 30_000_000_000
    # the run's process got the run span's own context (TRACEPARENT), before the span existed
    assert launch_tp == tracing.format_traceparent(run.context)
    assert shown["trace_id"] == hexid(trace, 32)
    # the GET is a request of its own, in a trace of its own
    (get,) = got["GET /api/v1/workloads/{workload_id}"]
    assert get.context.trace_id != trace and get.attributes["orion.tenant_id"] == "acme"


def test_a_caller_s_traceparent_header_makes_the_request_its_child(tmp_path, spans):
    path = str(tmp_path / "orion.db")
    sched = scheduler(path, FakeRuntime(), Clock())
    access = StoreAccess(path, max_queue_size=10_000)
    client = TestClient(build_app(KeyRing([hash_key("admin-key")]), backend=sched, access=access))
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    try:
        r = client.post("/api/v1/workloads", json=task(0), headers={**ADMIN, "traceparent": tp})
        bad = client.post("/api/v1/workloads", json=task(0), headers={**ADMIN, "traceparent": "nonsense"})
        missing = client.get("/api/v1/workloads/wl-none", headers=ADMIN)
    finally:
        client.close()
        access.close()
        sched.store.close()
    assert r.status_code == 202 and bad.status_code == 202 and missing.status_code == 404
    got = by_name(spans)
    first, second = got["POST /api/v1/workloads"]
    assert hexid(first.context.trace_id, 32) == tracing.trace_id(tp)
    assert hexid(first.parent.span_id) == tp.split("-")[2]
    assert second.parent is None  # a malformed header starts a new trace, never fails the request
    (nf,) = got["GET /api/v1/workloads/{workload_id}"]
    assert nf.attributes["http.response.status_code"] == 404 and nf.status.status_code.name == "UNSET"


def test_a_restarted_scheduler_still_links_the_run_to_the_submission(tmp_path, spans):
    path = str(tmp_path / "orion.db")
    clock = Clock()
    rt = FakeRuntime([fake_node("n1", gpus=4)])

    async def scenario():
        first = scheduler(path, rt, clock)
        with tracing.span("client request"):
            wid = (await first.submit(task(1)))["workload_id"]
        first.run_cycle()
        await settle(lambda: status_of(first, wid) == Status.RUNNING, "running")
        stored_tp = first.store.get(wid).traceparent
        await first.stop()
        second = scheduler(path, rt, clock)  # a new actor over the same store adopts the run
        await second.start()
        clock.now += 12
        rt.complete(wid, result=1)
        await settle(lambda: status_of(second, wid) == Status.COMPLETED, "done after restart")
        await second.stop()
        first.store.close()
        second.store.close()
        return wid, stored_tp

    wid, stored_tp = asyncio.run(scenario())
    got = by_name(spans)
    (submit,) = got["orion.submit"]
    assert stored_tp == tracing.format_traceparent(submit.context)
    (run,) = [s for s in got["orion.run"] if s.attributes["orion.workload_id"] == wid]
    assert run.context.trace_id == submit.context.trace_id and run.parent.span_id == submit.context.span_id


def test_a_failed_attempt_s_run_span_is_an_error_and_the_retry_a_new_span(tmp_path, spans):
    path = str(tmp_path / "orion.db")
    clock = Clock()
    rt = FakeRuntime([fake_node("n1", gpus=4)])

    async def scenario():
        s = scheduler(path, rt, clock)
        with tracing.span("client"):
            wid = (await s.submit(task(1, max_retries=1)))["workload_id"]
        s.run_cycle()
        await settle(lambda: status_of(s, wid) == Status.RUNNING, "running")
        w = s.active[wid]
        rt.fail(wid, "ValueError: bad")
        await settle(lambda: status_of(s, wid) == Status.QUEUED, "requeued")
        await s.stop()
        s.store.close()
        return wid, w

    wid, w = asyncio.run(scenario())
    (run,) = by_name(spans)["orion.run"]
    assert run.status.status_code.name == "ERROR" and run.attributes["orion.outcome"] == "queued"
    assert tracing.format_traceparent(run.context) == run_traceparent(w, 1) != run_traceparent(w, 2)


def test_tracing_off_leaves_no_traceparent_and_no_trace_id(tmp_path):
    tracing.shutdown()
    path = str(tmp_path / "orion.db")
    sched = scheduler(path, FakeRuntime([fake_node("n1")]), Clock())
    wid = asyncio.run(sched.submit(task(1)))["workload_id"]
    assert sched.store.get(wid).traceparent is None
    assert asyncio.run(sched.get(wid))["trace_id"] is None
    sched.store.close()


# -- a pipeline run: run → node → the node's workload ---------------------------------------------
def two_nodes() -> dict:
    return {
        "dag_spec": {
            "version": 1,
            "pipeline_id": "p",
            "nodes": [
                {"id": "a", "kind": "python_task", "outs": ["x"]},
                {"id": "b", "kind": "python_task", "ins": ["x"]},
            ],
            "edges": [{"from": "a", "to": "b"}],
        },
        "refs": {"a": "tests.pipelines.nodes:fetch_data", "b": "tests.pipelines.nodes:fetch_data"},
        "runtime_params": {"submission_id": "traced"},
    }


def test_a_pipeline_run_s_spans_nest_run_node_workload(tmp_path, spans):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    clock = Clock()
    ctl = PipelineController(store, clock=clock)
    run, ids = accept(two_nodes(), tenant_id="acme", now=T0)
    run = runs.create_run(store, run, ids, who="acme")[0]
    try:
        for node, result in (("a", {"x": 1}), ("b", None)):
            ctl.tick()
            wid = {n.node_id: n for n in runs.node_runs(store, run.run_id)}[node].workload_id
            w = store.get(wid)
            assert w.traceparent == run_spans.node_traceparent(run, node)  # made in the node's context
            clock.now += 3
            w.status, w.result = Status.COMPLETED, result
            store.update(w, ("completed", clock(), ""))
        ctl.tick()
        done = runs.get_run(store, run.run_id)
        status = done.public(runs.node_runs(store, run.run_id))
    finally:
        store.close()
    assert done.status == "succeeded"
    got = by_name(spans)
    (run_span,) = got["orion.pipeline.run"]
    nodes = {s.attributes["orion.node"]: s for s in got["orion.pipeline.node"]}
    assert set(nodes) == {"a", "b"} and run_span.parent is None
    for s in nodes.values():
        assert s.parent.span_id == run_span.context.span_id
        assert s.context.trace_id == run_span.context.trace_id
        assert s.attributes["orion.outcome"] == "succeeded"
    assert status["trace_id"] == hexid(run_span.context.trace_id, 32)
    assert tracing.format_traceparent(nodes["a"].context) == run_spans.node_traceparent(done, "a")


# -- structured logs ------------------------------------------------------------------------------
def test_json_log_lines_carry_tenant_workload_and_trace_ids(spans):
    record = logging.LogRecord("orion.scheduler", logging.WARNING, __file__, 1, "lost %s", ("n1",), None)
    with log_context(tenant_id="acme", workload_id="wl-1"), tracing.span("x") as s:
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "lost n1" and line["level"] == "WARNING" and line["logger"] == "orion.scheduler"
    assert (line["tenant_id"], line["workload_id"]) == ("acme", "wl-1")
    assert line["trace_id"] == hexid(s.get_span_context().trace_id, 32)
    assert line["span_id"] == hexid(s.get_span_context().span_id)
    record.workload_id = "wl-2"  # a record's own extra wins over the context
    with log_context(workload_id="wl-1"):
        assert json.loads(JsonFormatter().format(record))["workload_id"] == "wl-2"


def test_json_logs_outside_any_context_have_no_ids():
    tracing.shutdown()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    line = json.loads(JsonFormatter().format(record))
    assert set(line) == {"ts", "level", "logger", "message"}


def test_set_fields_reaches_lines_inside_the_open_context_only():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    with log_context():
        log_context.set_fields(tenant_id="acme")
        assert json.loads(JsonFormatter().format(record))["tenant_id"] == "acme"
    assert "tenant_id" not in json.loads(JsonFormatter().format(record))


def test_configure_logging_json_sets_every_root_handler_and_text_leaves_them():
    root = logging.getLogger("orion-test-root")
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        configure_logging(LoggingConfig(format="text"), root=root)
        assert not isinstance(handler.formatter, JsonFormatter)
        configure_logging(LoggingConfig(format="json", level="DEBUG"), root=root)
        assert isinstance(handler.formatter, JsonFormatter) and root.level == logging.DEBUG
    finally:
        root.removeHandler(handler)
