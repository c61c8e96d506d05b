"""The task-function denylist and the runtime_env allowlist (``orion_ray.trust``), at the door
(a 422 naming the field, through the real API and the real SQLite store) and in the worker
(``task_runner.resolve``, whatever the door decided); and an inference's tenant coming from Orion.
"""

from __future__ import annotations

import os

import pytest

from orion_ray.config import TenantConfig
from orion_ray.runtime.task_runner import RefusedFunction, resolve, run_callable
from orion_ray.trust import function_problem, runtime_env_problems

# == the denylist ==================================================================================
REFUSED = [
    "orion_ray.credentials:read_credentials",
    "orion_ray.scheduler.actor:get_scheduler",
    "serve_apps.llm.replica:build",
    "os:getenv",
    "os.path:expanduser",
    "posix:system",
    "builtins:eval",
    "builtins:open",
    "sys:exit",
    "subprocess:run",
    "shutil:rmtree",
    "ctypes:CDLL",
    "importlib:import_module",
    "pickle:loads",
    "socket:create_connection",
    "ray:get_actor",
    "ray.util.state:list_actors",
    "httpx:post",
    "urllib.request:urlopen",
    "io:open",
    "codecs:open",
    "linecache:getlines",
    "_posixsubprocess:fork_exec",
    "json:codecs.open",  # a denied module reached through an allowed one's attribute
    "math:__loader__.get_data",  # a dunder reaches anything
    "mypkg.mod:_private",
]
ALLOWED = ["math:sqrt", "time:sleep", "json:dumps", "mypkg.train:main", "tests.integration.helpers:add"]


@pytest.mark.parametrize("function", REFUSED)
def test_the_denylist_refuses_authority_by_name(function):
    assert function_problem(function) is not None


@pytest.mark.parametrize("function", ALLOWED)
def test_ordinary_functions_pass(function):
    assert function_problem(function) is None


def test_an_operator_may_allow_a_module_per_tenant_and_only_that_module():
    assert function_problem("os.path:basename", ["os.path"]) is None
    assert function_problem("os:getenv", ["os.path"]) is not None  # the parent stays refused
    assert function_problem("subprocess:run", ["os"]) is not None
    assert TenantConfig(id="t", allowed_function_modules=["os.path"]).allowed_function_modules == ["os.path"]
    with pytest.raises(ValueError):
        TenantConfig(id="t", allowed_function_modules=["os path; rm"])


# == the worker checks again ======================================================================
@pytest.mark.parametrize(
    "function", ["os:getenv", "builtins:eval", "json:codecs.open", "orion_ray.credentials:read_credentials"]
)
def test_the_worker_refuses_what_the_door_refuses(function):
    with pytest.raises(RefusedFunction):
        resolve(function)
    out = run_callable(function, ["HOME"], {}, 10_000, 10_000)
    assert out["ok"] is False and "RefusedFunction" in out["error"]


def test_the_worker_refuses_a_denied_callable_reexported_under_another_name():
    # a name the door cannot know is a module: walking into it is refused in the worker
    with pytest.raises(RefusedFunction, match="reaches module 'os'"):
        resolve("tests.unit.test_trust_guard:osmod.getenv")
    # ``mypkg:run`` where ``run = os.getcwd``: the callable is posix's
    with pytest.raises(RefusedFunction, match="'posix'"):
        resolve("tests.unit.test_trust_guard:reexported_getcwd")
    # the name check comes first when the path names a denied module outright
    with pytest.raises(RefusedFunction, match="'os' names a module"):
        resolve("os.path:os.getenv", ["os.path"])


osmod = os
reexported_getcwd = os.getcwd
reexported_open = open  # builtins.open is io.open ("io" or "_io", by Python version)


def test_the_worker_runs_an_allowed_module_and_orion_s_own_runner_only():
    assert run_callable("math:sqrt", [4], {}, 1000, 1000)["result"] == 2.0
    # callables the standard library implements in a C module with a leading underscore
    assert run_callable("operator:add", [1, 2], {}, 1000, 1000)["result"] == 3
    assert run_callable("bisect:bisect", [[1, 3], 2], {}, 1000, 1000)["result"] == 1
    with pytest.raises(RefusedFunction, match="'_?io'"):
        resolve("tests.unit.test_trust_guard:reexported_open")
    assert run_callable("os.path:basename", ["/a/b"], {}, 1000, 1000, None, ["os.path"])["result"] == "b"
    # the inference runner is Orion's own (the door refuses it in a tenant's spec)
    assert resolve("orion_ray.serving.inference:run_inference").__name__ == "run_inference"


