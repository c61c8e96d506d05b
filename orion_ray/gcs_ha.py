"""GCS fault tolerance for the local head ``orion up`` starts (``orion.ha``; docs/high-availability.md).

``prepare`` decides how the head starts: the Ray settings of the chosen backend (Redis:
``RAY_REDIS_ADDRESS`` and a storage namespace of its own; RocksDB: ``RAY_gcs_storage`` and its
path), the Redis password argument, and the supervisor that restarts the GCS
(``gcs_supervisor.py``). Without ``redis_address`` it starts a ``redis-server`` of its own on a
free loopback port, with a random password in a 0600 config file (never on redis-server's command
line), and ``stop_local_redis`` stops it by its pid at ``orion down``.

The password and Ray: Ray takes a Redis password only as ``ray start --redis-password``, and hands
it to ``gcs_server`` (``--redis_password``) and to the head's worker processes as command-line
arguments. On a machine shared with other users those are readable in ``/proc`` unless it is
mounted with ``hidepid=2``; Orion keeps it off every environment (``ray_env`` refuses such names)
and off files other than the 0600 ones here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import ConfigError
from .ha_config import REDIS_PASSWORD_ENV, HaConfig
from .pids import stop as _stop
from .store.files import open_private, private_dir, write_private


@dataclass
class HeadPlan:
    """How to start a fault-tolerant head: settings for Ray's environment, arguments for ``ray
    start``, the supervisor's command prefix, and what ``orion down`` needs later (``state``)."""

    env: dict[str, str] = field(default_factory=dict)
    ray_args: list[str] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    interval_s: float = 0.5

    def wrap(self, ray_start: list[str]) -> list[str]:
        """``ray_start`` without ``--block``, run under the GCS supervisor."""
        cmd = [a for a in ray_start if a != "--block"] + self.ray_args
        return [
            sys.executable,
            "-m",
            "orion_ray.gcs_supervisor",
            "--interval",
            f"{self.interval_s:g}",
            "--",
            *cmd,
        ]


def redis_password(ha: HaConfig, environ=None) -> Optional[str]:
    """The external Redis's password: from ``redis_password_file``, else ``ORION_REDIS_PASSWORD``."""
    environ = os.environ if environ is None else environ
    if ha.redis_password_file:
        path = Path(ha.redis_password_file).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the Redis password file: {exc}",
                [{"field": "orion.ha.redis_password_file", "problem": str(exc)}],
            ) from None
        if not text:
            raise ConfigError(
                "the Redis password file is empty",
                [{"field": "orion.ha.redis_password_file", "problem": "empty"}],
            )
        return text
    return environ.get(REDIS_PASSWORD_ENV) or None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_local_redis(home: Path, binary: str = "redis-server", wait_s: float = 20.0) -> dict:
    """Start ``redis-server`` on a free loopback port with a random password (in a 0600 config
    file, with its data under ``home/redis``); return ``{"redis_pid", "redis_address", "password"}``."""
    exe = shutil.which(binary)
    if exe is None:
        raise ConfigError(
            f"{binary} is not installed (Debian: apt-get install redis-server); or set redis_address",
            [{"field": "orion.ha.gcs_ft", "problem": f"redis needs {binary} or redis_address"}],
        )
    root = home / "redis"
    private_dir(root)
    port, password = _free_port(), secrets.token_hex(24)
    conf = root / "redis.conf"
    write_private(
        conf,
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"requirepass {password}",
                f"dir {root}",
                'save ""',
                # the GCS's tables survive a restart of Redis itself too
                "appendonly yes",
                "appendfsync everysec",
                "daemonize no",
                f"logfile {root / 'redis.log'}",
                "",
            ]
        ),
    )
    with open_private(root / "redis-stdout.log") as out:
        proc = subprocess.Popen(
            [exe, str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.time() + wait_s
    while not _port_open(port):
        if proc.poll() is not None or time.time() > deadline:
            _stop(proc.pid)
            raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}; see {root / 'redis.log'}")
        time.sleep(0.1)
    return {"redis_pid": proc.pid, "redis_address": f"127.0.0.1:{port}", "password": password}


def prepare(ha: HaConfig, home: Path) -> Optional[HeadPlan]:
    """The plan of a fault-tolerant head (None: ``gcs_ft: none``). Starts a local Redis when
    ``gcs_ft: redis`` names none; the caller stops it (``stop_local_redis``) if the head fails."""
    if ha.gcs_ft == "none":
        return None
    plan = HeadPlan(interval_s=ha.supervise_interval_s, state={"gcs_ft": ha.gcs_ft})
    if ha.gcs_ft == "rocksdb":
        path = Path(ha.rocksdb_path).expanduser() if ha.rocksdb_path else home / "gcs-rocksdb"
        private_dir(path)
        plan.env.update({"RAY_gcs_storage": "rocksdb", "RAY_gcs_storage_path": str(path)})
        return plan
    if ha.redis_address:
        address, password = ha.redis_address, redis_password(ha)
    else:
        local = start_local_redis(home, ha.redis_server)
        address, password = local["redis_address"], local["password"]
        plan.state["redis_pid"] = local["redis_pid"]
    # a namespace per head: a shared Redis (or the next `orion up`) never mixes clusters' tables
    plan.env.update(
        {"RAY_REDIS_ADDRESS": address, "RAY_external_storage_namespace": f"orion-{secrets.token_hex(6)}"}
    )
    plan.state["redis_address"] = address
    if password:
        plan.ray_args.append(f"--redis-password={password}")
    return plan


def stop_local_redis(state: dict) -> bool:
    """Stop the ``redis-server`` ``orion up`` started (by its pid, if it is still redis)."""
    pid = state.get("redis_pid")
    if not pid:
        return False
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    if not name.startswith("redis"):
        return False  # the pid was reused by another process: not ours to stop
    _stop(int(pid))
    return True
