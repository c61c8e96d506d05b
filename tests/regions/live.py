"""The live control plane and two regional Orions the region tests share (``conftest.py``), and
the helpers they use: each region is a real `orion up` (its own ORION_HOME, its own local Ray on
its own ports, 2 logical GPUs) joined with `--control-plane`; the control plane is the real
`orion control-plane up` process. Runs are shell jobs that append a line to a marker file, so a
test counts how many times a run really ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional

import httpx

from tests.live_orion import BIN, free_port

LOST_TIMEOUT_S = 8.0
HEARTBEAT_S = 1.0
CONFIG = """\
orion:
  scheduler: {pin_single_bundle_tasks: true}
  tenants:
    - {id: acme, weight: 1, api_key_env: ORION_KEY_ACME}
    - {id: beta, weight: 1, api_key_env: ORION_KEY_BETA}
"""
KEYS = {"acme": "acme-regions-key-0123456789", "beta": "beta-regions-key-0123456789"}
# tenant beta's global quota at the control plane (acme has none: the other tests' runs are free)
QUOTAS = {"beta": {"concurrent": {"gpu": 2}}}
# a tiny status outbox in one region: a few runs while the control plane is away overflow it, and
# the agent then sends a full listing (a resync) instead of the changes it dropped
OUTBOX_KEEP = {"r-east": 12}


class Region:
    """One regional Orion: its name, home, environment, URL and admin key."""

    def __init__(self, name: str, home: Path, env: dict[str, str], url: str, admin: str) -> None:
        self.name, self.home, self.env, self.url, self.admin = name, home, env, url, admin

    def agent_pid(self) -> int:
        return int(json.loads((self.home / "region-agent.json").read_text())["pid"])

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin}"}, timeout=30)


def region_key(cp_home: Path, name: str) -> str:
    """A fresh key for region ``name`` (`orion control-plane region-key`)."""
    return subprocess.run(
        [str(BIN / "orion"), "control-plane", "region-key", "--home", str(cp_home), name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def start_region(name: str, home: Path, cp_url: str, cp_home: Path, labels: dict[str, str]) -> Region:
    """`orion up` for region ``name`` joined to the control plane (a fresh region key)."""
    key = region_key(cp_home, name)
    env = dict(os.environ, ORION_HOME=str(home), PATH=f"{BIN}:{os.environ['PATH']}", RAY_AUTH_MODE="token")
    for var in ("ORION_URL", "ORION_API_KEY"):
        env.pop(var, None)
    env.update({f"ORION_KEY_{t.upper()}": k for t, k in KEYS.items()})
    env["ORION_REGION_KEY"] = key
    home.mkdir(parents=True, exist_ok=True)
    config = CONFIG
    if name in OUTBOX_KEEP:
        config += f"  region: {{control_plane: '{cp_url}', name: {name}, outbox_keep: {OUTBOX_KEEP[name]}}}\n"
    (home / "orion.yaml").write_text(config)
    cmd = [
        str(BIN / "orion"),
        "up",
        "--config",
        str(home / "orion.yaml"),
        "--num-cpus",
        "4",
        "--num-gpus",
        "2",
    ]
    cmd += ["--port", str(free_port()), "--ray-port", str(free_port()), "--dashboard-port", str(free_port())]
    cmd += ["--control-plane", cp_url, "--region", name, "--heartbeat-s", str(HEARTBEAT_S)]
    for k, v in labels.items():
        cmd += ["--region-label", f"{k}={v}"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:  # Ray's own start-up bounds are overrun on a loaded machine: once more
        stop_home(home)
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"orion up ({name}) failed:\n{p.stdout}\n{p.stderr}"
    creds = json.loads((home / "credentials").read_text())
    return Region(name, home, env, creds["url"], creds["api_key"])


def stop_region(r: Region) -> None:
    """`orion down` for ``r`` (its agent too)."""
    stop_home(r.home)


def stop_home(home: Path) -> None:
    """`orion down` for the Orion whose home is ``home`` (also one whose `orion up` failed midway)."""
    env = dict(os.environ, ORION_HOME=str(home), PATH=f"{BIN}:{os.environ['PATH']}", RAY_AUTH_MODE="token")
    subprocess.run([str(BIN / "orion"), "down"], env=env, capture_output=True, text=True, timeout=120)


class ControlPlane:
    """The control plane process: its home, URL and admin key."""

    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        # a loaded 2-core machine can take seconds to answer a submit: a dispatch is not given up soon
        self.settings = {"region_lost_timeout_s": LOST_TIMEOUT_S, "dispatch_timeout_s": 30, "quotas": QUOTAS}

    def up(self) -> None:
        home, port = str(self.home), str(self.port)
        cmd = [str(BIN / "orion"), "control-plane", "up", "--home", home, "--port", port]
        settings = self.home.parent / f"{self.home.name}-settings.json"
        settings.write_text(json.dumps(self.settings))
        subprocess.run(cmd + ["--settings", str(settings)], check=True, capture_output=True, timeout=90)
        self.admin = json.loads((self.home / "credentials.json").read_text())["api_key"]

    def down(self) -> None:
        cmd = [str(BIN / "orion"), "control-plane", "down", "--home", str(self.home)]
        subprocess.run(cmd, check=False, capture_output=True, timeout=60)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin}"}, timeout=30)

    def submit(self, body: dict[str, Any]) -> httpx.Response:
        with self.client() as c:
            return c.post("/api/v1/workloads", json=body)

    def run(self, run_id: str) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(f"/api/v1/workloads/{run_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def listing(self) -> list[dict[str, Any]]:
        with self.client() as c:
            r = c.get("/api/v1/workloads", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def region(self, name: str) -> dict[str, Any]:
        with self.client() as c:
            return c.get(f"/api/v1/regions/{name}").json()

    def audit(self, region: str) -> list[dict[str, Any]]:
        with self.client() as c:
            r = c.get("/api/v1/audit", params={"region": region, "limit": 1000})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def cancel(self, run_id: str) -> None:
        with self.client() as c:
            c.delete(f"/api/v1/workloads/{run_id}")

    def set_state(self, name: str, state: str) -> None:
        with self.client() as c:
            r = c.post(f"/api/v1/regions/{name}/state", json={"state": state})
        assert r.status_code == 200, r.text


class Live:
    """What the tests get: the control plane, the regions by name, a marker directory."""

    def __init__(self, cp: ControlPlane, regions: dict[str, Region], markers: Path) -> None:
        self.cp, self.regions, self.markers = cp, regions, markers

    def job(
        self, marker: str, *, sleep_s: float = 0.0, gpus: float = 0, tenant: str = "acme", **placement: Any
    ) -> dict[str, Any]:
        """A shell job of ``tenant`` that appends a line to ``markers/<marker>`` (then sleeps
        ``sleep_s``)."""
        path = self.markers / marker
        cmd = f"echo ran >> {path}" + (f" && sleep {sleep_s}" if sleep_s else "")
        body: dict[str, Any] = {
            "workload_type": "job",
            "entrypoint": f"sh -c '{cmd}'",
            "resources": {"cpu": 0.5, "gpu": gpus},
            "metadata": {"tenant_id": tenant},
        }
        body.update(placement)
        return body

    def ran(self, marker: str) -> int:
        """How many times the job of ``marker`` ran."""
        p = self.markers / marker
        return len(p.read_text().splitlines()) if p.exists() else 0


def wait_for(what: Callable[[], Any], *, within_s: float = 180, every_s: float = 0.5, about: str = "") -> Any:
    """Poll ``what`` until it returns something truthy (a bound on waiting, not a timing check)."""
    end = time.monotonic() + within_s
    last: Optional[BaseException] = None
    while time.monotonic() < end:
        try:
            got = what()
            if got:
                return got
        except (httpx.HTTPError, AssertionError, KeyError, OSError) as exc:
            last = exc
        time.sleep(every_s)
    raise AssertionError(f"waited {within_s:.0f} s for {about or what}: {last!r}")


def pause(pid: int) -> None:
    """Stop a process (a partition: the region runs, its agent says nothing)."""
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)
