"""A response cache for deterministic requests (temperature 0): TTL, a size bound, LRU eviction.

Keyed by model, version and a hash of the request, so a new version never answers from an old
one's entries. The clock is passed in, so tests need no sleeping.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from typing import Any, Callable, Optional


def request_key(model_id: str, version: str, body: dict[str, Any]) -> Optional[str]:
    """The cache key of a request, or None when its answer is not deterministic."""
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
    return f"{model_id}\x00{version}\x00" + hashlib.sha256(canon.encode()).hexdigest()


class ResponseCache:
    """LRU with a time to live; ``max_entries`` 0 turns it off."""

    def __init__(
        self, max_entries: int = 1024, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Optional[str]) -> Any:
        """The cached answer, or None (expired entries are dropped on the way)."""
        if key is None or self.max_entries <= 0:
            return None
        item = self._data.get(key)
        if item is None or self._clock() - item[0] > self.ttl_s:
            if item is not None:
                del self._data[key]
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: Optional[str], value: Any) -> None:
        if key is None or self.max_entries <= 0:
            return
        self._data[key] = (self._clock(), value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
