"""GCS fault tolerance without Ray: the ``orion.ha`` config, the head's start plan (``gcs_ha``), the
Redis password's sources, and the supervisor restarting a stand-in ``gcs_server`` (a ``sleep``
under that name), started by a stand-in ``ray start`` that returns at once as the real one does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orion_ray import gcs_ha
from orion_ray.config import OrionConfig, load_config
from orion_ray.errors import ConfigError
from orion_ray.gcs_supervisor import GCS_NAME, find_gcs, find_process
from orion_ray.ha_config import HaConfig
from orion_ray.ray_env import ray_process_env


# -- config ---------------------------------------------------------------------------------------
def test_ha_defaults_to_no_gcs_fault_tolerance_and_a_15s_lease():
    ha = OrionConfig().orion.ha
    assert ha.gcs_ft == "none" and ha.lease_ttl_s == 15.0


def test_ha_loads_from_orion_yaml(tmp_path):
    f = tmp_path / "orion.yaml"
    f.write_text("orion:\n  ha: {gcs_ft: redis, redis_address: 'redis.internal:6380', lease_ttl_s: 20}\n")
    ha = load_config(str(f)).orion.ha
    assert ha.redis_address == "redis.internal:6380" and ha.lease_ttl_s == 20


@pytest.mark.parametrize(
    "body, field",
    [
        ("{gcs_ft: etcd}", "orion.ha.gcs_ft"),
        ("{gcs_ft: none, redis_address: 'h:1'}", "orion.ha"),
        ("{gcs_ft: redis, rocksdb_path: /x}", "orion.ha"),
        ("{gcs_ft: redis, redis_address: 'no port'}", "orion.ha.redis_address"),
        ("{lease_ttl_s: 0}", "orion.ha.lease_ttl_s"),
        ("{gcs_ft: redis, password: x}", "orion.ha.password"),
    ],
)
def test_bad_ha_settings_are_refused_naming_the_field(tmp_path, body, field):
    f = tmp_path / "orion.yaml"
    f.write_text(f"orion:\n  ha: {body}\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(f))
    assert field in [d["field"] for d in err.value.details]


# -- the head's plan ------------------------------------------------------------------------------
def test_no_plan_without_gcs_fault_tolerance(tmp_path):
    assert gcs_ha.prepare(HaConfig(), tmp_path) is None


def test_rocksdb_sets_ray_storage_and_a_private_path(tmp_path):
    plan = gcs_ha.prepare(HaConfig(gcs_ft="rocksdb"), tmp_path)
    assert plan.env == {"RAY_gcs_storage": "rocksdb", "RAY_gcs_storage_path": str(tmp_path / "gcs-rocksdb")}
    assert (tmp_path / "gcs-rocksdb").stat().st_mode & 0o777 == 0o700
    assert plan.ray_args == [] and plan.state == {"gcs_ft": "rocksdb"}


def test_an_external_redis_gets_its_address_a_namespace_and_the_password_from_the_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    plan = gcs_ha.prepare(
        HaConfig(gcs_ft="redis", redis_address="10.0.0.5:6379", redis_password_file=str(pw)), tmp_path
    )
    assert plan.env["RAY_REDIS_ADDRESS"] == "10.0.0.5:6379"
    assert plan.env["RAY_external_storage_namespace"].startswith("orion-")
    assert plan.ray_args == ["--redis-password=s3cret"]
    assert "redis_pid" not in plan.state  # nothing started: nothing for `orion down` to stop
    # each head has a namespace of its own (a shared Redis never mixes two clusters' tables)
    again = gcs_ha.prepare(HaConfig(gcs_ft="redis", redis_address="10.0.0.5:6379"), tmp_path)
    assert again.env["RAY_external_storage_namespace"] != plan.env["RAY_external_storage_namespace"]


def test_the_password_never_reaches_the_ray_processes_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ORION_REDIS_PASSWORD", "from-env")
    ha = HaConfig(gcs_ft="redis", redis_address="h:1")
    plan = gcs_ha.prepare(ha, tmp_path)
    assert plan.ray_args == ["--redis-password=from-env"]
    env = ray_process_env(os.environ, settings=plan.env)
    assert "from-env" not in env.values() and "ORION_REDIS_PASSWORD" not in env


def test_a_missing_or_empty_password_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        gcs_ha.redis_password(HaConfig(gcs_ft="redis", redis_password_file=str(tmp_path / "none")))
    assert err.value.details[0]["field"] == "orion.ha.redis_password_file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError):
        gcs_ha.redis_password(HaConfig(gcs_ft="redis", redis_password_file=str(tmp_path / "empty")))


def test_no_redis_server_binary_is_a_config_error_naming_the_package(tmp_path):
    with pytest.raises(ConfigError) as err:
        gcs_ha.prepare(HaConfig(gcs_ft="redis", redis_server="no-such-redis-server"), tmp_path)
    assert "apt-get install redis-server" in err.value.message


def test_the_plan_runs_ray_start_without_block_under_the_supervisor():
    plan = gcs_ha.HeadPlan(ray_args=["--redis-password=x"], interval_s=0.25)
    cmd = plan.wrap(["ray", "start", "--head", "--block", "--port=1"])
    assert cmd[:6] == [sys.executable, "-m", "orion_ray.gcs_supervisor", "--interval", "0.25", "--"]
    assert cmd[6:] == ["ray", "start", "--head", "--port=1", "--redis-password=x"]


def test_stop_local_redis_leaves_a_reused_pid_alone():
    assert gcs_ha.stop_local_redis({}) is False
    assert gcs_ha.stop_local_redis({"redis_pid": os.getpid()}) is False  # not a redis: not ours


# -- the supervisor -------------------------------------------------------------------------------
def _wait(predicate, timeout_s: float = 60.0):  # a bound: an overloaded 2-core run took > 15 s
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_supervisor_restarts_a_killed_gcs_with_its_command_and_stops_on_sigterm(tmp_path):
    fake_gcs = tmp_path / GCS_NAME
    fake_gcs.symlink_to("/bin/sleep")  # its process is named gcs_server
    ray_start = tmp_path / "ray-start"  # like `ray start` without --block: starts, then returns
    ray_start.write_text(f"#!/bin/sh\n{fake_gcs} 300 &\nexit 0\n")
    ray_start.chmod(0o755)
    sup = subprocess.Popen(
        [sys.executable, "-m", "orion_ray.gcs_supervisor", "--interval", "0.05", "--", str(ray_start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started: list[int] = []
    try:
        first = _wait(lambda: find_gcs(sup.pid))  # adopted by the supervisor (a subreaper)
        started.append(first)
        os.kill(first, signal.SIGKILL)
        second = _wait(lambda: (p := find_gcs(sup.pid)) not in (None, first) and p)
        started.append(second)
        argv = Path(f"/proc/{second}/cmdline").read_bytes().split(b"\0")
        assert argv[:2] == [str(fake_gcs).encode(), b"300"]  # the same command again
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=15) == 0
        out = sup.stdout.read()
        assert "restarted it as pid" in out
    finally:
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if sup.poll() is None:
            sup.kill()


def test_the_supervisor_reports_a_failed_ray_start(tmp_path):
    failing = tmp_path / "ray-start"
    left = tmp_path / "left-behind"
    left.symlink_to("/bin/sleep")
    failing.write_text(f"#!/bin/sh\n{left} 300 &\necho $! > {tmp_path / 'pid'}\nexit 3\n")
    failing.chmod(0o755)
    p = subprocess.run(
        [sys.executable, "-m", "orion_ray.gcs_supervisor", "--", str(failing)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 3 and "exited with 3" in p.stderr
    orphan = int((tmp_path / "pid").read_text())
    assert _wait(lambda: not Path(f"/proc/{orphan}").exists() or _zombie(orphan))  # not left running


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_find_process_finds_nothing_below_a_childless_process():
    assert find_process(os.getpid(), "no-such-process-name") is None
