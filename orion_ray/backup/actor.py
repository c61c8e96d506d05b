"""``orion-backup``: the detached actor that takes the scheduled snapshots (``backup.enabled``).

Its own actor rather than a task in the scheduler's loop: a snapshot's I/O (the page copy, gzip,
sha256, an S3 upload) never competes with the scheduling loop, and a failure in it (a full disk,
a hung upload, memory) never restarts the scheduler. It is pinned to the head, where the store
file is; Ray restarts it if it dies (``max_restarts=-1``), and the loop itself catches every
error (logged, retried sooner), so the loop never dies. The period is counted from the newest
snapshot in the directory, whoever took it (``manifest.next_due``): a restart neither resets it
nor takes a burst of snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

import ray

from ..config import OrionConfig
from ..names import NAMESPACE
from ..runtime.ray_runtime import on_head_node
from .actor_name import BACKUP_NAME
from .manifest import name_time, next_due
from .service import default_dir, take_backup
from .targets import LocalTarget, snapshots

log = logging.getLogger("orion.backup")
RETRY_S = 60.0  # after a failed snapshot, at most this long before the next try


class BackupLoop:
    """The loop itself (no Ray): ``run_once`` is one step, so a test drives it with a fake clock."""

    def __init__(self, config: OrionConfig, clock=time.time):
        self.config = config
        self.clock = clock
        self.last_success: Optional[float] = None
        self.last_error: Optional[str] = None
        self.failures = 0
        self.taken = 0

    def newest(self) -> Optional[float]:
        names = snapshots(LocalTarget(default_dir(self.config.orion.backup)))
        return name_time(names[-1]) if names else None

    def run_once(self) -> float:
        """Take a snapshot if one is due; the seconds until the next step."""
        interval = self.config.orion.backup.interval
        now = self.clock()
        due = next_due(self.newest(), interval, now)
        if due > now:
            return due - now
        try:
            take_backup(self.config, now=now)
        except Exception as exc:  # the loop never dies: logged, tried again soon
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("scheduled backup failed")
            return min(interval, RETRY_S)
        self.last_success, self.last_error = now, None
        self.taken += 1
        return max(0.0, now + interval - self.clock())  # the period counts from the start

    def status(self) -> dict[str, Any]:
        newest = self.newest()
        return {
            "interval_s": self.config.orion.backup.interval,
            "keep": self.config.orion.backup.keep,
            "last_success_timestamp": newest,
            "age_s": None if newest is None else max(0.0, self.clock() - newest),
            "taken": self.taken,
            "failures": self.failures,
            "last_error": self.last_error,
        }


class BackupActor:
    """Runs ``BackupLoop`` on the actor's event loop (each snapshot in a thread)."""

    def __init__(self, config: dict[str, Any]):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.loop = BackupLoop(OrionConfig.model_validate(config))
        self._task: Optional[asyncio.Task] = None
        ray.get_runtime_context().current_actor.ensure_started.remote()

    async def ensure_started(self) -> str:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return "ok"

    async def _run(self) -> None:
        while True:
            try:
                wait = await asyncio.to_thread(self.loop.run_once)
            except Exception:  # never: run_once catches; kept so nothing can end the loop
                log.exception("backup loop step failed")
                wait = RETRY_S
            await asyncio.sleep(max(0.05, wait))

    async def status(self) -> dict[str, Any]:
        """The loop's state: the newest snapshot's time and age, counts of snapshots and failures."""
        return self.loop.status()


def deploy_backup(config: OrionConfig):
    """Get or create the detached ``orion-backup`` actor on the head (idempotent)."""
    from ..runtime.ray_runtime import close_ray_call

    cls = close_ray_call(ray.remote(BackupActor))
    return cls.options(
        name=BACKUP_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        scheduling_strategy=on_head_node(),
    ).remote(config.model_dump(mode="json"))
