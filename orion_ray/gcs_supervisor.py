"""``python -m orion_ray.gcs_supervisor -- ray start --head …``: a local head whose GCS is restarted.

Ray does not restart a local head's GCS: ``ray start --block`` watches its children and, when one
exits with an unexpected code (a killed ``gcs_server``), kills every other process of the head and
exits; without ``--block`` nothing watches them at all. With GCS fault tolerance (Redis or RocksDB)
a restarted GCS recovers the cluster's tables, and the raylets and workers reconnect to it, so what
is missing is a process that starts it again. This is that process, used by ``orion up`` when
``orion.ha.gcs_ft`` is set:

1. it makes itself the "child subreaper" of what it starts (``PR_SET_CHILD_SUBREAPER``), so the
   head's processes stay its descendants once ``ray start`` (without ``--block``) has returned,
   and ``orion down`` stops them all by walking this process's tree, as it does for a plain head;
2. it runs ``ray start --head`` and waits for it;
3. it notes the ``gcs_server``'s command line, environment and working directory, and whenever
   that process ends, it starts the same command again (same port, same session, same storage).

On SIGTERM it stops restarting and exits (``orion down`` signals it first, then the head).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

log = logging.getLogger("orion.gcs_supervisor")
PR_SET_CHILD_SUBREAPER = 36
GCS_NAME = "gcs_server"


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); False where the call is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


def process_name(pid: int) -> str:
    """The process's command name (``/proc/<pid>/comm``), '' when it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def find_process(root: int, name: str) -> Optional[int]:
    """The first of ``root``'s descendants whose command name starts with ``name`` (None: none)."""
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        for child in children_of(pid):
            if child in seen:
                continue
            seen.add(child)
            if process_name(child).startswith(name):
                return child
            todo.append(child)
    return None


def find_gcs(root: int) -> Optional[int]:
    """The ``gcs_server`` among ``root``'s descendants (None if there is none)."""
    return find_process(root, GCS_NAME)


class GcsCommand:
    """How the running GCS was started: what a restart repeats."""

    def __init__(self, pid: int):
        self.argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        self.env = dict(e.decode(errors="replace").split("=", 1) for e in raw if b"=" in e)
        self.cwd = os.readlink(f"/proc/{pid}/cwd")

    def start(self) -> int:
        """Start the GCS again; its pid. Its logs go where its flags say (``--stdout_filepath``…)."""
        proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc.pid


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _reap() -> None:
    """Collect every ended child (adopted orphans included), so none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_descendants(root: int) -> None:
    """SIGKILL every process below ``root`` (a failed start's leftovers), then reap them."""
    todo, found = [root], []
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.1)
    _reap()


def supervise(ray_start: list[str], interval_s: float) -> int:
    """Run ``ray_start`` (a ``ray start --head`` without ``--block``), then keep its GCS running."""
    stopping = False

    def stop(_sig, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not become_subreaper():
        log.warning("not a subreaper: `orion down` may miss the head's processes")
    rc = subprocess.call(ray_start, stdin=subprocess.DEVNULL)
    if rc != 0:
        log.error("`ray start` exited with %s", rc)
        _kill_descendants(os.getpid())  # what it left (adopted by this subreaper) goes with it
        return rc
    me = os.getpid()
    gcs = find_gcs(me)
    if gcs is None:
        log.error("no %s among the head's processes", GCS_NAME)
        return 1
    command = GcsCommand(gcs)
    log.info("supervising %s (pid %d)", GCS_NAME, gcs)
    restarts = 0
    while not stopping:
        _reap()
        if not _alive(gcs):
            if stopping:
                break
            restarts += 1
            gcs = command.start()
            log.warning("%s ended; restarted it as pid %d (restart %d)", GCS_NAME, gcs, restarts)
        time.sleep(interval_s)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Parse ``--interval S -- <ray start command>`` and supervise."""
    parser = argparse.ArgumentParser(prog="orion_ray.gcs_supervisor")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("the `ray start --head` command is missing")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return supervise(command, args.interval)


if __name__ == "__main__":
    sys.exit(main())
