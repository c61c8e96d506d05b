"""End to end, as a user: `orion up` in a subprocess, then the CLI, HTTP and plain Ray tools."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))  # free on every address: Ray listens on the node IP too
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("orion-home")
    e = dict(os.environ, ORION_HOME=str(home), PATH=f"{BIN}:{os.environ['PATH']}")
    e.pop("ORION_URL", None)
    e.pop("ORION_API_KEY", None)
    e["RAY_AUTH_MODE"] = "token"  # Orion's local head runs with Ray's token auth (cluster.py)
    e["E2E_PORTS"] = json.dumps({"api": _free_port(), "ray": _free_port(), "dashboard": _free_port()})
    e["ORION_KEY_RESEARCH"] = "research-secret-key"
    (home / "orion.yaml").write_text(
        "orion:\n  scheduler: {pin_single_bundle_tasks: true}\n  tenants:\n"
        "    - {id: research, weight: 2, quota: {cpu: 2}, api_key_env: ORION_KEY_RESEARCH}\n"
    )
    return e


def orion(env, *args, check=True, timeout=240) -> subprocess.CompletedProcess:
    p = subprocess.run([str(BIN / "orion"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"orion {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def up(env) -> subprocess.CompletedProcess:
    ports = json.loads(env["E2E_PORTS"])
    return orion(
        env,
        "up",
        "--config",
        str(Path(env["ORION_HOME"]) / "orion.yaml"),
        "--num-cpus",
        "4",
        "--num-gpus",
        "2",
        "--port",
        str(ports["api"]),
        "--ray-port",
        str(ports["ray"]),
        "--dashboard-port",
        str(ports["dashboard"]),
    )


@pytest.fixture(scope="module")
def running(env):
    first = up(env)
    try:
        yield first
    finally:
        orion(env, "down", check=False)


def _creds(env) -> dict:
    path = Path(env["ORION_HOME"]) / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return json.loads(path.read_text())


def _write(tmp_path, name, text) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_up_prints_where_things_are(env, running):
    out = running.stdout
    creds = _creds(env)
    assert creds["url"] in out and "/credentials" in out and "dashboard" in out
    r = httpx.get(creds["url"] + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["scheduler"] == "ok" and r.json()["store"] == "ok"


def test_up_twice_keeps_one_scheduler(env, running):
    up(env)
    ports = json.loads(env["E2E_PORTS"])
    code = (
        "import ray, json; from ray.util.state import list_actors; "
        f"ray.init(address='127.0.0.1:{ports['ray']}'); "
        f"a = list_actors(address='http://127.0.0.1:{ports['dashboard']}', "
        "filters=[('class_name', '=', 'SchedulerActor'), ('state', '=', 'ALIVE')]); "
        "print(json.dumps(len(a)))"
    )
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "1"


def test_the_executor_belongs_to_a_job_that_stays_alive(env, running):
    # Ray never reuses a worker of a job that has ended: it exits each one as its task returns.
    # `orion up`'s own driver exits, so the executor is created by a host job that keeps running.
    ports = json.loads(env["E2E_PORTS"])
    code = (
        "import ray, json; from ray.util.state import list_actors, list_jobs; "
        f"ray.init(address='127.0.0.1:{ports['ray']}'); "
        f"addr = 'http://127.0.0.1:{ports['dashboard']}'; "
        "alive = [('class_name', '=', 'TaskExecutor'), ('state', '=', 'ALIVE')]; "
        "a = list_actors(address=addr, filters=alive); "
        "jobs = {j.job_id: j for j in list_jobs(address=addr)}; "
        "j = jobs[a[0].job_id]; "
        "print(json.dumps([len(a), j.status, j.driver_info.pid if j.driver_info else None, j.submission_id]))"
    )
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    count, status, pid, submission = json.loads(p.stdout.strip().splitlines()[-1])
    assert count == 1 and status == "RUNNING" and submission.startswith("orion-executor-host-"), p.stdout
    os.kill(int(pid), 0)  # its driver is a live process


def test_cli_task_job_status_logs_list(env, running, tmp_path):
    task = _write(tmp_path, "task.yaml", "workload_type: task\nfunction: math:factorial\nargs: [10]\n")
    done = json.loads(orion(env, "submit", task, "--wait", "--timeout", "120", "-o", "json").stdout)
    assert done["status"] == "completed" and done["result"] == 3628800
    job = _write(
        tmp_path,
        "job.yaml",
        'workload_type: job\nentrypoint: python -c "print(6*7)"\nresources: {cpu: 1, gpu: 1}\n',
    )
    ack = json.loads(orion(env, "submit", job, "-o", "json").stdout)
    wid = ack["workload_id"]
    orion(env, "logs", wid, "--follow", timeout=180)
    status = json.loads(orion(env, "status", wid, "-o", "json").stdout)
    assert status["status"] == "completed", status
    assert "42" in orion(env, "logs", wid).stdout
    listed = json.loads(orion(env, "list", "-o", "json").stdout)
    assert {done["workload_id"], wid} <= {w["workload_id"] for w in listed["items"]}
    assert "completed" in orion(env, "list").stdout


def test_http_contract_and_cancel(env, running):
    creds = _creds(env)
    url, auth = creds["url"], {"Authorization": f"Bearer {creds['api_key']}"}
    assert (
        httpx.post(
            url + "/api/v1/workloads", json={"workload_type": "task", "function": "math:floor", "args": [1.5]}
        ).status_code
        == 401
    )
    bad = httpx.post(
        url + "/api/v1/workloads",
        headers=auth,
        json={"workload_type": "task", "function": "math:floor", "resources": {"gpu": -1}},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "resources.gpu"
    long = httpx.post(
        url + "/api/v1/workloads", headers=auth, json={"workload_type": "job", "entrypoint": "sleep 300"}
    )
    assert long.status_code == 202
    wid = long.json()["workload_id"]
    cancelled = orion(env, "cancel", wid, "-o", "json")
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    assert httpx.get(f"{url}/api/v1/workloads/{wid}", headers=auth).json()["status"] == "cancelled"
    assert httpx.get(url + "/docs").status_code == 200
    metrics = httpx.get(url + "/metrics").text  # served by Serve, scheduler metrics included
    assert "orion_scheduler_up 1.0" in metrics
    assert 'orion_api_request_seconds_count{method="POST",route="/api/v1/workloads"' in metrics
    assert "/api/v1/workloads" in httpx.get(url + "/openapi.json").json()["paths"]
    missing = orion(env, "status", "wl-does-not-exist", check=False)
    assert missing.returncode != 0 and "no workload" in missing.stderr


def test_tenant_key_from_the_environment_and_reload(env, running, tmp_path):
    creds = _creds(env)
    url = creds["url"]
    tenant = {"Authorization": "Bearer research-secret-key"}
    r = httpx.post(
        url + "/api/v1/workloads",
        headers=tenant,
        json={"workload_type": "task", "function": "math:factorial", "args": [4]},
    )
    assert r.status_code == 202, r.text
    assert httpx.get(url + "/api/v1/tenants", headers=tenant).status_code == 403
    tenants = json.loads(orion(env, "tenants", "-o", "json").stdout)
    assert "research" in {t["tenant_id"] for t in tenants["items"]}
    # an invalid file is refused with the reason; the running configuration stays
    bad = _write(tmp_path, "bad.yaml", "orion:\n  tenants:\n    - {id: research, weight: -2}\n")
    refused = orion(env, "reload", "--config", bad, check=False)
    assert refused.returncode != 0 and "weight" in refused.stderr
    assert httpx.get(url + "/api/v1/queue", headers=tenant).status_code == 200
    # a valid one is applied without a restart: a new tenant and its key work at once
    good = _write(
        tmp_path,
        "good.yaml",
        "orion:\n  scheduler: {pin_single_bundle_tasks: true}\n  tenants:\n"
        "    - {id: research, api_key_env: ORION_KEY_RESEARCH}\n"
        "    - {id: vision, api_key_env: ORION_KEY_VISION}\n",
    )
    env2 = dict(env, ORION_KEY_VISION="vision-secret-key")
    orion(env2, "reload", "--config", good)
    vision = {"Authorization": "Bearer vision-secret-key"}
    q = httpx.get(url + "/api/v1/queue", headers=vision)
    assert q.status_code == 200 and [t["tenant_id"] for t in q.json()["tenants"]] == ["vision"]


def test_infrastructure_routes_and_node_commands_live(env, running):
    """Served by Serve (the app pickled into its replica), not only in-process: every
    infrastructure route answers the admin key and refuses a tenant key; the CLI cordons by an id
    prefix."""
    creds = _creds(env)
    url, admin = creds["url"], {"Authorization": f"Bearer {creds['api_key']}"}
    tenant = {"Authorization": "Bearer research-secret-key"}
    nodes = httpx.get(url + "/admin/v1/infrastructure/nodes", headers=admin).json()["items"]
    (head,) = [n for n in nodes if n["status"] == "ready"]
    routes = [
        ("GET", "/admin/v1/infrastructure/nodes"),
        ("GET", "/admin/v1/infrastructure/gpu-utilization"),
        ("GET", "/admin/v1/scaling/events"),
        ("GET", "/admin/v1/infrastructure/health"),
        ("GET", "/internal/resources/available"),
        ("POST", f"/admin/v1/infrastructure/nodes/{head['node_id']}/cordon"),
        ("POST", f"/admin/v1/infrastructure/nodes/{head['node_id']}/uncordon"),
    ]
    for method, path in routes:
        assert httpx.request(method, url + path, headers=tenant).status_code == 403, path
        r = httpx.request(method, url + path, headers=admin)
        assert r.status_code == 200, (path, r.text)
    health = httpx.get(url + "/admin/v1/infrastructure/health", headers=admin).json()
    assert health["autoscaler"]["status"] == "ok" and health["nodes"] == {"ready": 1}
    gpus = httpx.get(url + "/admin/v1/infrastructure/gpu-utilization", headers=admin).json()
    assert gpus["gpus"] == 2 and gpus["nodes"][0]["device"]["status"] in ("no_device", "unknown")
    out = orion(env, "cordon", head["node_id"][:10], "--reason", "e2e", "-o", "json").stdout
    assert json.loads(out)["status"] == "cordoned"
    assert "cordoned" in orion(env, "nodes").stdout
    orion(env, "uncordon", head["node_id"][:10])
    events = httpx.get(url + "/admin/v1/scaling/events?kind=node", headers=admin).json()["items"]
    assert [e["outcome"] for e in events[:2]] == ["ready", "cordoned"]


def test_ray_job_submit_can_drive_orion(env, running, tmp_path):
    """A user who only knows Ray: `ray job submit -- orion submit job.yaml --wait`."""
    ports = json.loads(env["E2E_PORTS"])
    spec = _write(tmp_path, "inner.yaml", "workload_type: task\nfunction: math:factorial\nargs: [5]\n")
    p = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            f"http://127.0.0.1:{ports['dashboard']}",
            "--",
            str(BIN / "orion"),
            "submit",
            spec,
            "--wait",
            "-o",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert '"result": 120' in p.stdout


def test_plain_ray_tools_work_without_extra_environment(env, running):
    # Orion's head runs Ray's token auth (cluster.py): Ray's tools need only to be told so, the
    # token itself is Ray's default file; without it they are refused.
    ports = json.loads(env["E2E_PORTS"])
    plain = {k: v for k, v in env.items() if not k.startswith("RAY_")}
    refused = subprocess.run(
        [str(BIN / "ray"), "job", "list", "--address", f"http://127.0.0.1:{ports['dashboard']}"],
        env=dict(plain, RAY_AUTH_MODE="disabled"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "orion-wl-" not in refused.stdout
    plain["RAY_AUTH_MODE"] = "token"
    p = subprocess.run(
        [str(BIN / "ray"), "job", "list", "--address", f"http://127.0.0.1:{ports['dashboard']}"],
        env=plain,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "orion-wl-" in p.stdout  # Orion's jobs show in Ray's own job list
    p = subprocess.run(
        [str(BIN / "ray"), "status", "--address", f"127.0.0.1:{ports['ray']}"],
        env=plain,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr


def test_down_stops_everything_and_up_again_keeps_the_workloads(env, running):
    before = {w["workload_id"] for w in json.loads(orion(env, "list", "-o", "json").stdout)["items"]}
    state = json.loads((Path(env["ORION_HOME"]) / "cluster.json").read_text())
    orion(env, "down")
    assert not _alive(state["pid"])
    ports = json.loads(env["E2E_PORTS"])
    with socket.socket() as s:
        listening = s.connect_ex(("127.0.0.1", ports["api"])) == 0
    assert not listening, subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    up(env)
    after = {w["workload_id"] for w in json.loads(orion(env, "list", "-o", "json").stdout)["items"]}
    assert before and before <= after


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
