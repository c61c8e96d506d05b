"""The environment Orion gives Ray's processes (an allowlist), the operator's additions to it, the
token file of a local head, and where a job workload's driver is placed."""

from __future__ import annotations

import stat

import pytest

from orion_ray.cluster import ensure_ray_token
from orion_ray.config import OrionConfig
from orion_ray.errors import ConfigError
from orion_ray.ray_env import looks_secret, ray_process_env
from orion_ray.runtime.conventions import JOB_DRIVER_RESOURCE, job_driver_options

OPERATOR_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/home/op",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "VIRTUAL_ENV": "/venv",
    "ORION_HOME": "/home/op/.orion",
    "RAY_enable_autoscaler_v2": "1",
    "RAY_gcs_storage": "rocksdb",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "AWS_REGION": "us-east-1",
    # what must never reach a Ray process
    "ORION_KEY_ALICE": "alice-key",
    "TEAM_B_SECRET": "bob-key",
    "ORION_API_KEY": "admin-key",
    "ORION_URL": "http://127.0.0.1:8000",
    "AWS_ACCESS_KEY_ID": "AKIA...",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_SESSION_TOKEN": "aws-session",
    "AWS_PROFILE": "prod",
    "RAY_AUTH_TOKEN": "ray-token",
    "RAY_AUTH_TOKEN_PATH": "/somewhere",
    "RAY_REDIS_PASSWORD": "redis-pw",
    "HF_TOKEN": "hf",
    "GITHUB_TOKEN": "gh",
    "DATABASE_URL": "postgres://u:pw@db/x",
    "PYTHONPATH": "/src",
    "LD_PRELOAD": "/evil.so",
    "SSH_AUTH_SOCK": "/tmp/ssh-agent",
}


def test_only_allowed_names_pass_and_orions_settings_win():
    env = ray_process_env(OPERATOR_ENV, settings={"RAY_AUTH_MODE": "token", "ORION_HOME": "/o"})
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/op",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "VIRTUAL_ENV": "/venv",
        "ORION_HOME": "/o",
        "RAY_enable_autoscaler_v2": "1",
        "RAY_gcs_storage": "rocksdb",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "AWS_REGION": "us-east-1",
        "RAY_AUTH_MODE": "token",
    }
    for value in ("alice-key", "bob-key", "admin-key", "aws-secret", "ray-token", "redis-pw"):
        assert value not in env.values()


def test_an_operators_extra_name_passes_but_never_a_tenants_key_variable():
    environ = {"PATH": "/bin", "MY_CACHE_DIR": "/c", "TEAM_KEYS": "k", "PLAIN_TENANT_VAR": "tenant-key"}
    env = ray_process_env(
        environ, extra_names=["MY_CACHE_DIR", "PLAIN_TENANT_VAR"], refused=["PLAIN_TENANT_VAR"]
    )
    assert env == {"PATH": "/bin", "MY_CACHE_DIR": "/c"}


@pytest.mark.parametrize(
    "name",
    [
        "ORION_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "RAY_AUTH_TOKEN",
        "db_password",
        "X_CREDENTIALS",
        "PYTHONPATH",
    ],
)
def test_credential_names_look_secret(name):
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["PATH", "RAY_AUTH_MODE", "HF_HOME", "LC_ALL"])
def test_plain_names_do_not(name):
    assert not looks_secret(name)


def test_config_refuses_a_credential_in_ray_pass_env():
    ok = OrionConfig.model_validate({"orion": {"ray_pass_env": ["MY_CACHE_DIR"]}})
    assert ok.orion.ray_pass_env == ["MY_CACHE_DIR"]
    for bad in (["AWS_SECRET_ACCESS_KEY"], ["HF_TOKEN"], ["not a name"]):
        with pytest.raises(Exception) as info:
            OrionConfig.model_validate({"orion": {"ray_pass_env": bad}})
        assert "ray_pass_env" in str(info.value)


def test_config_file_error_names_the_field(tmp_path):
    from orion_ray.config import load_config

    path = tmp_path / "orion.yaml"
    path.write_text("orion:\n  ray_pass_env: [GITHUB_TOKEN]\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert "ray_pass_env" in str(info.value.details) + str(info.value)


def test_the_local_heads_token_file_is_created_private_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = ensure_ray_token()
    assert path == tmp_path / ".ray" / "auth_token"
    token = path.read_text()
    assert len(token) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_ray_token().read_text() == token  # an existing token is kept (other heads use it)
    path.chmod(0o644)  # as Ray writes it
    ensure_ray_token()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == token


def test_job_drivers_go_to_worker_nodes_when_the_cluster_marks_them():
    assert job_driver_options({"CPU": 4.0}) == {}  # a local single-node head: the head is the machine
    opts = job_driver_options({"CPU": 64.0, JOB_DRIVER_RESOURCE: 2000.0})
    assert 0 < opts["entrypoint_resources"][JOB_DRIVER_RESOURCE] < 1
