"""Queue positions and estimated start/completion, from the same policy code as the cycle.

The order is the policy's (class, deadline, fair share, submission); the estimate is a forward
simulation (``policy.forecast``) over the live placer, cached for ``FORECAST_TTL_S`` and for as long
as no workload changed status.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional

from ..models import Workload
from ..policy.admission import Candidate, static_order
from ..policy.forecast import forecast
from . import policy_bridge as bridge

if TYPE_CHECKING:
    from .core import Scheduler

FORECAST_TTL_S = 1.0
ACK_FORECAST_SHARE = 0.1  # acknowledgements spend at most this share of the loop on forecasts
HORIZON = 500  # workloads beyond this position get no estimate (the simulation is O(queue²))


class ForecastCache:
    """The last forecast, valid for ``FORECAST_TTL_S`` while the book's version is unchanged."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entry: Optional[tuple[float, int, dict]] = None
        self._cost_s = 0.0  # how long the last forecast took to compute

    def get(self, version: int) -> Optional[dict]:
        """The cached forecast if it is fresh and nothing changed status since."""
        e = self._entry
        if e is not None and e[1] == version and self.clock() - e[0] < FORECAST_TTL_S:
            return e[2]
        return None

    def put(self, version: int, got: dict, *, cost_s: float) -> None:
        """Keep ``got`` as the forecast of ``version``, which took ``cost_s`` to compute."""
        self._entry = (self.clock(), version, got)
        self._cost_s = cost_s

    def affordable(self, share: float) -> Optional[dict]:
        """The last forecast, whatever changed since, while a new one would take more than
        ``share`` of the time since it was made; ``None`` once a new one is affordable."""
        e = self._entry
        if e is not None and self._cost_s > share * (self.clock() - e[0]):
            return e[2]
        return None


def ordered(
    sched: "Scheduler", extra: Optional[Workload] = None, nodes: Optional[list] = None
) -> list[Candidate]:
    """Every queued workload (and ``extra``) in the order the policy would consider them.
    Shares need only the cluster's totals: ``nodes`` as the runtime reports them."""
    book = sched.book
    cands = [bridge.candidate(book, w) for w in book.queued()]
    if extra is not None:
        cands.append(bridge.candidate(book, extra))
    nodes = sched.schedulable_nodes() if nodes is None else nodes
    return static_order(cands, sched.fair, sched.policy, bridge.capacity(nodes))


def for_ack(sched: "Scheduler", workload_id: str) -> tuple[Optional[float], Optional[float]]:
    """The estimates an acknowledgement carries. A forecast places the whole queue (~1 ms for a
    few queued, ~200 ms at 100 on a busy node); paying it per submission capped a burst at ~5
    acknowledgements a second. So an acknowledgement forecasts anew only while forecasts take at
    most ``ACK_FORECAST_SHARE`` of the time; otherwise it reuses the last one, and a workload that
    forecast has not seen is acknowledged with ``None`` estimates (``GET .../explain`` always
    computes them)."""
    got = sched.forecasts.get(sched.book.version) or sched.forecasts.affordable(ACK_FORECAST_SHARE)
    if got is None:
        got = estimates(sched)
    return got.get(workload_id, (None, None))


def estimates(
    sched: "Scheduler", extra: Optional[Workload] = None
) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """``{workload_id: (estimated_start, estimated_completion)}`` (unix seconds or ``None``)."""
    book = sched.book
    if extra is None:
        cached = sched.forecasts.get(book.version)
        if cached is not None:
            return cached
    began = sched.forecasts.clock()
    now = sched.clock()
    placer = sched.placer()
    running = bridge.running_items(book, now)
    order = ordered(sched, extra, placer.nodes)
    got = forecast(
        placer,
        order,
        running,
        sched.policy.tenants,
        now,
        sched.policy_config.default_runtime_s,
        horizon=HORIZON,
        extra_usage=sched.serving_usage,
    )
    for c in order:
        w = book.active.get(c.workload_id)
        if w is not None and w.not_before > now and c.workload_id in got:  # backing off
            start, end = got[c.workload_id]
            if start is not None and start < w.not_before:
                got[c.workload_id] = (w.not_before, end + (w.not_before - start))
    if extra is None:
        sched.forecasts.put(book.version, got, cost_s=sched.forecasts.clock() - began)
    else:
        book.candidates.pop(extra.workload_id, None)
    return got
