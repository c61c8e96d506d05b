"""Tried: reaching Orion's authority from workload code — naming Orion's internals, `os:getenv`,
`builtins:eval`, `subprocess:run` or `ray:get_actor` as a task function; a tenant's `runtime_env`
with `LD_PRELOAD`, `PYTHONPATH`, `RAY_*`, `ORION_*` or a local `working_dir` (uploaded from the
scheduler's disk); naming the inference runner with another tenant in its kwargs; and, from a
running task, finding `orion-scheduler`, `orion-executor` and `orion-serving` by name and calling
`configure_tenants`, `list`, `keyring`, `cancel` (of another tenant's workload), their own
privileged methods (and the autoscaler's `step`) and Ray's `__ray_call__`. Answered: a 422 naming
`function` or the `runtime_env` field at the door (the worker checks the function again); every
actor call without the control plane's credential is refused with `Forbidden`, and the other
tenant's workload keeps running."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.security.kv_scan import scan_kv_for

pytestmark = pytest.mark.e2e

ROOT = str(Path(__file__).resolve().parents[2])


def _field(r) -> list[str]:
    assert r.status_code == 422, r.text
    return [d["field"] for d in r.json()["error"]["details"]]


@pytest.mark.parametrize(
    "function",
    [
        "orion_ray.credentials:read_credentials",
        "os:getenv",
        "builtins:eval",
        "subprocess:run",
        "ray:get_actor",
        "json:codecs.open",
    ],
)
def test_authority_by_name_is_not_a_task_function(live, function):
    assert _field(live.submit("alice", {"workload_type": "task", "function": function, "args": ["x"]})) == [
        "function"
    ]


def test_the_inference_runner_cannot_be_named_with_another_tenant(live):
    spec = {
        "workload_type": "task",
        "function": "orion_ray.serving.inference:run_inference",
        "kwargs": {"kind": "completion", "body": {"model": "m", "prompt": "hi"}, "tenant_id": "bob"},
    }
    assert _field(live.submit("alice", spec)) == ["function"]


@pytest.mark.parametrize(
    "runtime_env,field",
    [
        ({"env_vars": {"LD_PRELOAD": "/tmp/evil.so"}}, "runtime_env.env_vars.LD_PRELOAD"),
        ({"env_vars": {"PYTHONPATH": "/"}}, "runtime_env.env_vars.PYTHONPATH"),
        ({"env_vars": {"RAY_ADDRESS": "auto"}}, "runtime_env.env_vars.RAY_ADDRESS"),
        ({"env_vars": {"ORION_TENANT_ID": "bob"}}, "runtime_env.env_vars.ORION_TENANT_ID"),
        ({"working_dir": "/"}, "runtime_env.working_dir"),
        ({"py_modules": ["/home"]}, "runtime_env.py_modules"),
    ],
)
def test_a_tenant_runtime_env_outside_the_allowlist_is_refused(live, runtime_env, field):
    spec = {"workload_type": "task", "function": "math:sqrt", "args": [4], "runtime_env": runtime_env}
    assert _field(live.submit("alice", spec)) == [field]


def _wait(live, who: str, wid: str, statuses: tuple[str, ...], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    with live.client(who) as c:
        while True:
            w = c.get(f"/api/v1/workloads/{wid}").json()
            if w["status"] in statuses or time.monotonic() > deadline:
                return w
            time.sleep(0.3)


def test_workload_code_cannot_call_orion_s_actors(live):
    # bob's workload, running: the attacker will try to cancel it through the actors
    victim = live.submit("bob", {"workload_type": "task", "function": "time:sleep", "args": [60]})
    assert victim.status_code == 202, victim.text
    victim_id = victim.json()["workload_id"]
    assert _wait(live, "bob", victim_id, ("running",))["status"] == "running"
    # alice's code (shipped on PYTHONPATH by the operator: a tenant may not set it) goes for the actors
    attack = {
        "workload_type": "task",
        "function": "tests.security.attacks:reach_the_actors",
        "args": [victim_id],
        "runtime_env": {"env_vars": {"PYTHONPATH": ROOT}},
        "metadata": {"tenant_id": "alice"},
    }
    r = live.submit("admin", attack)
    assert r.status_code == 202, r.text
    done = _wait(live, "alice", r.json()["workload_id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    outcomes = done["result"]
    assert len(outcomes) == 13, outcomes
    reached = {k: v for k, v in outcomes.items() if "needs the control plane's credential" not in v}
    assert reached == {}, reached
    # bob's workload was never touched, and the tenants are as configured
    assert _wait(live, "bob", victim_id, ("running",), timeout=1)["status"] == "running"
    with live.client("admin") as admin:
        assert {t["tenant_id"] for t in admin.get("/api/v1/tenants").json()["items"]} >= {"alice", "bob"}
    with live.client("bob") as bob:
        assert bob.delete(f"/api/v1/workloads/{victim_id}").status_code == 202


def test_the_credential_is_not_in_rays_internal_kv(live):
    # Any workload can read Ray's internal KV, where Serve keeps its applications' arguments:
    # the API application reads the credential from orion up's file on the head instead.
    got = scan_kv_for(live.home / "control_token", f"127.0.0.1:{live.ports['ray']}", live.env)
    assert got["scanned"] > 0 and got["found"] == [], got
