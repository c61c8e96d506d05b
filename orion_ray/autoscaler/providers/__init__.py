"""Capacity providers: EC2 (reservations, spot with on-demand fallback, zone failover) and the Ray
autoscaler plugin built on it. Importing this package imports neither boto3 nor Ray."""

from .ec2 import EC2Provider, LaunchResult
from .pools import PoolConfig, parse_pool, parse_pools
from .reservations import ReservationManager, ReservationRequest
from .retry import Blocklist, LaunchBudget, backoff_delay
from .sources import Attempt, Reservation, plan_attempts, source_order
from .spot import InterruptionNotice, SpotInterruptionWatcher
from .taxonomy import ErrorKind, InvalidLaunch, LaunchBudgetExceeded, QuotaExceeded, classify

__all__ = [
    "EC2Provider",
    "LaunchResult",
    "PoolConfig",
    "parse_pool",
    "parse_pools",
    "ReservationManager",
    "ReservationRequest",
    "Blocklist",
    "LaunchBudget",
    "backoff_delay",
    "Attempt",
    "Reservation",
    "plan_attempts",
    "source_order",
    "InterruptionNotice",
    "SpotInterruptionWatcher",
    "ErrorKind",
    "InvalidLaunch",
    "LaunchBudgetExceeded",
    "QuotaExceeded",
    "classify",
]
