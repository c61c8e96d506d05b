"""Pipelines on a live Orion (`orion up` in a subprocess, real Ray): the issue's spec run end to
end through REST, its three nodes as tasks passing real values; and a SIGKILL of the scheduler
(which hosts the pipeline controller) mid-run, after which the run finishes with every node run
exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.pipelines.live import Live, runs_of
from tests.unit.test_pipeline_spec import ISSUE_YAML

pytestmark = pytest.mark.e2e

NODES = ("fetch_data", "compute_features", "train_model")
REFS = {n: f"tests.pipelines.nodes:{n}" for n in NODES}
# the issue's spec asks for 4-8 CPUs and 16-32 GiB per node; this cluster has 4 CPUs: the same
# spec with its resources scaled down (everything else verbatim)
SMALL = ISSUE_YAML.replace('{cpu: "4", mem: "16Gi"}', '{cpu: "0.5", mem: "64Mi"}').replace(
    '{gpu: 1, cpu: "8", mem: "32Gi"}', '{gpu: 1, cpu: "0.5", mem: "64Mi"}'
)


def test_the_issues_spec_runs_end_to_end_through_rest(live, tmp_path):
    env = Live.node_env(tmp_path)
    sid = live.submit(
        {"dag_spec": SMALL, "refs": REFS, "runtime_params": {"submission_id": "bt-live", "env": env}}
    )
    assert sid == "bt-live"
    done = live.wait_run(sid)
    assert done["state"] == "succeeded", json.dumps(done, indent=1)
    with live.client("alice") as c:
        results = {n["node_id"]: c.get(f"/api/v1/workloads/{n['workload_id']}").json() for n in done["nodes"]}
    assert results["fetch_data"]["result"] == {"dataset_uri": "mem://dataset?rows=3"}
    assert results["compute_features"]["result"] == {
        "feature_table": "features[xs_v2] of mem://dataset?rows=3"
    }
    assert results["train_model"]["result"]["model_uri"] == "mem://model/bilstm/30"
    assert all(w["tenant_id"] == "alice" and w["status"] == "completed" for w in results.values())
    assert runs_of(tmp_path) == {n: 1 for n in NODES}
    with live.client("bob") as c:  # another tenant sees neither the run nor its workloads
        assert c.get(f"/api/orch/status/{sid}").status_code == 404
        assert c.get(f"/api/v1/workloads/{done['nodes'][0]['workload_id']}").status_code == 404


def scheduler_pid(live) -> int:
    ports = live.ports
    code = (
        "import ray, json; from ray.util.state import list_actors; "
        f"ray.init(address='127.0.0.1:{ports['ray']}'); "
        f"a = list_actors(address='http://127.0.0.1:{ports['dashboard']}', "
        "filters=[('class_name', '=', 'SchedulerActor'), ('state', '=', 'ALIVE')]); "
        "print(json.dumps([x.pid for x in a]))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env=live.env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    pids = json.loads(p.stdout.strip().splitlines()[-1])
    return pids[0] if pids else 0


def test_a_sigkill_of_the_scheduler_mid_run_loses_nothing_and_runs_nothing_twice(live, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    env = Live.node_env(runs)
    gate = tmp_path / "release-fetch"  # fetch_data runs until the test creates it
    spec = SMALL.replace("params: {...}", f"params: {{gate: '{gate}'}}")
    old = scheduler_pid(live)  # asked first: the kill must land while fetch_data still runs
    assert old, "no scheduler actor"
    sid = live.submit(
        {"dag_spec": spec, "refs": REFS, "runtime_params": {"submission_id": "bt-kill", "env": env}}
    )
    end = time.monotonic() + 120
    while not (runs / "fetch_data").exists() and time.monotonic() < end:  # fetch_data started
        time.sleep(0.1)
    os.kill(old, signal.SIGKILL)  # the actor Orion started for this test; Ray restarts it
    with live.client("alice") as c:  # read from the store while the scheduler restarts
        during = c.get(f"/api/orch/status/{sid}").json()
    assert [n["state"] for n in during["nodes"]] == ["submitted", "pending", "pending"], during
    gate.write_text("go")
    done = live.wait_run(sid)
    assert done["state"] == "succeeded", json.dumps(done, indent=1)
    assert [n["attempt"] for n in done["nodes"]] == [1, 1, 1]
    assert runs_of(runs) == {n: 1 for n in NODES}
    assert scheduler_pid(live) not in (0, old)
