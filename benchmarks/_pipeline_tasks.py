"""Node functions of the ``pipelines`` benchmark (importable on Ray workers as
``benchmarks._pipeline_tasks``). The same functions run as Orion pipeline nodes and as plain Ray
tasks, so both sides do exactly the same work."""

from __future__ import annotations

import os
from typing import Any


def node(out: str = "out", **inputs: Any) -> dict:
    """A trivial DAG node: returns ``{out: 1 + the sum of its inputs}`` (a small int; a node with
    no inputs returns 1), so every value depends on the values it was passed. An input is the
    upstream value (Orion passes the named output) or the upstream node's whole result dict
    (plain Ray passes the upstream task's ``ObjectRef``, resolved to that dict)."""
    return {out: 1 + sum(_num(v) for v in inputs.values())}


def _num(v: Any) -> int:
    return sum(int(x) for x in v.values()) if isinstance(v, dict) else int(v)


def item(item: Any = 0, **_params: Any) -> dict:
    """A trivial map item: returns ``{"value": item}``."""
    return {"value": item}


def marked_node(out: str = "out", marker_dir: str = "", **inputs: Any) -> dict:
    """``node``, appending one line to ``<marker_dir>/<out>`` first: the line count tells how many
    times the node really ran (the SIGKILL run counts lost and doubled nodes by it)."""
    if marker_dir:
        with open(os.path.join(marker_dir, out), "a") as f:
            f.write(f"{os.getpid()}\n")
    return node(out, **inputs)
