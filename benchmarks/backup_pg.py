"""backup --backend postgres: snapshot and restore time of the PostgreSQL store, and the RPO of
scheduled snapshots (the interval, by construction; measured as for SQLite).

A PostgreSQL server: ``--dsn`` (a schema of yours: the benchmark writes into it and restores over
it), else a throwaway one (Debian's package, tests/pg_server.py) on a free loopback port. The
store is prefilled with ``--prefill`` workloads (each one submission's transaction), then:

* rpo_snapshot_s: ``BackupLoop`` (the ``orion-backup`` actor's code) every ``--interval`` s while
  ``--rate`` submissions/s are acknowledged; as ``benchmarks/backup.py``.
* snapshot_s: one ``take_backup`` (pg_dump from one exported snapshot, counts, gzip, sha256) of
  the store at rest, median of 3.
* restore_s: ``restore`` of the newest (sha256, pg_restore --list, then one transaction: schema
  renamed aside, dump restored, counts checked, commit), median of 3.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from orion_ray.backup.manifest import Manifest
from orion_ray.backup.service import restore, take_backup
from orion_ray.backup.targets import LocalTarget, manifest_name, snapshots
from orion_ray.config import OrionConfig

from ._common import err


def _server() -> tuple[str, Any]:
    from tests.pg_server import PgServer, _bin_dir, unavailable_reason

    why = unavailable_reason()
    if why:
        raise SystemExit(f"no PostgreSQL server: {why}")
    server = PgServer(_bin_dir())  # type: ignore[arg-type]
    server.start()
    return server.fresh_dsn(), server


def run(a: argparse.Namespace, *, workload: Any, writer_cls: Any, snapshot_rpo: Any) -> dict[str, Any]:
    """The PostgreSQL figures (``benchmarks/backup.py`` passes its workload maker, ``Writer`` and
    ``snapshot_rpo``, shared with the SQLite run)."""
    from orion_ray.store.postgres import PostgresStore

    server: Optional[Any] = None
    dsn = a.dsn
    if not dsn:
        dsn, server = _server()
    root = Path(tempfile.mkdtemp(prefix="orion-bench-backup-pg-"))
    try:
        cfg = OrionConfig.model_validate(
            {
                "orion": {
                    "store": {"backend": "postgres", "dsn": dsn},
                    "backup": {"enabled": True, "interval": a.interval, "keep": 1000, "dir": f"{root}/bk"},
                }
            }
        )
        store = PostgresStore(dsn)
        err(f"prefilling {a.prefill} workloads …")
        for i in range(a.prefill):
            store.submit(workload(i), who="bench", max_queue_size=10**9)
        writer = writer_cls(store, a.rate, a.prefill)
        writer.start()
        err(f"snapshots every {a.interval:g}s while {a.rate:g} submissions/s are acknowledged …")
        try:
            windows = snapshot_rpo(cfg, writer, a.intervals)
        finally:
            writer.stop_flag.set()
            writer.join()
        store.close()
        snap_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            take_backup(cfg, keep=1000)
            snap_times.append(time.perf_counter() - t0)
        target = LocalTarget(str(root / "bk"))
        newest = snapshots(target)[-1]
        manifest = Manifest.from_json(target.read_text(manifest_name(newest)))
        restore_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            restore(newest, cfg, confirm=lambda _q: True)
            restore_times.append(time.perf_counter() - t0)
        return {
            "benchmark": "backup",
            "backend": "postgres",
            "rpo_snapshot_s": round(statistics.median(windows), 3) if windows else None,
            "rpo_snapshot_max_s": round(max(windows), 3) if windows else None,
            "snapshot_interval_s": a.interval,
            "snapshot_s": round(statistics.median(snap_times), 3),
            "snapshot_s_all": [round(t, 3) for t in snap_times],
            "restore_s": round(statistics.median(restore_times), 3),
            "restore_s_all": [round(t, 3) for t in restore_times],
            "workloads": manifest.tables.get("workloads"),
            "dump_bytes": manifest.db_size_bytes,
            "snapshot_bytes": manifest.size_bytes,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if server is not None:
            server.stop()
