"""Node functions for the operations tests (tests/unit/test_pipeline_operations_api.py and
tests/pipelines/test_operations_live.py): a three-node chain whose middle node fails until a
file it checks exists, so a test can fix the cause and retry the run from that node. Each records
that it ran (``nodes._ran``) and prints a line, so its logs can be read back."""

from __future__ import annotations

import os

from .nodes import _ran


def extract(rows: int = 3, **_params: object) -> dict:
    _ran("extract")
    print(f"extract: {rows} rows")
    return {"table": f"mem://table?rows={rows}"}


def validate(table: str, gate: str = "", **_params: object) -> dict:
    """Fails (a user failure: the node's own error) while ``gate`` does not exist."""
    _ran("validate")
    print(f"validate: checking {table} against {gate}")
    if gate and not os.path.exists(gate):
        raise RuntimeError(f"the gate file {gate} is missing")
    return {"checked": f"{table}#ok"}


def publish(checked: str, **_params: object) -> dict:
    _ran("publish")
    print(f"publish: {checked}")
    return {"report": f"published {checked}"}
