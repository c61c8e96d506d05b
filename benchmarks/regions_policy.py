"""Benchmark `regions` (dispatch part): the control plane's pure dispatch over simulated regions.

10 regions (mixed GPU types, labels, prices, some draining, a few blocked) and a queue of 10,000
runs (mixed tenants, sizes, GPU types, pins, selectors, preferences). One *decision* is one run
given a region or left waiting; a pass is ``plan_dispatch`` over the whole queue (capacity deducted
as it goes), and ``decide`` (with every region's reasons, as ``explain`` shows them) is timed
apart, one run at a time. Work is measured as CPU time of this thread (``--clock cpu``; the machines
this runs on are shared) and every figure is the median of ``--repeats`` passes. The last line is
JSON with ``dispatch_per_s`` (the pass) and ``explain_per_s`` (one ``decide`` each).

    python -m benchmarks.regions_policy [--regions 10] [--queue 10000] [--repeats 5] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Callable

from orion_ray.policy.regions import Blocklist, RegionView, RunRequest, decide, plan_dispatch

GPU_TYPES = ("A100", "H100", "L4")


def make_regions(n: int, rng: random.Random) -> list[RegionView]:
    out = []
    for i in range(n):
        types = rng.sample(GPU_TYPES, rng.randint(1, 3))
        out.append(
            RegionView(
                name=f"region-{i}",
                state="draining" if i % 7 == 6 else "active",
                labels={"data": rng.choice(("us", "eu", "ap")), "tier": rng.choice(("gold", "std"))},
                free_gpus={t: float(rng.randint(0, 64)) for t in types},
                free_cpus=float(rng.randint(256, 4096)),
                queue_depth=rng.randint(0, 200),
                launch_failures=rng.choice((0, 0, 0, 1, 3)),
                gpu_price={t: round(rng.uniform(1.0, 6.0), 2) for t in types},
                cpu_price=0.05,
                allowed_tenants=frozenset() if i % 5 else frozenset(f"t{k}" for k in range(10)),
            )
        )
    return out


def make_runs(n: int, regions: list[RegionView], rng: random.Random) -> list[RunRequest]:
    names = [r.name for r in regions]
    out = []
    for i in range(n):
        gpu = rng.random() < 0.7
        roll = rng.random()
        out.append(
            RunRequest(
                run_id=f"run-{i}",
                tenant_id=f"t{rng.randint(0, 19)}",
                gpus=float(rng.choice((1, 1, 2, 4, 8))) if gpu else 0.0,
                gpu_type=rng.choice(GPU_TYPES + (None,)) if gpu else None,
                cpus=float(rng.choice((1, 4, 16, 144))),
                region=rng.choice(names) if roll < 0.05 else None,
                region_selector={"data": rng.choice(("us", "eu"))} if 0.05 <= roll < 0.25 else {},
                preference=tuple(rng.sample(names, 3)) if roll > 0.6 else (),
            )
        )
    return out


def timed(fn: Callable[[], object], clock: Callable[[], float]) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regions", type=int, default=10)
    p.add_argument("--queue", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--explain-sample", type=int, default=2000)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    a = p.parse_args()
    clock = time.thread_time if a.clock == "cpu" else time.perf_counter
    rng = random.Random(17)
    regions = make_regions(a.regions, rng)
    runs = make_runs(a.queue, regions, rng)
    blocks = Blocklist()
    for r in regions[:2]:
        blocks = blocks.block(r.name, kind="throttled", gpu_type="H100", now=0.0)
    sample = runs[: a.explain_sample]
    passes, explains = [], []
    for _ in range(a.repeats):
        passes.append(timed(lambda: plan_dispatch(runs, regions, blocklist=blocks, now=1.0), clock))
        explains.append(timed(lambda: [decide(r, regions, blocklist=blocks, now=1.0) for r in sample], clock))
    decisions = plan_dispatch(runs, regions, blocklist=blocks, now=1.0)
    placed = sum(d.region is not None and not d.queued for d in decisions)
    queued = sum(d.queued for d in decisions)
    pass_s = statistics.median(passes)
    explain_s = statistics.median(explains)
    print(f"regions={a.regions} queue={a.queue} clock={a.clock} repeats={a.repeats}")
    print(f"pass: {pass_s * 1000:.1f} ms median → {a.queue / pass_s:,.0f} decisions/s")
    print(f"placed {placed}, queued {queued}, waiting {a.queue - placed - queued}")
    print(f"decide with reasons: {len(sample) / explain_s:,.0f}/s")
    print(
        json.dumps(
            {
                "benchmark": "regions",
                "dispatch_per_s": round(a.queue / pass_s),
                "explain_per_s": round(len(sample) / explain_s),
                "pass_ms": round(pass_s * 1000, 1),
                "regions": a.regions,
                "queue": a.queue,
                "placed": placed,
                "queued": queued,
                "clock": a.clock,
            }
        )
    )


if __name__ == "__main__":
    main()
