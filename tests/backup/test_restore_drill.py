"""The restore drill: a live Orion with done, running and queued work takes a snapshot, loses its
head (every process killed by pid) and its store, is restored from the snapshot and started again:
every acknowledged workload is back with its status, nothing ran twice, and a corrupted snapshot
is refused with the reason."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from orion_ray.cluster import _descendants
from tests.live_orion import BIN

pytestmark = pytest.mark.e2e


def orion(live, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "orion"), *args], env=live.env, capture_output=True, text=True, timeout=timeout
    )


def wait_status(c, wid: str, wanted: tuple[str, ...], within_s: float = 120) -> dict:
    """Poll until the workload is in one of ``wanted`` (a bound on waiting, not a timing test)."""
    end = time.monotonic() + within_s
    while True:
        r = c.get(f"/api/v1/workloads/{wid}")
        if r.status_code == 200 and r.json()["status"] in wanted:
            return r.json()
        if time.monotonic() > end:
            raise AssertionError(f"{wid}: {r.status_code} {r.text[:300]}, wanted {wanted}")
        time.sleep(0.3)


def runs(store: Path, wid: str) -> int:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT COUNT(*) FROM transitions WHERE workload_id=? AND status='running'", (wid,)
        ).fetchone()[0]
    finally:
        db.close()


def kill_everything(home: Path) -> None:
    """A head loss: the Ray head and every process below it, and the replica, SIGKILLed by pid."""
    state = json.loads((home / "cluster.json").read_text())
    pids = {state["pid"], *_descendants(state["pid"])}
    if state.get("litestream_pid"):
        pids.add(state["litestream_pid"])
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 30
    while time.monotonic() < end and any(Path(f"/proc/{p}").exists() for p in pids):
        for p in pids:  # reap our own child, if any (the head is `orion up`'s, not ours)
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.2)


def test_restore_drill(live):
    store = live.home / "orion.db"
    with live.client("alice") as alice, live.client("admin") as admin:
        done = alice.post(
            "/api/v1/workloads", json={"workload_type": "task", "function": "math:factorial", "args": [5]}
        )
        assert done.status_code == 202, done.text
        done_id = done.json()["workload_id"]
        wait_status(alice, done_id, ("completed",))
        running_id = alice.post(
            "/api/v1/workloads",
            json={
                "workload_type": "task",
                "function": "time:sleep",
                "args": [600],
                "resources": {"cpu": 0.5},
            },
        ).json()["workload_id"]
        wait_status(alice, running_id, ("running",))
        queued_id = alice.post(
            "/api/v1/workloads",
            json={
                "workload_type": "task",
                "function": "math:factorial",
                "args": [3],
                "resources": {"cpu": 0.1, "custom": {"later": 1}},
            },
        ).json()["workload_id"]
        wait_status(alice, queued_id, ("queued",))

        # the scheduled loop took its first snapshot when it started (none existed)
        listed = admin.get("/admin/v1/backups").json()
        assert listed["items"] and listed["last_success_timestamp"] is not None, listed
        assert "orion_backup_age_seconds" in admin.get("/metrics").text
        # an online snapshot through the admin route, while Orion runs
        snap = admin.post("/admin/v1/backups")
        assert snap.status_code == 201, snap.text
        name = snap.json()["name"]
        assert snap.json()["workloads"] == 3

    # the CLI reads the store file directly while Orion runs; a restore is refused meanwhile
    cli = orion(live, "backup", "-o", "json")
    assert cli.returncode == 0, cli.stderr
    refused = orion(live, "restore", name, "--yes")
    assert refused.returncode == 2 and "orion down" in refused.stderr, refused.stderr

    kill_everything(live.home)
    for side in ("", "-wal", "-shm"):
        Path(f"{store}{side}").unlink(missing_ok=True)

    # a corrupted copy of the snapshot is refused, with the reason, and nothing is swapped in
    bad = live.home / "bad"
    bad.mkdir()
    for suffix in (".db.gz", ".manifest.json"):
        (bad / f"{name}{suffix}").write_bytes((live.home / "backups" / f"{name}{suffix}").read_bytes())
    raw = bytearray((bad / f"{name}.db.gz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (bad / f"{name}.db.gz").write_bytes(bytes(raw))
    corrupt = orion(live, "restore", str(bad / f"{name}.db.gz"), "--yes")
    assert corrupt.returncode == 2 and "sha256 mismatch" in corrupt.stderr, corrupt.stderr
    assert not store.exists()

    restored = orion(live, "restore", name, "--yes", "-o", "json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["workloads"] == 3

    cmd = ["up", "--config", str(live.home / "orion.yaml"), "--num-cpus", "2", "--num-gpus", "2"]
    cmd += ["--port", str(live.ports["api"]), "--ray-port", str(live.ports["ray"])]
    cmd += ["--dashboard-port", str(live.ports["dashboard"])]
    up = orion(live, *cmd)
    assert up.returncode == 0, up.stdout + up.stderr

    with live.client("alice") as alice:
        w = wait_status(alice, done_id, ("completed",), 10)
        assert w["result"] == 120 and w["attempt"] == 1
        # the run died with the head: recovery requeues it as a new attempt and runs it again
        w = wait_status(alice, running_id, ("running",))
        assert w["attempt"] == 2
        w = wait_status(alice, queued_id, ("queued",), 10)
    assert runs(store, done_id) == 1  # nothing ran twice
    assert runs(store, queued_id) == 0
