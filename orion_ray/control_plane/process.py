"""``orion control-plane up|down|status|region-key``: the control plane as its own process.

Its home (``--home``, else ``$ORION_CONTROL_PLANE_HOME``, else ``~/.orion/control-plane``) holds
the store, the admin key (``credentials.json``, 0600), the region keys' hashes and the process's
pid and log. Auth is token auth, always: an admin key for operators and the dispatcher's own
calls, one region-scoped key per region (it may only join, heartbeat and report status for that
region), tenants' keys when the settings name them. ``up`` returns once ``/health`` answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import httpx

from ..api.auth import hash_key, new_key
from ..pids import alive as _alive
from ..store.files import private_dir, write_private
from .server import CREDENTIALS, REGION_KEYS

STATE = "process.json"


def default_home() -> Path:
    """Where the control plane keeps its files unless told."""
    env = os.environ.get("ORION_CONTROL_PLANE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".orion" / "control-plane"


def _state(home: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((home / STATE).read_text()))
    except (OSError, ValueError):
        return {}


def credentials(home: Path) -> dict[str, str]:
    """The admin key and URL (created on first use)."""
    path = home / CREDENTIALS
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        private_dir(home)
        creds = {"api_key": new_key(), "url": ""}
        write_private(path, json.dumps(creds))
        return creds


def region_key(home: Path, region: str) -> str:
    """A new key for ``region`` (its hash kept; the key is shown once); a running control plane
    picks it up within a loop pass."""
    private_dir(home)
    path = home / REGION_KEYS
    try:
        keys = dict(json.loads(path.read_text()))
    except FileNotFoundError:
        keys = {}
    key = new_key()
    keys[hash_key(key)] = region
    write_private(path, json.dumps(keys))
    return key


def up(
    home: Optional[Path] = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8100,
    settings: Optional[dict[str, Any]] = None,
    wait_s: float = 60.0,
    env: Optional[dict[str, str]] = None,
) -> dict[str, Any]:
    """Start the control plane (or find it running); return its URL, home and pid once it
    answers. ``settings`` (when given) replace ``control-plane.json``."""
    home = home or default_home()
    private_dir(home)
    creds = credentials(home)
    st = _state(home)
    if _alive(st.get("pid")):
        return {"url": st["url"], "home": str(home), "pid": st["pid"], "credentials": str(home / CREDENTIALS)}
    if settings is not None:
        write_private(home / "control-plane.json", json.dumps(settings))
    url = f"http://{host}:{port}"
    log = open(home / "control-plane.log", "ab")
    cmd = [sys.executable, "-m", "orion_ray.control_plane.server", "--home", str(home)]
    cmd += ["--host", host, "--port", str(port)]
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env or dict(os.environ)
    )
    write_private(home / STATE, json.dumps({"pid": proc.pid, "url": url}))
    write_private(home / CREDENTIALS, json.dumps({**creds, "url": url}))
    end = time.monotonic() + wait_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the control plane exited ({proc.returncode}); see {home / 'control-plane.log'}"
            )
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"the control plane did not answer within {wait_s:.0f} s")
        time.sleep(0.2)
    return {"url": url, "home": str(home), "pid": proc.pid, "credentials": str(home / CREDENTIALS)}


def down(home: Optional[Path] = None, *, grace_s: float = 10.0) -> bool:
    """Stop the control plane (SIGTERM, then SIGKILL after ``grace_s``); False if none ran."""
    home = home or default_home()
    pid = _state(home).get("pid")
    if not _alive(pid):
        return False
    os.kill(int(pid), signal.SIGTERM)
    end = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(int(pid), signal.SIGKILL)
    return True


def status(home: Optional[Path] = None) -> dict[str, Any]:
    """Whether it runs, where, and its regions."""
    home = home or default_home()
    st = _state(home)
    if not _alive(st.get("pid")):
        return {"running": False, "home": str(home)}
    key = credentials(home)["api_key"]
    r = httpx.get(st["url"] + "/api/v1/regions", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return {
        "running": True,
        "home": str(home),
        "url": st["url"],
        "pid": st["pid"],
        "regions": r.json().get("items"),
    }