# == runtime_env ===================================================================================
@pytest.mark.parametrize(
    "env,field",
    [
        ({"env_vars": {"LD_PRELOAD": "/tmp/x.so"}}, "runtime_env.env_vars.LD_PRELOAD"),
        ({"env_vars": {"PYTHONPATH": "/home"}}, "runtime_env.env_vars.PYTHONPATH"),
        ({"env_vars": {"RAY_ADDRESS": "x"}}, "runtime_env.env_vars.RAY_ADDRESS"),
        ({"env_vars": {"ORION_TENANT_ID": "bob"}}, "runtime_env.env_vars.ORION_TENANT_ID"),
        ({"env_vars": {"AWS_ACCESS_KEY_ID": "x"}}, "runtime_env.env_vars.AWS_ACCESS_KEY_ID"),
        ({"env_vars": {"CUDA_VISIBLE_DEVICES": "0,1"}}, "runtime_env.env_vars.CUDA_VISIBLE_DEVICES"),
        ({"env_vars": {"ld_preload": "x"}}, "runtime_env.env_vars.ld_preload"),
        ({"env_vars": {"A B": "x"}}, "runtime_env.env_vars.A B"),
        ({"env_vars": {"OK": 1}}, "runtime_env.env_vars.OK"),
        ({"env_vars": ["A"]}, "runtime_env.env_vars"),
        ({"working_dir": "."}, "runtime_env.working_dir"),
        ({"working_dir": "/home/orion/.orion"}, "runtime_env.working_dir"),
        ({"working_dir": "file:///etc"}, "runtime_env.working_dir"),
        ({"py_modules": ["/opt/orion"]}, "runtime_env.py_modules"),
        ({"py_modules": "s3://b/m.zip"}, "runtime_env.py_modules"),
        ({"container": {"image": "x"}}, "runtime_env.container"),
        ({"image_uri": "x"}, "runtime_env.image_uri"),
        ({"worker_process_setup_hook": "os:system"}, "runtime_env.worker_process_setup_hook"),
        ({"conda": "base"}, "runtime_env.conda"),
        ({"_ray_internal": 1}, "runtime_env._ray_internal"),
    ],
)
def test_runtime_env_outside_the_allowlist_is_refused_naming_the_field(env, field):
    assert field in [d["field"] for d in runtime_env_problems(env)]


def test_runtime_env_inside_the_allowlist_passes():
    env = {
        "pip": ["requests==2.32.0"],
        "env_vars": {"MY_SETTING": "1", "HF_HOME": "/tmp/hf"},
        "working_dir": "s3://bucket/code.zip",
        "py_modules": ["https://example.com/m.zip"],
        "excludes": ["*.ckpt"],
        "config": {"setup_timeout_seconds": 60},
    }
    assert runtime_env_problems(env) == [] and runtime_env_problems(None) == []


# == at the door: the real API over the real SQLite store ==========================================
@pytest.fixture(params=["scheduler", "store"])
def api(request, tmp_path):
    """Both write paths: through the scheduler, and the API replica writing the store itself."""
    from fastapi.testclient import TestClient

    from orion_ray.api.app import build_app
    from orion_ray.api.auth import KeyRing, hash_key
    from orion_ray.api.store_access import StoreAccess
    from orion_ray.runtime.fake import FakeRuntime
    from orion_ray.scheduler.core import Scheduler
    from orion_ray.store import SQLiteStore

    path = str(tmp_path / "o.db")
    sched = Scheduler(SQLiteStore(path), FakeRuntime())
    keys = {hash_key("alice-key"): "alice", hash_key("ops-key"): "ops"}
    sched.tenants.configure([{"id": "alice"}, {"id": "ops", "allowed_function_modules": ["os.path"]}], keys)
    access = StoreAccess(path, max_queue_size=1000) if request.param == "store" else None
    app = build_app(KeyRing([hash_key("admin-key")], keys), sched, access=access)
    with TestClient(app) as client:
        yield client


def _post(client, key, **spec):
    return client.post(
        "/api/v1/workloads",
        headers={"Authorization": f"Bearer {key}"},
        json={"workload_type": "task", **spec},
    )


def _field(r):
    assert r.status_code == 422, r.text
    return [d["field"] for d in r.json()["error"]["details"]]


def test_the_door_refuses_a_denied_function_with_a_422_naming_function(api):
    for function in ["orion_ray.credentials:read_credentials", "os:getenv", "builtins:eval", "ray:get_actor"]:
        assert _field(_post(api, "alice-key", function=function)) == ["function"]
        # the operator's own key is held to it too: allowing is per tenant, in the config
        assert _field(_post(api, "admin-key", function=function)) == ["function"]
    # the inference runner named directly (with a tenant in its kwargs) is refused like any of Orion's
    r = _post(
        api,
        "alice-key",
        function="orion_ray.serving.inference:run_inference",
        kwargs={"kind": "completion", "body": {}, "tenant_id": "bob"},
    )
    assert _field(r) == ["function"]


def test_an_allowed_module_passes_the_door_for_its_tenant_only(api):
    assert _post(api, "ops-key", function="os.path:basename", args=["/a/b"]).status_code == 202
    assert _field(_post(api, "alice-key", function="os.path:basename", args=["/a/b"])) == ["function"]


def test_the_door_refuses_a_tenant_s_runtime_env_outside_the_allowlist(api):
    r = _post(api, "alice-key", function="math:sqrt", args=[4], runtime_env={"env_vars": {"LD_PRELOAD": "x"}})
    assert _field(r) == ["runtime_env.env_vars.LD_PRELOAD"]
    r = _post(api, "alice-key", function="math:sqrt", args=[4], runtime_env={"working_dir": "/"})
    assert _field(r) == ["runtime_env.working_dir"]
    r = _post(api, "alice-key", function="math:sqrt", runtime_env={"env_vars": {"MY_FLAG": "1"}})
    assert r.status_code == 202, r.text
    # the operator's key may (a PYTHONPATH for code on the nodes, say)
    r = _post(api, "admin-key", function="math:sqrt", runtime_env={"env_vars": {"PYTHONPATH": "/opt/x"}})
    assert r.status_code == 202, r.text
