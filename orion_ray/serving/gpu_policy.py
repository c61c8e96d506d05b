"""Serve's autoscaling policy for a model with ``autoscaling.target_gpu_utilization``: Serve's own
ongoing-requests policy, raised by the GPU signal of ``policy/autoscale_gpu.py`` (docs/serving.md).

Serve's controller instantiates the class with ``policy_kwargs`` (Ray 2.60's custom autoscaling
policies) and calls it every control-loop period with an ``AutoscalingContext``; the replicas'
readings arrive as the custom metric ``gpu_utilization`` (``record_autoscaling_stats`` of
``serve_apps.llm.replica.GpuMeteredReplica``), aggregated per replica over Serve's look-back
window.
"""

from __future__ import annotations

import time
from typing import Any

from ..policy.autoscale_gpu import Hold, decide, replicas_for

METRIC = "gpu_utilization"
_STATE = "orion_gpu_hold"


class GpuUtilizationPolicy:
    """``target_gpu_utilization``: percent (0, 100]."""

    def __init__(self, target_gpu_utilization: float):
        if not 0 < float(target_gpu_utilization) <= 100:
            raise ValueError(f"target_gpu_utilization must be in (0, 100], got {target_gpu_utilization}")
        self.target = float(target_gpu_utilization)

    def __call__(self, ctx: Any) -> tuple[int, dict]:
        from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

        requests, state = replica_queue_length_autoscaling_policy(ctx)
        readings = (ctx.aggregated_metrics or {}).get(METRIC) or {}
        gpu = replicas_for(ctx.current_num_replicas, readings.values(), self.target)
        raw = (ctx.policy_state or {}).get(_STATE)
        hold = Hold(int(raw[0]), float(raw[1])) if raw else None
        now = ctx.current_time if ctx.current_time is not None else time.time()
        n, hold = decide(
            int(requests),
            gpu,
            lo=ctx.capacity_adjusted_min_replicas,
            hi=ctx.capacity_adjusted_max_replicas,
            now=now,
            hold=hold,
            hold_s=float(getattr(ctx.config, "downscale_delay_s", 600.0) or 0.0),
        )
        return n, {**(state or {}), _STATE: [hold.replicas, hold.until] if hold is not None else None}
