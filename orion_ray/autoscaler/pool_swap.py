"""The autoscaler's pools swapped in place when a config snapshot changes them (issue 17).

The scheduler's ``autoscaler_view`` carries ``pools_config`` (``{version, pools}``, or ``None`` when
no snapshot manages pools: the region's own ``orion.yaml`` pools). ``PoolSwap.update`` returns the
pools and node types the loop runs from this step on: an added pool can grow at once, a changed one
is decided with its new bounds, and a removed one arrives retired (``max_size`` 0: no new nodes,
idle nodes released, busy ones left to finish — drained, not killed). A snapshot the loop cannot
parse (it was validated by the scheduler, so only a version skew could do that) keeps the pools
it runs, logged.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from .pool_spec import node_type_of

log = logging.getLogger("orion.autoscaler")


class PoolSwap:
    """Remembers the region's own pools and the last applied ``pools_config`` version."""

    def __init__(self, own_pools: list, own_node_types: dict[str, str], parse: Callable[[list], list]):
        self.own = (list(own_pools), dict(own_node_types))
        self.parse = parse
        self.version: Optional[int] = None  # None: running the region's own pools

    def update(
        self, pools_config: Optional[dict[str, Any]], pools: list, node_types: dict
    ) -> tuple[list, dict]:
        """The pools and node types to run now (the same objects when nothing changed)."""
        if not pools_config:
            if self.version is None:
                return pools, node_types
            self.version = None
            log.info("worker pools: back to the region's own")
            return list(self.own[0]), dict(self.own[1])
        version = int(pools_config.get("version") or 0)
        if version == self.version:
            return pools, node_types
        raw = [{k: v for k, v in p.items() if k != "retired"} for p in pools_config.get("pools") or []]
        try:
            parsed = self.parse(raw)
        except Exception:
            log.exception("worker pools of config version %s refused; keeping the running ones", version)
            self.version = version  # do not retry every step: a new version will come
            return pools, node_types
        self.version = version
        log.info("worker pools from config version %s: %s", version, [p.name for p in parsed])
        return parsed, node_type_of(raw)
