"""What the HA test and ``benchmarks/ha.py`` both do to a live Orion: submit, wait, find and kill the
head's processes by their own pids, and time how long until Orion schedules again."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import httpx

from orion_ray.gcs_supervisor import GCS_NAME, find_process

# Orion's actors on the head, by the names their processes show (/proc/<pid>/comm is cut at 15
# characters). The executor is not among them: it owns the task runs (see docs/high-availability.md).
ORION_ACTORS = ("ray::SchedulerA", "ray::Autoscaler")
PROBE = {"workload_type": "task", "function": "math:factorial", "args": [3], "resources": {"cpu": 0.1}}


class Orion:
    """An HTTP client of one Orion with the admin key."""

    def __init__(self, url: str, key: str):
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def submit(self, body: dict[str, Any]) -> str:
        r = self.http.post("/api/v1/workloads", json=body)
        assert r.status_code == 202, r.text
        return r.json()["workload_id"]

    def get(self, wid: str) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/workloads/{wid}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, wid: str, statuses: Iterable[str], timeout_s: float) -> dict[str, Any]:
        want, deadline, last = set(statuses), time.time() + timeout_s, None
        while time.time() < deadline:
            try:
                last = self.get(wid)
                if last["status"] in want:
                    return last
            except (httpx.HTTPError, AssertionError):
                pass  # the API may answer 503 while the scheduler restarts
            time.sleep(0.1)
        raise AssertionError(f"{wid} not in {want} within {timeout_s:g}s: {last}")

    def schedules_again(self, since: float, timeout_s: float = 120.0) -> float:
        """Seconds from ``since`` until a new workload is accepted and runs (the RTO)."""
        deadline, wid = time.time() + timeout_s, None
        while wid is None:
            try:
                wid = self.submit(PROBE)
            except (httpx.HTTPError, AssertionError):
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.wait(wid, ("running", "completed"), max(1.0, deadline - time.time()))
        return time.time() - since


def kill(root: int, name: str, *, wait_s: float = 10.0) -> int:
    """SIGKILL the head process named ``name`` below ``root`` by its pid; return that pid."""
    pid = find_process(root, name)
    assert pid is not None, f"no {name} process below {root}"
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + wait_s
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z" and time.time() < deadline:
        time.sleep(0.05)
    return pid


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def restarted(root: int, name: str, old: int, timeout_s: float = 30.0) -> int:
    """The pid of the new ``name`` process below ``root`` (not ``old``)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        pid = find_process(root, name)
        if pid is not None and pid != old:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"{name} was not restarted within {timeout_s:g}s")


def kill_gcs(root: int) -> int:
    """SIGKILL the head's ``gcs_server``; its pid."""
    return kill(root, GCS_NAME)


def kill_orion_actors(root: int) -> list[int]:
    """SIGKILL the processes of Orion's scheduler and autoscaler actors on the head."""
    return [kill(root, name) for name in ORION_ACTORS]


def lease_token(home: Path) -> Optional[int]:
    """The scheduler's fencing token in the store."""
    db = sqlite3.connect(f"file:{home / 'orion.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT token FROM leases WHERE name='scheduler'").fetchone()
    finally:
        db.close()
    return None if row is None else int(row[0])


def runs(home: Path, wid: str) -> int:
    """How many times ``wid`` entered ``running`` (from the store's transitions)."""
    db = sqlite3.connect(f"file:{home / 'orion.db'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(
            "SELECT COUNT(*) FROM transitions WHERE workload_id=? AND status='running'", (wid,)
        ).fetchone()[0]
    finally:
        db.close()
