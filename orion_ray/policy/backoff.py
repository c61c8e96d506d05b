"""Exponential backoff for retries and requeues."""

from __future__ import annotations


def retry_delay(attempt: int, base_s: float = 1.0, max_s: float = 300.0) -> float:
    """Seconds to wait before attempt ``attempt + 1``: base · 2^(attempt-1), capped at ``max_s``."""
    if attempt < 1:
        attempt = 1
    return float(min(max_s, base_s * (2 ** min(attempt - 1, 32))))
