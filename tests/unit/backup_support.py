"""Helpers the backup unit tests share: a store on a temporary file with some workloads in it."""

from __future__ import annotations

from pathlib import Path

from orion_ray.config import OrionConfig
from orion_ray.models import Workload, WorkloadSpec
from orion_ray.status import Status
from orion_ray.store import SQLiteStore


def workload(wid: str, status: Status = Status.QUEUED) -> Workload:
    spec = WorkloadSpec.model_validate(
        {"workload_type": "task", "function": "pkg.mod:fn"}, context={"stored": True}
    )
    return Workload.model_validate(
        dict(workload_id=wid, tenant_id="alice", spec=spec, status=status, submitted_at=1000.0),
        context={"stored": True},
    )


def fill(store: SQLiteStore, n: int, start: int = 0) -> list[str]:
    """``n`` workloads written as a submission writes them; their ids."""
    ids = []
    for i in range(start, start + n):
        w = workload(f"w-{i:05d}")
        store.submit(w, who="alice", max_queue_size=100_000)
        ids.append(w.workload_id)
    return ids


def config(tmp: Path, **backup) -> OrionConfig:
    """A configuration with its store and backup directory under ``tmp``."""
    return OrionConfig.model_validate(
        {
            "orion": {
                "store": {"path": str(tmp / "home" / "orion.db")},
                "backup": {"dir": str(tmp / "backups"), **backup},
            }
        }
    )
