"""One fault-tolerant Orion for the package: `orion up` with `orion.ha.gcs_ft: redis` (a real
`redis-server` that `orion up` starts on a free loopback port), plus a worker node (a second `ray
start` on this machine, 2 logical GPUs and the custom resource ``ha_worker``) so a task can run
away from the head while the head's processes are killed.

Without `redis-server` the tests skip with the reason, unless ``ORION_REQUIRE_REDIS=1`` (set by
`.ci/run`, which installs it): then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from orion_ray.gcs_supervisor import children_of
from tests.live_orion import BIN, orion_up

ROOT = str(Path(__file__).resolve().parents[2])
CONFIG = """\
orion:
  ha: {gcs_ft: redis, lease_ttl_s: 10}
"""


@dataclass
class HaLive:
    """The running Orion: URL, admin key, environment, ports, its home, the head's supervisor pid,
    and the marker directory of ``benchmarks._tasks:sleep_and_mark``."""

    url: str
    admin: str
    env: dict[str, str]
    ports: dict[str, int]
    home: Path
    head_pid: int
    markers: Path


def _tree(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        for c in children_of(todo.pop()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _stop_tree(pid: int) -> None:
    """Stop the worker node this fixture started: its `ray start --block` and what is below it."""
    procs = _tree(pid) | {pid}
    for p in procs:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in procs):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    for p in procs:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start_worker(home: Path, env: dict[str, str], ray_port: int, attempts: int = 3) -> subprocess.Popen:
    """The worker node: `ray start --block` joining the head. Ray gives a raylet 30 s to register
    (fixed in Ray's code); on a loaded machine that can run out, so a failed start is tried again."""
    cmd = [str(BIN / "ray"), "start", f"--address=127.0.0.1:{ray_port}", "--num-cpus=2", "--num-gpus=2"]
    cmd += ['--resources={"ha_worker": 1}', "--block", "--disable-usage-stats"]
    log = home / "worker.log"
    for _ in range(attempts):
        start = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            worker = subprocess.Popen(
                cmd,
                env=dict(env, PYTHONPATH=ROOT),  # the test's own node: its workers import benchmarks/
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + 120
        while time.time() < deadline and worker.poll() is None:
            if b"Ray runtime started" in log.read_bytes()[start:]:
                return worker
            time.sleep(0.5)
        _stop_tree(worker.pid)
    raise AssertionError(f"the worker node did not start; see {log}")


@pytest.fixture(scope="package")
def ha_live(tmp_path_factory) -> Iterator[HaLive]:
    if shutil.which("redis-server") is None:
        why = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("ORION_REQUIRE_REDIS"):
            pytest.fail(why + "; ORION_REQUIRE_REDIS=1 forbids skipping")
        pytest.skip(why)
    home = tmp_path_factory.mktemp("orion-ha")
    markers = home / "markers"
    markers.mkdir()
    with orion_up(home, CONFIG, {}, num_cpus=2) as (creds, env, ports):
        state = json.loads((home / "cluster.json").read_text())
        assert state.get("gcs_ft") == "redis" and state.get("redis_pid")
        worker = _start_worker(home, env, ports["ray"])
        try:
            yield HaLive(creds["url"], creds["api_key"], env, ports, home, int(state["pid"]), markers)
        finally:
            _stop_tree(worker.pid)
