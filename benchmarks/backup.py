"""backup: the RPO of scheduled snapshots and of the Litestream replica, and the restore time.

No Ray: the store is the point. A submission is acknowledged when ``SQLiteStore.submit`` returned
(its one transaction committed), exactly as the API acknowledges a 202. A writer thread submits
``--rate`` workloads a second into a store prefilled with ``--prefill`` workloads.

* rpo_snapshot_s: the scheduled loop (``BackupLoop``, the ``orion-backup`` actor's code) takes a
  snapshot every ``--interval`` s. For each interval, a head loss just before the next snapshot
  loses every acknowledged workload that is not in the last one (seq above its manifest's
  ``max_seq``): the window is the newest such ack minus the oldest; median over the intervals
  (it is the interval, by construction: this measures that nothing else adds to it).
* rpo_replica_s: Litestream replicates the same store (``--sync-interval``); for ``--samples``
  acknowledged submissions, the time from the ack to the first ``litestream restore`` (started
  after the ack) whose database holds it; median (and max). An upper bound: the probe restores
  back to back, so it adds up to one restore's duration.
* snapshot_s: one snapshot of the store (copy, count, gzip, sha256), median of 3.
* restore_s: ``orion restore`` of the newest snapshot (verify: sha256, integrity_check, schema,
  row counts; then the swap), and the replica's restore, median of 3 each.

``--backend postgres`` (``benchmarks/backup_pg.py``): snapshot and restore time and the snapshots'
RPO of the PostgreSQL store (no replica: PostgreSQL has its own replication).

Last stdout line: ``{"benchmark": "backup", "rpo_snapshot_s", "rpo_replica_s", "restore_s", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from orion_ray.backup.actor import BackupLoop
from orion_ray.backup.manifest import Manifest
from orion_ray.backup.replica import litestream_bin, restore_from_replica, start, stop, write_config
from orion_ray.backup.service import restore, take_backup
from orion_ray.backup.targets import LocalTarget, manifest_name, snapshots
from orion_ray.config import OrionConfig
from orion_ray.models import Workload, WorkloadSpec
from orion_ray.store import SQLiteStore

from ._common import err


def _workload(i: int) -> Workload:
    spec = WorkloadSpec.model_validate(
        {"workload_type": "task", "function": "math:factorial", "args": [i % 20]}
    )
    return Workload.model_validate(
        dict(
            workload_id=f"bench-{i:08d}",
            tenant_id="bench",
            spec=spec,
            status="queued",
            submitted_at=time.time(),
        )
    )


class Writer(threading.Thread):
    """Submits ``rate`` a second; ``acks[seq] = time the submit returned``."""

    def __init__(self, store: SQLiteStore, rate: float, start_at: int):
        super().__init__(daemon=True)
        self.store, self.rate, self.i = store, rate, start_at
        self.acks: dict[int, float] = {}
        self.stop_flag = threading.Event()

    def submit_one(self) -> tuple[int, float]:
        w = _workload(self.i)
        self.i += 1
        self.store.submit(w, who="bench", max_queue_size=10**9)
        at = time.time()
        self.acks[w.seq] = at
        return w.seq, at

    def run(self) -> None:
        period = 1.0 / self.rate
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            self.submit_one()
            time.sleep(max(0.0, period - (time.monotonic() - t0)))


def _max_seq(db: Path) -> int:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(c.execute("SELECT COALESCE(MAX(seq), 0) FROM workloads").fetchone()[0])
    finally:
        c.close()


def snapshot_rpo(cfg: OrionConfig, writer: Writer, intervals: int) -> list[float]:
    loop = BackupLoop(cfg)
    target = LocalTarget(cfg.orion.backup.dir or "")
    windows: list[float] = []
    last_max: int | None = None
    for _ in range(intervals + 1):
        wait = loop.run_once()  # takes one now (due), returns the interval
        name = snapshots(target)[-1]
        m = Manifest.from_json(target.read_text(manifest_name(name)))
        if last_max is not None:
            # just before this snapshot: acknowledged but only in the previous one's future
            lost = [at for seq, at in writer.acks.items() if last_max < seq <= m.max_seq]
            if lost:
                windows.append(max(lost) - min(lost))
        last_max = m.max_seq
        time.sleep(wait)
    return windows


def replica_rpo(cfg: OrionConfig, writer: Writer, samples: int, scratch: Path) -> list[float]:
    cfg_path = write_config(cfg)
    out: list[float] = []
    for k in range(samples):
        seq, acked = writer.submit_one()
        while True:
            t0 = time.time()
            tmp = scratch / f"probe-{k}.db"
            p = subprocess.run(
                [
                    litestream_bin(),
                    "restore",
                    "-config",
                    str(cfg_path),
                    "-o",
                    str(tmp),
                    cfg.orion.store.resolved_path(),
                ],
                capture_output=True,
                text=True,
            )
            found = p.returncode == 0 and tmp.exists() and _max_seq(tmp) >= seq
            for side in ("", "-wal", "-shm"):
                Path(f"{tmp}{side}").unlink(missing_ok=True)
            if found:
                out.append(max(0.0, t0 - acked))
                break
            if time.time() - acked > 120:
                raise RuntimeError(f"seq {seq} not in the replica after 120 s: {p.stderr[-300:]}")
        time.sleep(0.37)  # samples spread over the sync interval's phase
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefill", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--interval", type=float, default=5.0, help="snapshot interval (s)")
    p.add_argument("--intervals", type=int, default=4)
    p.add_argument("--sync-interval", type=float, default=1.0)
    p.add_argument("--samples", type=int, default=15)
    p.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--dsn", help="postgres: a schema to use (default: a throwaway server)")
    a = p.parse_args()
    if a.backend == "postgres":  # snapshot and restore time, RPO of snapshots (benchmarks/backup_pg.py)
        from .backup_pg import run

        print(json.dumps(run(a, workload=_workload, writer_cls=Writer, snapshot_rpo=snapshot_rpo)))
        return
    root = Path(tempfile.mkdtemp(prefix="orion-bench-backup-"))
    os.environ["ORION_HOME"] = str(root / "home")
    cfg = OrionConfig.model_validate(
        {
            "orion": {
                "store": {"path": str(root / "home" / "orion.db")},
                "backup": {
                    "enabled": True,
                    "interval": a.interval,
                    "keep": 1000,
                    "dir": str(root / "backups"),
                    "replica": {
                        "enabled": True,
                        "url": f"file://{root}/replica",
                        "sync_interval": a.sync_interval,
                    },
                },
            }
        }
    )
    store = SQLiteStore(cfg.orion.store.resolved_path())
    err(f"prefilling {a.prefill} workloads …")
    for i in range(a.prefill):
        store.submit(_workload(i), who="bench", max_queue_size=10**9)
    writer = Writer(store, a.rate, a.prefill)
    pid = start(cfg)
    try:
        writer.start()
        err(f"snapshots every {a.interval:g}s while {a.rate:g} submissions/s are acknowledged …")
        windows = snapshot_rpo(cfg, writer, a.intervals)
        writer.stop_flag.set()
        writer.join()
        err(f"replica: {a.samples} acknowledged submissions, each until a restore has it …")
        rep = replica_rpo(cfg, writer, a.samples, root)
    finally:
        stop(pid)
    store.close()
    snap_times = []
    for _ in range(3):  # the store at rest, as big as it got: one snapshot's wall time
        t0 = time.perf_counter()
        take_backup(cfg, keep=1000)
        snap_times.append(time.perf_counter() - t0)
    newest = snapshots(LocalTarget(str(root / "backups")))[-1]
    manifest = Manifest.from_json(LocalTarget(str(root / "backups")).read_text(manifest_name(newest)))
    restore_times, replica_times = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        restore(newest, cfg, confirm=lambda _q: True)
        restore_times.append(time.perf_counter() - t0)
    for _ in range(3):
        t0 = time.perf_counter()
        restore_from_replica(cfg, confirm=lambda _q: True)
        replica_times.append(time.perf_counter() - t0)
    shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "backup",
        "rpo_snapshot_s": round(statistics.median(windows), 3),
        "rpo_snapshot_max_s": round(max(windows), 3),
        "snapshot_interval_s": a.interval,
        "rpo_replica_s": round(statistics.median(rep), 3),
        "rpo_replica_max_s": round(max(rep), 3),
        "replica_sync_interval_s": a.sync_interval,
        "snapshot_s": round(statistics.median(snap_times), 3),
        "restore_s": round(statistics.median(restore_times), 3),
        "restore_replica_s": round(statistics.median(replica_times), 3),
        "workloads": manifest.tables.get("workloads"),
        "db_bytes": manifest.db_size_bytes,
        "snapshot_bytes": manifest.size_bytes,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
