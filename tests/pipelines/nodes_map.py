"""Functions for the map (fan-out) tests' nodes: an upstream list, a per-item step, a fan-in.
Shipped to the workers on PYTHONPATH as ``nodes.py`` is; each per-item call records that it ran
(a line in ``$PIPELINE_RUNS_DIR/square-<item>``), so a test can count runs per item."""

from __future__ import annotations

from tests.pipelines.nodes import _ran


def shards(n: int = 20, **_params: object) -> dict:
    """The list a map fans out over."""
    _ran("shards")
    return {"shards": list(range(int(n)))}


def square(item: int, offset: int = 0, fail: list | None = None, **_params: object) -> dict:
    """One item: its square (plus ``offset``, an upstream value passed whole); the items in
    ``fail`` raise."""
    _ran(f"square-{item}")
    if fail and item in fail:
        raise RuntimeError(f"item {item} fails on purpose")
    return {"value": item * item + offset}


def total(value: list, **_params: object) -> dict:
    """The fan-in: the sum of the items' values (an item that did not succeed is None)."""
    _ran("total")
    return {"sum": sum(v for v in value if v is not None), "missing": value.count(None)}
