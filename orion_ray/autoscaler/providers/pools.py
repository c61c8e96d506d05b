"""A worker pool as the EC2 provider reads it: ``PoolConfig`` is the model layer's ``Ec2Pool``
(``orion_ray.worker_pools``: one typed pool for every part, its launch fields required here), and
``parse_pool``/``parse_pools`` validate it with the field and the reason of each problem
(``ConfigError``, a 4xx), never a crash later in the middle of a launch."""

from __future__ import annotations

from ...worker_pools import DEFAULT_LAUNCH_BUDGET_S, Ec2Pool, RayStart, parse_pool, parse_pools

PoolConfig = Ec2Pool

__all__ = ["DEFAULT_LAUNCH_BUDGET_S", "PoolConfig", "RayStart", "parse_pool", "parse_pools"]
