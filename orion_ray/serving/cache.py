"""A response cache for deterministic requests (temperature 0): TTL, a bound in bytes, LRU eviction.

Keyed by model, version and a hash of the request, so a new version never answers from an old
one's entries. The clock is passed in, so tests need no sleeping.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from typing import Any, Callable, Optional


def input_hash(body: dict[str, Any]) -> Optional[str]:
    """A hash of a request's body, or None when its answer is not deterministic (sampling at a
    temperature above 0, several choices, or a stream)."""
    if body.get("stream") or float(body.get("temperature", 1.0) or 0.0) != 0.0:
        return None
    if int(body.get("n", 1) or 1) != 1:
        return None
    canon = json.dumps(
        {k: v for k, v in body.items() if k not in ("stream", "user")},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canon.encode()).hexdigest()


def request_key(model_id: str, version: str, body: dict[str, Any]) -> Optional[str]:
    """The cache key of a request, or None when its answer is not deterministic."""
    h = input_hash(body)
    return None if h is None else f"{model_id}\x00{version}\x00{h}"


def size_of(value: Any) -> int:
    """Bytes an answer is counted for: the length of its compact JSON (what the cache holds
    is the parsed answer; its JSON length is a stable, cheap measure of it)."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


class ResponseCache:
    """LRU bounded in bytes (``max_bytes``) and optionally in entries, with a time to live.
    ``max_bytes`` or ``max_entries`` 0 turns it off. ``on_event(kind, n)`` hears ``hit``,
    ``miss``, ``eviction`` (expired or pushed out) and ``bytes`` (the new total) for metrics."""

    def __init__(
        self,
        max_entries: Optional[int] = None,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int = 64 * 10**6,
        on_event: Optional[Callable[[str, int], None]] = None,
    ):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._on_event = on_event
        self._data: OrderedDict[str, tuple[float, Any, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and (self.max_entries is None or self.max_entries > 0)

    def _event(self, kind: str, n: int = 1) -> None:
        if self._on_event is not None:
            self._on_event(kind, n)

    def _drop(self, key: str) -> None:
        _, _, size = self._data.pop(key)
        self.bytes -= size
        self.evictions += 1
        self._event("eviction")

    def get(self, key: Optional[str]) -> Any:
        """The cached answer, or None (an expired entry is dropped on the way)."""
        if key is None or not self.enabled:
            return None
        item = self._data.get(key)
        if item is not None and self._clock() - item[0] > self.ttl_s:
            self._drop(key)
            self._event("bytes", self.bytes)
            item = None
        if item is None:
            self.misses += 1
            self._event("miss")
            return None
        self._data.move_to_end(key)
        self.hits += 1
        self._event("hit")
        return item[1]

    def put(self, key: Optional[str], value: Any, size: Optional[int] = None) -> None:
        """Keep an answer (``size`` in bytes, default its JSON length); one larger than the
        whole cache is not kept; older entries are evicted least recently used first."""
        if key is None or not self.enabled:
            return
        size = size_of(value) if size is None else size
        if key in self._data:
            self.bytes -= self._data.pop(key)[2]
        if size > self.max_bytes:
            self._event("bytes", self.bytes)
            return
        self._data[key] = (self._clock(), value, size)
        self.bytes += size
        while self.bytes > self.max_bytes or (
            self.max_entries is not None and len(self._data) > self.max_entries
        ):
            self._drop(next(iter(self._data)))
        self._event("bytes", self.bytes)

    def __len__(self) -> int:
        return len(self._data)
