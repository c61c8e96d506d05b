"""Response caches as configured: one ``ResponseCache`` per deployment (model version), sized and
timed by the deployment's ``caching`` block or, without one, the cluster's
``orion.serving.caching`` (the manager writes the effective block into the routing table).

Self-contained (get/put by key, config in), so whichever process takes a model's first hop can
hold one. Keys follow the block's first ``cache_key_patterns`` entry; entries of different
versions never meet (each version has its own cache).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from ..serving_options import Caching, render_key
from .cache import ResponseCache, input_hash


class ModelCaches:
    """``metrics``: an ``OrionMetrics`` (its ``serving_cache``), or None."""

    def __init__(
        self,
        default: Optional[Caching] = None,
        *,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.default = default or Caching()
        self.metrics = metrics
        self.clock = clock
        self._caches: dict[tuple[str, str], tuple[Caching, ResponseCache]] = {}
        self._parsed: dict[int, tuple[dict, Caching]] = {}

    # -- configuration -------------------------------------------------------------------------
    def config(self, entry: dict, version: str) -> Caching:
        """The caching block of a routing-table entry's version (parsed once per table)."""
        raw = (entry.get("caching") or {}).get(version)
        if raw is None:
            return self.default
        hit = self._parsed.get(id(raw))
        if hit is None or hit[0] is not raw:
            if len(self._parsed) > 256:  # blocks of old tables
                self._parsed.clear()
            hit = self._parsed[id(raw)] = (raw, Caching.model_validate(raw))
        return hit[1]

    def cache(self, model_id: str, version: str, cfg: Caching) -> ResponseCache:
        """The version's cache, made anew (empty) when its block changed."""
        held = self._caches.get((model_id, version))
        if held is not None and held[0] == cfg:
            return held[1]
        if held is not None:
            self._report(model_id, version, "bytes", 0)
        cache = ResponseCache(
            None,
            cfg.ttl,
            self.clock,
            max_bytes=cfg.max_size if cfg.enabled else 0,
            on_event=lambda kind, n: self._report(model_id, version, kind, n),
        )
        self._caches[(model_id, version)] = (cfg, cache)
        return cache

    def _report(self, model_id: str, version: str, kind: str, n: int) -> None:
        if self.metrics is not None:
            self.metrics.serving_cache(model_id, version, kind, n)

    # -- requests ------------------------------------------------------------------------------
    @staticmethod
    def key(
        cfg: Caching, *, kind: str, body: dict, model_id: str, version: str, tenant: Optional[str]
    ) -> Optional[str]:
        """A request's key by the block's first pattern, or None (caching off, or an answer
        that is not deterministic)."""
        if not cfg.enabled:
            return None
        h = input_hash(body)
        if h is None:
            return None
        values = {
            "model_id": model_id,
            "version": version,
            "input_hash": h,
            "tenant_id": tenant or "",
            "endpoint": "chat" if kind == "chat" else "completions",
        }
        return render_key(cfg.cache_key_patterns[0], values)

    def lookup(
        self, entry: dict, *, kind: str, body: dict, model_id: str, version: str, tenant: Optional[str]
    ) -> tuple[Optional[ResponseCache], Optional[str], Any]:
        """``(cache, key, cached answer or None)`` for one request."""
        cfg = self.config(entry, version)
        key = self.key(cfg, kind=kind, body=body, model_id=model_id, version=version, tenant=tenant)
        if key is None:
            return None, None, None
        cache = self.cache(model_id, version, cfg)
        return cache, key, cache.get(key)

    @property
    def hits(self) -> int:
        return sum(c.hits for _, c in self._caches.values())

    @property
    def misses(self) -> int:
        return sum(c.misses for _, c in self._caches.values())
