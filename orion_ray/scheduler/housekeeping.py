"""The loop's store housekeeping: the database file checked every tick, retention applied
periodically in small batches.

A database file deleted or replaced under the open connection is noticed at the next tick (a
``stat``), logged once and reported by ``/health`` until it is back; every commit checks it too,
so nothing is acknowledged meanwhile. Retention runs every ``store.retention.interval_s``; while
a kind still has a full batch to delete, it runs again at the next tick, so a backlog drains in
short transactions between cycles rather than one long write.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from ..config import RetentionConfig
from ..errors import StoreUnavailable
from .every import Every

log = logging.getLogger("orion.scheduler")

DAY_S = 86_400.0


class Housekeeping:
    """Store checks and retention for one scheduler (``store`` may lack either: test stores)."""

    def __init__(self, store: Any, clock: Callable[[], float], retention: Optional[RetentionConfig] = None):
        self.store = store
        self.clock = clock
        self.retention = retention or RetentionConfig()
        self.every = Every(self.retention.interval_s, clock)
        self.more = False  # the last run deleted a full batch of some kind
        self.fault: Optional[str] = None  # why the store's file is not the one opened
        self.pruned: dict[str, int] = {}  # rows deleted so far, per kind

    def keep_s(self) -> dict[str, float]:
        """Each kind's window in seconds (0: kept for ever)."""
        r = self.retention
        return {
            "workloads": r.workloads_days * DAY_S,
            "logs": r.logs_days * DAY_S,
            "audit": r.audit_days * DAY_S,
            "scaling_events": r.scaling_events_days * DAY_S,
            "pipeline_runs": r.pipeline_runs_days * DAY_S,
        }

    def check_file(self) -> Optional[str]:
        """Compare the database file with the one the store opened; the problem, or None."""
        check = getattr(self.store, "check_file", None)
        if check is None:
            return None
        try:
            check()
        except StoreUnavailable as exc:
            if self.fault is None:
                log.error("store unavailable: %s", exc.message)
            self.fault = exc.message
            return self.fault
        if self.fault is not None:
            log.warning("store file is back: %s", getattr(self.store, "path", ""))
        self.fault = None
        return None

    def tick(self) -> None:
        """Once per loop tick: check the file; apply retention when it is due."""
        if self.check_file() is not None:
            return
        prune = getattr(self.store, "prune", None)
        if prune is None or not self.every.due(force=self.more):
            return
        limit = self.retention.batch
        done = prune(now=self.clock(), keep_s=self.keep_s(), limit=limit)
        for kind, n in done.items():
            self.pruned[kind] = self.pruned.get(kind, 0) + n
        self.more = any(n >= limit for n in done.values())
