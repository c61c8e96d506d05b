"""Queue positions and estimated start/completion, from the same policy code as the cycle.

The order is the policy's (class, deadline, fair share, submission); the estimate is a forward
simulation (``policy.forecast``) over the live placer, cached for ``FORECAST_TTL_S`` and for as long
as no workload changed status.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

from ..models import Workload
from ..policy.admission import Candidate, static_order
from ..policy.forecast import forecast
from ..status import Status
from . import policy_bridge as bridge

if TYPE_CHECKING:
    from .core import Scheduler

FORECAST_TTL_S = 1.0
HORIZON = 500  # workloads beyond this position get no estimate (the simulation is O(queue²))


def ordered(s: "Scheduler", extra: Optional[Workload] = None,
            nodes: Optional[list] = None) -> list[Candidate]:
    """Every queued workload (and ``extra``) in the order the policy would consider them.
    Shares need only the cluster's totals: ``nodes`` as the runtime reports them."""
    cands = [bridge.candidate(s, w) for w in s.active.values() if w.status == Status.QUEUED]
    if extra is not None:
        cands.append(bridge.candidate(s, extra))
    nodes = s._nodes() if nodes is None else nodes
    return static_order(cands, s.fair, s.policy, bridge.capacity(nodes))


def estimates(s: "Scheduler", extra: Optional[Workload] = None
              ) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """``{workload_id: (estimated_start, estimated_completion)}`` (unix seconds or ``None``)."""
    cached = s._forecast
    if extra is None and cached is not None and cached[1] == s._version \
            and time.monotonic() - cached[0] < FORECAST_TTL_S:
        return cached[2]
    now = s.clock()
    placer = s._placer()
    running = bridge.running_items(s, now)
    order = ordered(s, extra, placer.nodes)
    got = forecast(placer, order, running, s.policy.tenants, now,
                   s.policy_config.default_runtime_s, horizon=HORIZON,
                   extra_usage=s.serving_usage)
    for c in order:
        w = s.active.get(c.workload_id)
        if w is not None and w.not_before > now and c.workload_id in got:  # backing off
            start, end = got[c.workload_id]
            if start is not None and start < w.not_before:
                got[c.workload_id] = (w.not_before, end + (w.not_before - start))
    if extra is None:
        s._forecast = (time.monotonic(), s._version, got)
    else:
        s._cands.pop(extra.workload_id, None)
    return got
