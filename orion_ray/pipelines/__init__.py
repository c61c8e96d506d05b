"""Pipelines (issue 16): DAG specs, their runs in the store, the engine and its controller."""
