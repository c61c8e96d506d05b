"""A model's replica count from its GPUs' utilisation, beside Serve's ongoing-requests policy
(pure: the caller passes the readings, the clock and the previous hold).

Each replica reports the mean NVML utilisation of the GPUs it holds (where a device reports; a
replica without one reports nothing). The GPU signal asks for the replicas that would bring the
mean to the target (``ceil(current × mean / target)``, as Kubernetes' HPA sizes on a utilisation
target). It only ever adds to what the requests policy decides, and what it added is held for
Serve's downscale delay after it last asked, so a dip in utilisation does not drop a replica it
just brought up (no flapping); scaling down below that stays the requests policy's, with its own
delays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional


def replicas_for(current: int, utilizations: Iterable[float], target: float) -> Optional[int]:
    """Replicas that bring the mean utilisation (percent) of ``current`` replicas to ``target``
    percent; None without a reading (no device reports: the GPU signal abstains)."""
    vals = [float(u) for u in utilizations if 0.0 <= float(u) <= 100.0]
    if not vals or current <= 0 or target <= 0:
        return None
    mean = sum(vals) / len(vals)
    return max(1, math.ceil(current * mean / target - 1e-9))


@dataclass(frozen=True)
class Hold:
    """Replicas the GPU signal asked for, kept until ``until``."""

    replicas: int
    until: float


def decide(
    requests: int, gpu: Optional[int], *, lo: int, hi: int, now: float, hold: Optional[Hold], hold_s: float
) -> tuple[int, Optional[Hold]]:
    """The replicas to run (the larger signal, within ``[lo, hi]``) and the hold to keep."""
    live = hold if hold is not None and now < hold.until else None
    if gpu is not None and (live is None or gpu >= live.replicas):
        live = Hold(gpu, now + hold_s)  # asked again at least as much: held from now
    want = max(int(requests), live.replicas if live is not None else 0)
    return max(lo, min(hi, want)), live
