"""Processes Orion starts beside Ray (the control plane, a region's agent, Litestream, a local
redis-server), watched and stopped by their own pid — never by name."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Optional


def alive(pid: Optional[int]) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def stop(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM ``pid``, reap it if it is our child, SIGKILL it after ``grace_s``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace_s
    while time.time() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child (another `orion` command started it): poll
            if not alive(pid):
                return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
