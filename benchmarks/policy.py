"""Benchmark `policy`: the pure admission pass on a trace-sized cluster with a deep queue.

1,000 GPU nodes of the Alibaba openb node list, 100 tenants with quotas and borrowing limits,
10,000 queued workloads drawn from the default pod list (mixed classes; 10% are gangs of 2–4 bundles).
Each cycle builds the live placer from the nodes (as the scheduler does), runs ``plan_cycle``, then
some running work ends and new work arrives so the queue stays at its depth. Reported: admission
decisions per second (workloads considered per second of cycle time) and cycle time p50/p99, next
to a baseline in the same run: the foundation's order (class, then arrival; no quotas, no fair share,
no preemption) through the same placer.

    python -m benchmarks.policy [--nodes 1000] [--queue 10000] [--tenants 100] [--cycles 30]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from orion_ray.policy import NodeView
from orion_ray.policy.admission import (Candidate, PolicySettings, Running, plan_cycle)
from orion_ray.policy.fairshare import FairShare
from orion_ray.policy.live_placement import LivePlacer
from orion_ray.policy.placement import get_policy
from orion_ray.policy.quota import TenantQuota, demand_of
from orion_ray.sim.trace import read_nodes, read_pods

from ._common import median, pct

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "alibaba-openb"
LABEL = "ray.io/accelerator-type"


def cluster(n: int) -> list[NodeView]:
    rows = read_nodes(str(TRACES / "openb_node_list_gpu_node.csv"))[:n]
    out = []
    for r in rows:
        total = {"CPU": r.cpu_milli / 1000, "memory": r.memory_mib * 2**20, "GPU": float(r.gpus)}
        out.append(NodeView(r.name, dict(total), total, {LABEL: r.model} if r.model else {}))
    return out


class Workloads:
    """Random workloads shaped like the trace's pods."""

    def __init__(self, rng: random.Random, tenants: int):
        self.rng, self.tenants, self.seq = rng, tenants, 0
        self.pods = [p.bundle for p in read_pods(str(TRACES / "openb_pod_list_default.csv"))]

    def make(self, now: float) -> Candidate:
        rng = self.rng
        self.seq += 1
        b = rng.choice(self.pods)
        gpu = b.num_gpu * b.gpu_fraction if b.num_gpu else 0.0
        bundle = {"CPU": b.cpu, "memory": b.mem * 2**20, **({"GPU": gpu} if gpu else {})}
        gpu_type = next(iter(b.gpu_types)) if b.gpu_types and len(b.gpu_types) == 1 else None
        n = rng.choice([2, 3, 4]) if rng.random() < 0.1 else 1
        bundles, types = [bundle] * n, [gpu_type] * n
        return Candidate(f"w{self.seq}", f"t{rng.randrange(self.tenants)}",
                         rng.choices(range(5), weights=[1, 2, 5, 2, 1])[0], self.seq, bundles,
                         types, "PACK" if n == 1 else rng.choice(["PACK", "SPREAD"]),
                         demand_of(bundles, types), now, runtime_s=rng.choice([None, 600, 3600]))


def settings(rng: random.Random, tenants: int, nodes: list[NodeView]) -> PolicySettings:
    gpus = sum(n.total.get("GPU", 0) for n in nodes)
    cpus = sum(n.total["CPU"] for n in nodes)
    quotas = {}
    for i in range(tenants):
        share = rng.uniform(0.5, 1.5) / tenants
        quotas[f"t{i}"] = TenantQuota(f"t{i}", rng.choice([1, 1, 2, 4]),
                                      {"gpu": round(gpus * share, 1), "cpu": round(cpus * share)},
                                      {"gpu": round(gpus * share, 1)}, {}, f"org{i % 10}")
    return PolicySettings(tenants=quotas, reserve_after_s=600)


def run(args, baseline: bool) -> dict:
    rng = random.Random(args.seed)
    nodes = cluster(args.nodes)
    gen = Workloads(rng, args.tenants)
    st = settings(rng, args.tenants, nodes) if not baseline else PolicySettings(preemption=False)
    policy = get_policy("orion")
    fair = FairShare(300)
    now = 0.0
    queue = {c.workload_id: c for c in (gen.make(now) for _ in range(args.queue))}
    running: dict[str, Running] = {}
    times, decisions, admitted = [], 0, 0
    cap = {"gpu": sum(n.total.get("GPU", 0) for n in nodes),
           "cpu": sum(n.total["CPU"] for n in nodes)}
    for cycle in range(args.cycles):
        now += 5.0
        t = time.perf_counter()
        held = [h for r in running.values() for h in r.held]
        views = [NodeView(n.node_id, dict(n.free), n.total, n.labels) for n in nodes]
        by = {v.node_id: v for v in views}
        for h in held:
            for k, v in h.bundle.items():
                by[h.node_id].free[k] -= v
        placer = LivePlacer(policy, views, held)
        cands = list(queue.values())
        if baseline:  # the foundation's order: class, then arrival
            cands.sort(key=lambda c: (c.rank, c.seq))
            cands = [Candidate(c.workload_id, "t0", 0, i, c.bundles, c.gpu_types, c.strategy,
                               c.demand, c.queued_since) for i, c in enumerate(cands)]
        plan = plan_cycle(placer, cands, list(running.values()), st, fair, cap, now)
        times.append(time.perf_counter() - t)
        decisions += len(plan.order)
        admitted += len(plan.admitted)
        for c, placed in plan.admitted:
            orig = queue.pop(c.workload_id)
            running[c.workload_id] = Running(c.workload_id, orig.tenant, orig.rank, orig.demand,
                                             placed, now, now + (orig.runtime_s or 3600))
        for victim, _ in plan.preempt:
            running.pop(victim, None)
        for wid in [w for w in running if rng.random() < 0.05]:  # some work ends
            del running[wid]
        while len(queue) < args.queue:
            c = gen.make(now)
            queue[c.workload_id] = c
    return {"decisions_per_s": decisions / sum(times), "cycle_ms_p50": median(times) * 1000,
            "cycle_ms_p99": pct(times, 99) * 1000, "admitted": admitted, "cycles": args.cycles,
            "first_cycle_ms": times[0] * 1000}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--queue", type=int, default=10_000)
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--cycles", type=int, default=30)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    if not TRACES.exists():
        raise SystemExit(f"traces not found at {TRACES}")
    orion = run(args, baseline=False)
    base = run(args, baseline=True)
    print(f"{'':24}{'orion policy':>14}{'baseline':>12}")
    for k in ("decisions_per_s", "cycle_ms_p50", "cycle_ms_p99", "first_cycle_ms", "admitted"):
        print(f"{k:24}{orion[k]:>14.1f}{base[k]:>12.1f}")
    print(json.dumps({"benchmark": "policy", "orion": orion, "baseline": base,
                      "ratio_decisions_per_s": orion["decisions_per_s"] / base["decisions_per_s"],
                      "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
