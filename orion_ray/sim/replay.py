"""Replaying a pod list through a placement policy exactly as the FGD paper's experiment does.

1. pods never leave (times are ignored);
2. the list is shuffled with the seed;
3. pods drawn with replacement from the original list are appended until the next one's per-GPU
   share would take the requested GPUs past ``max_arrived`` % of the cluster's GPUs;
4. pods are placed one at a time; a pod that fits nowhere fails and is not retried;
5. at each arrival the GPU allocation ratio is recorded; the value at x % arrived is the mean ratio
   over the arrivals whose arrived percentage rounds to x.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..policy.placement import PlacementSession, get_policy
from .trace import NodeRow, PodRow, cluster_arrays


def report_points(max_arrived: int) -> list[int]:
    """Arrived percentages reported: every multiple of 10 up to the maximum, plus 95 and 105."""
    pts = set(range(10, max_arrived + 1, 10)) | {p for p in (95, 105) if p <= max_arrived}
    return sorted(pts)


def workload(
    pods: Sequence[PodRow], capacity_milli: int, seed: int, max_arrived: float = 130.0
) -> list[PodRow]:
    """The seeded arrival sequence: the shuffled list, then resampled pods up to ``max_arrived`` %."""
    rng = np.random.default_rng(seed)
    seq = [pods[i] for i in rng.permutation(len(pods))]
    target = max_arrived / 100.0 * capacity_milli
    total = sum(p.req.gpu_milli_total for p in seq)
    while True:
        p = pods[int(rng.integers(len(pods)))]
        # The paper's stopping rule compares the next pod's per-GPU share, not its total.
        if total + p.req.milli > target:
            break
        total += p.req.gpu_milli_total
        seq.append(p)
    return seq


@dataclass
class ReplayResult:
    """One seed's replay: the allocation curve and counts."""

    seed: int
    policy: str
    arrived_pct: np.ndarray  # per arrival, after it
    allocated_pct: np.ndarray  # GPU allocation ratio in %, after each arrival
    placed: int
    failed: int
    seconds: float  # time spent deciding and committing placements
    unallocated: dict = field(default_factory=dict)

    @property
    def decisions_per_s(self) -> float:
        return (self.placed + self.failed) / self.seconds if self.seconds > 0 else float("inf")


def unallocated_at(arrived: np.ndarray, allocated: np.ndarray, points: Sequence[int]) -> dict:
    """Unallocated GPU % at each arrived % point (mean over the arrivals that round to it)."""
    rounded = np.floor(arrived + 0.5)  # half up, as a reader of the paper's plots would round
    out = {}
    for x in points:
        sel = rounded == x
        if sel.any():
            out[str(x)] = float(100.0 - allocated[sel].mean())
        else:
            # No arrival rounds to x (a big pod jumped over it): carry the last value before it.
            before = arrived <= x
            out[str(x)] = float(100.0 - (allocated[before][-1] if before.any() else 0.0))
    return out


def replay(
    nodes: Sequence[NodeRow],
    pods: Sequence[PodRow],
    policy: str,
    seed: int,
    max_arrived: int = 130,
    policy_opts: Optional[dict] = None,
) -> ReplayResult:
    """Replay ``pods`` on an empty cluster of ``nodes`` with ``policy`` for one seed.

    ``policy_opts`` go to ``get_policy``; ``typical="trace"`` stands for the whole pod list (FGD
    gets it by default, as in the paper; Orion learns its mix online unless given it)."""
    arr = cluster_arrays(list(nodes))
    capacity = int(arr.gpu_count.sum()) * 1000
    seq = workload(pods, capacity, seed, max_arrived)
    opts = dict(policy_opts or {})
    opts.setdefault("seed", seed)
    if policy.lower() == "fgd":
        opts.setdefault("typical", "trace")  # the paper's fixed mix: the whole list
    if opts.get("typical") == "trace":
        opts["typical"] = [p.bundle for p in pods]
    pol = get_policy(policy, **opts)
    session = PlacementSession(pol, arr)
    arrived = np.empty(len(seq))
    allocated = np.empty(len(seq))
    req_total = alloc_total = 0
    placed = failed = 0
    start = time.perf_counter()
    for i, pod in enumerate(seq):
        pol.observe(pod.bundle)
        choice = session.place(pod.req)
        req_total += pod.req.gpu_milli_total
        if choice is None:
            failed += 1
        else:
            session.commit(choice, pod.req)
            alloc_total += pod.req.gpu_milli_total
            placed += 1
        arrived[i] = 100.0 * req_total / capacity
        allocated[i] = 100.0 * alloc_total / capacity
    seconds = time.perf_counter() - start
    res = ReplayResult(seed, pol.name, arrived, allocated, placed, failed, seconds)
    res.unallocated = unallocated_at(arrived, allocated, report_points(max_arrived))
    return res
