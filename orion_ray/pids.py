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


def listening(port: int) -> set[int]:
    """The pids of processes with a listening TCP socket on ``port`` (any address, v4 or v6),
    from ``/proc``: the socket's inode in ``/proc/net/tcp*``, then whose ``fd`` points at it."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # local address "ADDR:PORT" in hex; state 0A is LISTEN
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    if not inodes:
        return set()
    wanted = {f"socket:[{i}]" for i in inodes}
    out: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    out.add(int(proc.name))
                    break
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return out


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
