"""Durable stores for Orion's desired state."""

from .base import WorkloadStore
from .sqlite import SQLiteStore

__all__ = ["WorkloadStore", "SQLiteStore"]
