"""Tracing on a live Orion (real Ray, `orion up`): one workload's spans form ONE trace from the
API request (API replica) through admission, placement and its run (scheduler actor), and the
run's own process gets the run span's context as TRACEPARENT; a pipeline run's spans nest
run → node → the node's workload."""

from __future__ import annotations

import time

import pytest

from tests.pipelines.live import ROOT

pytestmark = pytest.mark.e2e

CLIENT_TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def wait_status(c, wid: str, within_s: float = 120) -> dict:
    end = time.monotonic() + within_s
    while True:
        got = c.get(f"/api/v1/workloads/{wid}").json()
        if got.get("status") in ("completed", "failed", "cancelled") or time.monotonic() > end:
            return got
        time.sleep(0.3)


def test_a_job_is_one_trace_from_the_api_request_to_its_end_across_processes(traced):
    job = {"workload_type": "job", "entrypoint": "echo tp=$TRACEPARENT", "resources": {"cpu": 0.5}}
    with traced.client("tracy") as c:
        r = c.post("/api/v1/workloads", json=job, headers={"traceparent": CLIENT_TP})
        assert r.status_code == 202, r.text
        wid = r.json()["workload_id"]
        done = wait_status(c, wid)
        assert done["status"] == "completed", done
        logs = c.get(f"/api/v1/workloads/{wid}/logs").text
    trace = CLIENT_TP.split("-")[1]
    assert done["trace_id"] == trace  # the caller's trace, continued

    def mine(spans):
        return [s for s in spans if s["trace_id"] == trace]

    spans = mine(traced.wait_spans(lambda got: any(s["name"] == "orion.run" for s in mine(got))))
    named = {s["name"]: s for s in spans}
    server = named["POST /api/v1/workloads"]
    submit, admission = named["orion.submit"], named["orion.admission"]
    placement, run = named["orion.placement"], named["orion.run"]
    assert server["parent_span_id"] == CLIENT_TP.split("-")[2] and server["kind"] == "SERVER"
    assert server["attributes"]["http.route"] == "/api/v1/workloads"
    assert server["attributes"]["orion.tenant_id"] == "tracy"
    assert server["attributes"]["http.response.status_code"] == 202
    # two processes: the API replica wrote the first two, the scheduler actor the rest
    assert {server["service"], submit["service"]} == {"orion-api"}
    assert {admission["service"], placement["service"], run["service"]} == {"orion-scheduler"}
    assert submit["parent_span_id"] == server["span_id"]
    for s in (admission, placement, run):
        assert s["parent_span_id"] == submit["span_id"], s["name"]
        assert s["attributes"]["orion.workload_id"] == wid
    assert admission["attributes"]["orion.decision"] == "admitted"
    assert "orion.note" in admission["attributes"]
    assert placement["attributes"]["orion.outcome"] == "placed" and placement["attributes"]["orion.nodes"]
    assert run["attributes"]["orion.outcome"] == "completed"
    assert admission["start"] <= admission["end"] <= placement["end"] <= run["end"]
    # the job's own process got the run span's context: a third process, the same trace
    assert f"tp=00-{trace}-{run['span_id']}-01" in logs


def test_a_pipeline_run_s_spans_nest_run_node_workload(traced, tmp_path):
    body = {
        "dag_spec": {
            "version": 1,
            "pipeline_id": "traced",
            "nodes": [
                {"id": "fetch_data", "kind": "python_task", "params": {"rows": 2}, "outs": ["dataset_uri"]},
                {"id": "compute_features", "kind": "python_task", "ins": ["dataset_uri"]},
            ],
            "edges": [{"from": "fetch_data", "to": "compute_features"}],
        },
        "refs": {n: f"tests.pipelines.nodes:{n}" for n in ("fetch_data", "compute_features")},
        "runtime_params": {
            "submission_id": "traced-run",
            "env": {"PYTHONPATH": ROOT, "PIPELINE_RUNS_DIR": str(tmp_path)},
        },
    }
    with traced.client("admin") as c:
        r = c.post("/api/orch/submit?tenant_id=tracy", json=body)
        assert r.status_code == 202, r.text
    with traced.client("tracy") as c:
        end = time.monotonic() + 180
        while True:
            status = c.get("/api/orch/status/traced-run").json()
            if status["state"] not in ("running", "cancelling") or time.monotonic() > end:
                break
            time.sleep(0.3)
    assert status["state"] == "succeeded", status
    trace = status["trace_id"]
    assert trace

    def mine(spans):
        return [s for s in spans if s["trace_id"] == trace]

    spans = mine(traced.wait_spans(lambda got: any(s["name"] == "orion.pipeline.run" for s in mine(got))))
    (run,) = [s for s in spans if s["name"] == "orion.pipeline.run"]
    nodes = {s["attributes"]["orion.node"]: s for s in spans if s["name"] == "orion.pipeline.node"}
    assert run["parent_span_id"] is None and set(nodes) == {"fetch_data", "compute_features"}
    for name, node in nodes.items():
        assert node["parent_span_id"] == run["span_id"]
        workload = {n["node_id"]: n["workload_id"] for n in status["nodes"]}[name]
        under = {s["name"] for s in spans if s["parent_span_id"] == node["span_id"]}
        assert {"orion.admission", "orion.placement", "orion.run"} <= under, (name, under)
        assert all(
            s["attributes"]["orion.workload_id"] == workload
            for s in spans
            if s["parent_span_id"] == node["span_id"]
        )
        assert run["start"] <= node["start"] <= node["end"] <= run["end"]
