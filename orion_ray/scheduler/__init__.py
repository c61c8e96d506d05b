"""The scheduler: the cycle (``core``), start-up reconciliation (``recovery``) and its actor."""

from .core import Scheduler

__all__ = ["Scheduler"]
