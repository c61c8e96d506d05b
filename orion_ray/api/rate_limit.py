"""Per-tenant request rates (``orion_ray.rate_limit``): kept importable here, where the API took
them first; the serving gate uses the same buckets, and serving must not import the API."""

from ..rate_limit import RateLimiter, TokenBucket

__all__ = ["RateLimiter", "TokenBucket"]
