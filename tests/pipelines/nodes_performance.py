"""The node function of the pipeline performance live test: the benchmark's trivial node
(``benchmarks._pipeline_tasks.node``) that also records each run in ``$PIPELINE_RUNS_DIR/<out>``,
so the test can check that every node ran exactly once."""

from __future__ import annotations

import os
from typing import Any


def node(out: str = "out", **inputs: Any) -> dict:
    """Returns ``{out: 1 + the sum of its inputs}``, after appending a line to its runs file."""
    runs = os.environ.get("PIPELINE_RUNS_DIR")
    if runs:
        with open(os.path.join(runs, out), "a") as f:
            f.write(f"{os.getpid()}\n")
    return {out: 1 + sum(int(v) for v in inputs.values())}
