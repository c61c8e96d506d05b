"""Node functions for the data-between-nodes tests (``test_data_live.py`` and the unit tests
through the scheduler): a value larger than the inline cap, its consumer, and table rows for a
``sql`` node."""

from __future__ import annotations


def big_values(n: int = 5000) -> dict:
    """``values``: ``0..n-1`` (5,000 numbers are ~24 KB of JSON, over the 16 KiB inline cap)."""
    return {"values": list(range(n))}


def total(values: list, **_params: object) -> dict:
    """The consumer: gets the list itself (a value, not a URI)."""
    assert isinstance(values, list), f"expected the list itself, got {type(values).__name__}"
    return {"total": sum(values), "count": len(values)}


def orders(n: int = 30) -> dict:
    """``orders``: records for a ``sql`` node, three regions."""
    return {"orders": [{"region": f"r{i % 3}", "amount": i} for i in range(n)]}


def poser() -> dict:
    """A function whose output poses as Orion's artifact reference (refused)."""
    return {"values": {"$orion_artifact": "file:///etc/passwd"}}
