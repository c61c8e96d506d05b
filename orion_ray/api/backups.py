"""``/admin/v1/backups``: take a snapshot of the live store, list snapshots (admin only).

The API replica runs on the head, next to the SQLite file, so it takes the snapshot itself (in a
thread: the event loop keeps answering), through the same code as ``orion backup``. It also adds
``orion_backup_last_success_timestamp`` / ``orion_backup_age_seconds`` to ``/metrics``, read from
the backup directory's newest snapshot name (whoever took it: the scheduled loop, the CLI, this
route).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, Request

from ..config import OrionConfig
from ..errors import NotFound, StoreUnavailable


def install_backups(app: FastAPI, admin: Callable[..., Any]) -> None:
    """Mount the routes; they answer 404 until ``app.state.backup_config`` (an ``OrionConfig``
    with ``store`` and ``backup``) is set, as ``build_api_app`` does."""
    lock = asyncio.Lock()  # one snapshot at a time per replica

    def config_of(request: Request) -> OrionConfig:
        cfg: Optional[OrionConfig] = getattr(request.app.state, "backup_config", None)
        if cfg is None:
            raise NotFound("backups are not configured on this API (no store file here)")
        return cfg

    @app.post("/admin/v1/backups", status_code=201, tags=["admin"])
    async def create_backup(request: Request, p: Any = Depends(admin)) -> dict[str, Any]:
        """Take a consistent snapshot of the store now, to the configured directory (and S3),
        then apply retention (admin)."""
        from ..backup.service import take_backup

        cfg = config_of(request)
        async with lock:
            try:
                return await asyncio.to_thread(take_backup, cfg)
            except (OSError, sqlite3.Error) as exc:
                raise StoreUnavailable(f"the backup failed: {exc}", retry_after=30) from None

    @app.get("/admin/v1/backups", tags=["admin"])
    async def list_backups(request: Request, p: Any = Depends(admin)) -> dict[str, Any]:
        """Snapshots, newest first, with the newest one's time and age (admin)."""
        from ..backup.service import list_backups as listing

        cfg = config_of(request)
        try:
            return await asyncio.to_thread(listing, cfg)
        except OSError as exc:
            raise StoreUnavailable(f"cannot list the backups: {exc}", retry_after=30) from None

    def metrics() -> str:
        cfg: Optional[OrionConfig] = getattr(app.state, "backup_config", None)
        if cfg is None:
            return ""
        from ..backup.manifest import metrics_text, name_time
        from ..backup.service import default_dir
        from ..backup.targets import LocalTarget, snapshots

        names = snapshots(LocalTarget(default_dir(cfg.orion.backup)))
        return metrics_text(name_time(names[-1]) if names else None, time.time())

    app.state.metrics_extra = metrics
