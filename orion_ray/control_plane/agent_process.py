"""Start and stop the region agent (``agent.py``) as its own process beside ``orion up``.

``orion up --control-plane URL --region NAME --region-key KEY`` (or ``orion.region`` in
orion.yaml, the key in the variable ``key_env`` names) starts it once the regional Orion answers;
``orion down`` stops it. The key reaches it through its environment (never its command line, which
any local user can read); Ray's processes never see it (``ray_env.py`` starts them with an
allowlisted environment).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..config import orion_home
from ..pids import alive as _alive
from ..store.files import private_dir, write_private

PIDFILE = "region-agent.json"
KEY_ENV = "ORION_REGION_AGENT_KEY"


def _pidfile() -> Path:
    return orion_home() / PIDFILE


def running() -> Optional[dict[str, Any]]:
    """The running agent's pid and settings, if one runs."""
    try:
        st = dict(json.loads(_pidfile().read_text()))
    except (OSError, ValueError):
        return None
    return st if _alive(st.get("pid")) else None


def start(
    *,
    control_plane: str,
    region: str,
    region_key: str,
    region_url: str,
    admin_key: str,
    store_path: str,
    heartbeat_s: float = 5.0,
    labels: Optional[dict[str, str]] = None,
    outbox_keep: int = 10_000,
    resync_terminal_s: float = 86_400.0,
) -> dict[str, Any]:
    """Start the agent (a running one is stopped first: its settings may have changed)."""
    stop()
    home = orion_home()
    private_dir(home)
    settings = {
        "control_plane": control_plane,
        "region": region,
        "region_url": region_url,
        "store_path": store_path,
        "heartbeat_s": heartbeat_s,
        "labels": labels or {},
        "outbox_keep": outbox_keep,
        "resync_terminal_s": resync_terminal_s,
    }
    env = dict(os.environ)
    env[KEY_ENV] = json.dumps({"region_key": region_key, "admin_key": admin_key})
    log = open(home / "region-agent.log", "ab")
    p = subprocess.Popen(
        [sys.executable, "-m", "orion_ray.control_plane.agent_process", json.dumps(settings)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    st = {**settings, "pid": p.pid}
    write_private(_pidfile(), json.dumps(st))
    return st


def stop(grace_s: float = 5.0) -> bool:
    """Stop the agent if it runs (SIGTERM, then SIGKILL); its outbox stays on disk."""
    st = running()
    if st is None:
        return False
    pid = int(st["pid"])
    try:
        os.kill(pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return False
    end = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def main(argv: Optional[list[str]] = None) -> int:
    """The agent process: settings as one JSON argument, keys from ``ORION_REGION_AGENT_KEY``."""
    from .agent import RegionAgent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = json.loads((argv or sys.argv[1:])[0])
    keys = json.loads(os.environ.pop(KEY_ENV))
    agent = RegionAgent(
        region=s["region"],
        control_plane=s["control_plane"],
        region_key=keys["region_key"],
        region_url=s["region_url"],
        admin_key=keys["admin_key"],
        store_path=s["store_path"],
        state_file=orion_home() / "region-agent-outbox.json",
        labels=s.get("labels") or {},
        heartbeat_s=float(s.get("heartbeat_s", 5.0)),
        outbox_keep=int(s.get("outbox_keep", 10_000)),
        resync_terminal_s=float(s.get("resync_terminal_s", 86_400.0)),
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    agent.run_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
