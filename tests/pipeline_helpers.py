"""Functions for the pipeline tests' nodes: the issue's three steps passing real values (the
workers import this module; the live tests allow it for their tenant, as ``tests/security/attacks.py``
is allowed)."""

from __future__ import annotations

import os


def fetch_data(rows: int = 3, **_params: object) -> dict:
    """A small 'dataset': its URI carries the rows so the next step can check what it got."""
    return {"dataset_uri": f"mem://dataset?rows={rows}"}


def compute_features(dataset_uri: str, **_params: object) -> dict:
    view = os.environ.get("FEATURE_VIEW", "none")
    return {"feature_table": f"features[{view}] of {dataset_uri}"}


def train_model(feature_table: str, epochs: int = 1, trainer: str = "linear", **_params: object) -> dict:
    return {
        "model_uri": f"mem://model/{trainer}/{epochs}",
        "metrics_json": {"epochs": epochs, "trained_on": feature_table},
    }
