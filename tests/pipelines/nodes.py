"""Functions for the pipeline tests' nodes: the issue's three steps passing real values. The live
tests ship this module to the workers on PYTHONPATH (the operator submits for the tenant, as the
attack suite does with ``tests/security/attacks.py``).

Each function records that it ran (a line in ``$PIPELINE_RUNS_DIR/<name>``, when set), so a test
can count runs per node: nothing may run twice.
"""

from __future__ import annotations

import os
import time


def _ran(name: str, seconds: float = 0) -> None:
    runs = os.environ.get("PIPELINE_RUNS_DIR")
    if runs:
        with open(os.path.join(runs, name), "a") as f:
            f.write(f"{os.getpid()}\n")
    if seconds:
        time.sleep(float(seconds))


def fetch_data(rows: int = 3, seconds: float = 0, gate: str = "", **_params: object) -> dict:
    """A small 'dataset': its URI carries the rows so the next step can check what it got.
    ``gate``: a file to wait for before returning (a test holds the node running with it)."""
    _ran("fetch_data", seconds)
    end = time.time() + 300
    while gate and not os.path.exists(gate) and time.time() < end:
        time.sleep(0.05)
    return {"dataset_uri": f"mem://dataset?rows={rows}"}


def compute_features(dataset_uri: str, seconds: float = 0, **_params: object) -> dict:
    _ran("compute_features", seconds)
    view = os.environ.get("FEATURE_VIEW", "none")
    return {"feature_table": f"features[{view}] of {dataset_uri}"}


def train_model(
    feature_table: str, epochs: int = 1, trainer: str = "linear", seconds: float = 0, **_params: object
) -> dict:
    _ran("train_model", seconds)
    return {
        "model_uri": f"mem://model/{trainer}/{epochs}",
        "metrics_json": {"epochs": epochs, "trained_on": feature_table},
    }
