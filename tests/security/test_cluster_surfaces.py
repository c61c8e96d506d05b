"""Tried: reading the tenants' keys and a cloud credential from the environment of Ray's processes
(the head's GCS, raylet, dashboard, the executor's host job, and the workers that ran alice's and
bob's tasks), as any task could with ``os.environ``; calling the head's Ray surfaces without
Ray's token: the dashboard's Jobs API, the dashboard agent's Jobs endpoint and the runtime-env
agent on the machine's network address, and the GCS (joining as a driver, which runs code).
Answered: `orion up` starts Ray with an environment built from an allowlist, so no key reaches
any Ray process; its head runs with Ray's token auth (Ray's gRPC servers listen on every
interface whatever --node-ip-address says, so loopback-only is not available), answering 401 or
refusing the connection, and its dashboard listens on loopback only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import TENANT_KEYS

pytestmark = pytest.mark.e2e

TASK = {"workload_type": "task", "function": "math:factorial", "args": [6], "resources": {"cpu": 1}}
LOOPBACK = ("127.", "::1", "::ffff:127.")


def _head_pid(live) -> int:
    return int(json.loads((live.home / "cluster.json").read_text())["pid"])


def _tree(root: int) -> set[int]:
    """``root`` and every process below it (Ray's workers start sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
    except OSError:
        return "?"


def _run_as(live, who: str) -> None:
    """Run one task as ``who`` to the end, so a worker of that tenant exists."""
    r = live.submit(who, TASK)
    assert r.status_code == 202, r.text
    wid = r.json()["workload_id"]
    with live.client(who) as c:
        for _ in range(600):
            status = c.get(f"/api/v1/workloads/{wid}").json()["status"]
            if status in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
    assert status == "completed", status


def test_no_key_or_credential_in_any_ray_process(live):
    _run_as(live, "alice")
    _run_as(live, "bob")
    secrets = [*TENANT_KEYS.values(), live.env["AWS_SECRET_ACCESS_KEY"], live.admin_key]
    names = ["ORION_KEY_ALICE", "ORION_KEY_BOB", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"]
    seen, leaks = 0, []
    for pid in _tree(_head_pid(live)):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:  # gone since the walk
            continue
        seen += 1
        entries = environ.split("\0")
        found = [n for n in names if any(e.startswith(n + "=") for e in entries)]
        found += ["<a key's value>" for s in secrets if s in environ]
        if found:
            leaks.append((pid, _cmd(pid), found))
    workers = [p for p in _tree(_head_pid(live)) if _cmd(p).startswith("ray::")]
    assert seen > 5 and workers, "the walk found Ray's processes and the tasks' workers"
    assert leaks == []


def _listening_inodes() -> dict[str, str]:
    """``{socket inode: local address}`` of every listening TCP socket on the machine."""
    out: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # LISTEN
                continue
            addr_hex, port_hex = f[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if len(raw) == 4:
                addr = ".".join(str(b) for b in reversed(raw))
            else:  # four little-endian 32-bit words
                words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                import ipaddress

                addr = str(ipaddress.IPv6Address(b"".join(words)))
            out[f[9]] = f"{addr}:{int(port_hex, 16)}"
    return out


def _listeners(live) -> list[tuple[int, str, str]]:
    """``(pid, command, "addr:port")`` of every listening socket of the head's processes."""
    listening = _listening_inodes()
    out = []
    for pid in _tree(_head_pid(live)):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
            if inode in listening:
                out.append((pid, _cmd(pid), listening[inode]))
    return out


def _network_address() -> str | None:
    """The machine's outgoing (non-loopback) address, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no traffic: this only picks the outgoing address
        except OSError:
            return None
        addr = s.getsockname()[0]
    return None if addr.startswith("127.") else addr


def test_the_dashboard_and_jobs_api_refuse_callers_without_rays_token(live):
    dash = f"http://127.0.0.1:{live.ports['dashboard']}"
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    assert httpx.get(dash + "/api/jobs/", timeout=30).status_code == 401
    ok = httpx.get(dash + "/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert ok.status_code == 200 and any(j["metadata"].get("orion") for j in ok.json())
    listeners = _listeners(live)
    dash_on = [a for _, _, a in listeners if a.endswith(f":{live.ports['dashboard']}")]
    assert dash_on and all(a.startswith(LOOPBACK) for a in dash_on), dash_on  # loopback only
    # Every HTTP server of the head that the network reaches (the dashboard agent's Jobs
    # endpoint, the runtime-env agent) refuses an unauthenticated call; the gRPC ones (GCS,
    # raylet, workers) are refused below. Prometheus' read-only metrics endpoint stays open.
    answered = {}
    for _, cmd, addr in listeners:
        host, port = addr.rsplit(":", 1)
        if host.startswith(LOOPBACK):
            continue
        target = _network_address() or "127.0.0.1"
        try:
            r = httpx.get(f"http://{target}:{port}/api/job_agent/jobs/x", timeout=5)
        except httpx.HTTPError:  # not HTTP (gRPC): no answer to a plain request
            continue
        if not r.text.startswith("# HELP"):
            answered[f"{cmd.strip()[:40]} {addr}"] = r.status_code
    assert answered and set(answered.values()) == {401}, answered


def test_a_driver_without_the_token_cannot_join_the_cluster(live, tmp_path):
    host = _network_address() or "127.0.0.1"
    env = dict(live.env, RAY_AUTH_MODE="disabled", HOME=str(tmp_path))  # no token file there
    env.pop("RAY_AUTH_TOKEN", None)
    code = f"import ray; ray.init(address='{host}:{live.ports['ray']}'); print(ray.cluster_resources())"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode != 0 and "CPU" not in p.stdout, p.stdout
    assert "token" in p.stderr.lower(), p.stderr[-2000:]
