"""A real `orion up` in a subprocess, as a user runs it, for the suites that share one per session
(the attack suite, the console's browser tests): fresh ORION_HOME, free ports, tenants' keys in the
environment, Ray's token auth on; always `orion down`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A free loopback port (taken by nothing at the time of asking)."""
    with socket.socket() as s:
        s.bind(("", 0))  # free on every address: Ray listens on the node IP too
        return s.getsockname()[1]


@contextlib.contextmanager
def orion_up(
    home: Path,
    config: str,
    tenant_keys: dict[str, str],
    *,
    extra_env: dict[str, str] | None = None,
    num_cpus: int = 4,
) -> Iterator[tuple[dict, dict[str, str], dict[str, int]]]:
    """`orion up` (``num_cpus`` logical CPUs, 2 fake GPUs) with ``config`` as orion.yaml and each
    tenant's key in ``ORION_KEY_<TENANT>``; yields ``(credentials, env, ports)``."""
    env = dict(os.environ, ORION_HOME=str(home), PATH=f"{BIN}:{os.environ['PATH']}")
    for var in ("ORION_URL", "ORION_API_KEY"):
        env.pop(var, None)
    env.update({f"ORION_KEY_{t.upper()}": k for t, k in tenant_keys.items()})
    env.update(extra_env or {})
    env["RAY_AUTH_MODE"] = "token"  # a driver started with this env can join Orion's head (token auth)
    ports = {"api": free_port(), "ray": free_port(), "dashboard": free_port()}
    (home / "orion.yaml").write_text(config)
    cmd = [str(BIN / "orion"), "up", "--config", str(home / "orion.yaml"), "--num-cpus", str(num_cpus)]
    cmd += ["--num-gpus", "2", "--port", str(ports["api"]), "--ray-port", str(ports["ray"])]
    cmd += ["--dashboard-port", str(ports["dashboard"])]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert p.returncode == 0, f"orion up failed:\n{p.stdout}\n{p.stderr}"
        yield json.loads((home / "credentials").read_text()), env, ports
    finally:
        subprocess.run([str(BIN / "orion"), "down"], env=env, capture_output=True, text=True, timeout=120)
