"""Benchmark `policy`: the pure admission pass on a trace-sized cluster with a deep queue.

1,000 GPU nodes of the Alibaba openb node list, 100 tenants with quotas and borrowing limits,
10,000 queued workloads drawn from the default pod list (mixed classes; 10% are gangs of 2–4 bundles).

The scheduler's way (``orion``): one ``CyclePlanner`` kept for the whole run, its engine state updated
by deltas (admissions applied, finished work released), every pass run in slices of ``--slice-ms`` of
work. First the **fill**: a full pass over the queue on the empty cluster. Then **steady** cycles:
some running work ends and new work arrives so the queue stays at its depth, and a full pass runs
(capacity was freed). Last, **delta** passes: arrivals alone, planned over the new workloads only.

In the same run: ``baseline`` — the same planner with the foundation's order (class, then arrival;
no quotas, no fair share, no preemption); and ``legacy`` — the orion policy the way main ran it
before this work (the placer rebuilt every cycle, one unsliced ``plan_cycle``), so the effect of
persistent state and slices is a ratio measured here, not across runs.

A decision is one workload admitted or left waiting by a pass; ``decisions_per_s`` counts full passes
(fill and steady; delta passes apart). A cycle figure is one slice, over every pass (for ``legacy``
one whole pass). Work is planning plus applying the plan to the planner's state, measured
by default as CPU time of the planning thread (``--clock cpu``): the machines this runs on are shared
and a wall clock there mostly measures the neighbours (``--clock wall`` for an idle machine; the live
scheduler slices by wall time). Every figure is the median of ``--repeats`` runs.

    python -m benchmarks.policy [--nodes 1000] [--queue 10000] [--tenants 100] [--cycles 30]
                                [--repeats 3] [--slice-ms 80] [--clock cpu|wall] [--gc freeze|on|off]
                                [--traces DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from orion_ray.policy import NodeView
from orion_ray.policy.admission import Candidate, Plan, PolicySettings, Running, plan_cycle
from orion_ray.policy.cycle import CyclePlanner
from orion_ray.policy.fairshare import FairShare
from orion_ray.policy.live_placement import LivePlacer
from orion_ray.policy.placement import get_policy
from orion_ray.policy.quota import TenantQuota, demand_of
from orion_ray.sim.trace import read_nodes, read_pods

from ._common import median, pct

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "alibaba-openb"
if not TRACES.exists():  # a git worktree of the project sits one level deeper than the main checkout
    TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "alibaba-openb"
LABEL = "ray.io/accelerator-type"
DELTA_CYCLES, DELTA_ARRIVALS = 20, 100


def cluster(traces: Path, n: int) -> list[NodeView]:
    rows = read_nodes(str(traces / "openb_node_list_gpu_node.csv"))[:n]
    out = []
    for r in rows:
        total = {"CPU": r.cpu_milli / 1000, "memory": r.memory_mib * 2**20, "GPU": float(r.gpus)}
        out.append(NodeView(r.name, dict(total), total, {LABEL: r.model} if r.model else {}))
    return out


class Workloads:
    """Random workloads shaped like the trace's pods."""

    def __init__(self, rng: random.Random, tenants: int, traces: Path):
        self.rng, self.tenants, self.seq = rng, tenants, 0
        self.pods = [p.bundle for p in read_pods(str(traces / "openb_pod_list_default.csv"))]

    def make(self, now: float) -> Candidate:
        rng = self.rng
        self.seq += 1
        b = rng.choice(self.pods)
        gpu = b.num_gpu * b.gpu_fraction if b.num_gpu else 0.0
        bundle = {"CPU": b.cpu, "memory": b.mem * 2**20, **({"GPU": gpu} if gpu else {})}
        gpu_type = next(iter(b.gpu_types)) if b.gpu_types and len(b.gpu_types) == 1 else None
        n = rng.choice([2, 3, 4]) if rng.random() < 0.1 else 1
        bundles, types = [bundle] * n, [gpu_type] * n
        return Candidate(
            f"w{self.seq}",
            f"t{rng.randrange(self.tenants)}",
            rng.choices(range(5), weights=[1, 2, 5, 2, 1])[0],
            self.seq,
            bundles,
            types,
            "PACK" if n == 1 else rng.choice(["PACK", "SPREAD"]),
            demand_of(bundles, types),
            now,
            runtime_s=rng.choice([None, 600, 3600]),
        )


def settings(rng: random.Random, tenants: int, nodes: list[NodeView]) -> PolicySettings:
    gpus = sum(n.total.get("GPU", 0) for n in nodes)
    cpus = sum(n.total["CPU"] for n in nodes)
    quotas = {}
    for i in range(tenants):
        share = rng.uniform(0.5, 1.5) / tenants
        quotas[f"t{i}"] = TenantQuota(
            f"t{i}",
            rng.choice([1, 1, 2, 4]),
            {"gpu": round(gpus * share, 1), "cpu": round(cpus * share)},
            {"gpu": round(gpus * share, 1)},
            {},
            f"org{i % 10}",
        )
    return PolicySettings(tenants=quotas, reserve_after_s=600)


class Sim:
    """The queue and the running work around the policy (not timed)."""

    def __init__(self, args: argparse.Namespace, mode: str, traces: Path) -> None:
        self.args, self.mode = args, mode
        self.rng = random.Random(args.seed)
        self.nodes = cluster(traces, args.nodes)
        self.gen = Workloads(self.rng, args.tenants, traces)
        self.st = (
            settings(self.rng, args.tenants, self.nodes)
            if mode != "baseline"
            else PolicySettings(preemption=False)
        )
        self.policy = get_policy("orion")
        self.fair = FairShare(300)
        self.now = 0.0
        self.queue: dict[str, Candidate] = {}
        self.running: dict[str, Running] = {}
        self.cap = {
            "gpu": sum(n.total.get("GPU", 0) for n in self.nodes),
            "cpu": sum(n.total["CPU"] for n in self.nodes),
        }
        self._plain: dict[str, Candidate] = {}
        self.arrive(args.queue)

    def arrive(self, n: int) -> list[Candidate]:
        new = [self.gen.make(self.now) for _ in range(n)]
        for c in new:
            self.queue[c.workload_id] = c
        return [self.as_seen(c) for c in new]

    def as_seen(self, c: Candidate) -> Candidate:
        """The candidate as the mode's policy sees it: the baseline is one tenant, so the order is
        class, then arrival."""
        if self.mode != "baseline":
            return c
        got = self._plain.get(c.workload_id)
        if got is None:
            got = self._plain[c.workload_id] = Candidate(
                c.workload_id,
                "t0",
                c.rank,
                c.seq,
                c.bundles,
                c.gpu_types,
                c.strategy,
                c.demand,
                c.queued_since,
            )
        return got

    def candidates(self) -> list[Candidate]:
        return [self.as_seen(c) for c in self.queue.values()]

    def carry_out(self, plan: Plan) -> list[Running]:
        """Admitted work runs; preempted work stops (its holds are returned)."""
        for c, placed in plan.admitted:
            orig = self.queue.pop(c.workload_id)
            self.running[c.workload_id] = Running(
                c.workload_id,
                orig.tenant,
                orig.rank,
                orig.demand,
                placed,
                self.now,
                self.now + (orig.runtime_s or 3600),
            )
        return [r for r in (self.running.pop(v, None) for v, _ in plan.preempt) if r is not None]

    def end_some(self) -> list[Running]:
        ended = [w for w in self.running if self.rng.random() < 0.05]
        return [self.running.pop(w) for w in ended]

    def refill(self) -> list[Candidate]:
        return self.arrive(self.args.queue - len(self.queue))


CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
clock: Callable[[], float] = time.thread_time


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = clock()
    out = fn()
    return out, clock() - t


def run_planner(args: argparse.Namespace, mode: str, traces: Path) -> dict[str, float]:
    """``orion`` or ``baseline``: a persistent planner, passes in slices."""
    sim = Sim(args, mode, traces)
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    planner = CyclePlanner(clock=clock, slice_s=args.slice_ms / 1000)
    planner.sync(sim.policy, [NodeView(n.node_id, dict(n.free), n.total, n.labels) for n in sim.nodes], [])
    slices: dict[str, list[float]] = {"fill": [], "steady": [], "delta": []}
    passes: dict[str, list[float]] = {"fill": [], "steady": [], "delta": []}
    decisions = {"fill": 0, "steady": 0, "delta": 0}
    first_admission = 0.0

    def one_pass(kind: str, start: Callable[[], Any]) -> None:
        nonlocal first_admission
        _, work = timed(start)  # starting a pass (its copies of the state) counts as work
        mine: list[float] = []
        while planner.busy:
            part, dt = timed(lambda: _slice(planner, sim))
            mine.append(dt + work)
            work = 0.0
            decisions[kind] += len(part.order)
            if kind == "fill" and part.admitted and not first_admission:
                first_admission = sum(mine)
            for r in sim.carry_out(part):
                planner.released(r.held)
        slices[kind] += mine
        passes[kind].append(sum(mine))

    def full() -> Callable[[], Any]:
        # the inputs are the scheduler's to build (it caches candidates): not timed
        sim.fair.advance(sim.now, _allocated(sim.running.values()))
        cands, runs = sim.candidates(), list(sim.running.values())
        return lambda: planner.full(cands, runs, sim.st, sim.fair, sim.cap, sim.now)

    # fill: the whole queue on the empty cluster
    one_pass("fill", full())
    for _ in range(args.cycles):
        sim.now += 5.0
        for r in sim.end_some():
            planner.released(r.held)  # the scheduler does this when a run ends (not timed)
        sim.refill()
        one_pass("steady", full())
    for _ in range(DELTA_CYCLES):
        sim.now += 1.0
        arrivals, runs = sim.arrive(DELTA_ARRIVALS), list(sim.running.values())
        one_pass("delta", lambda a=arrivals, r=runs: planner.delta(a, r, sim.st, sim.fair, sim.cap, sim.now))
    return _figures(slices, passes, decisions, first_admission)


def _slice(planner: CyclePlanner, sim: Sim) -> Plan:
    part = planner.plan_slice()
    planner.apply(part, sim.fair)
    return part


def _allocated(running: Any) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in running:
        u = out.setdefault(r.tenant, {})
        for k, v in r.demand.items():
            u[k] = u.get(k, 0.0) + v
    return out


def run_legacy(args: argparse.Namespace, traces: Path) -> dict[str, float]:
    """The orion policy as main ran it: the placer rebuilt every cycle, one unsliced pass."""
    sim = Sim(args, "legacy", traces)
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    times: list[float] = []
    decisions = 0
    for cycle in range(args.cycles + 1):
        if cycle:
            sim.now += 5.0
            sim.end_some()
            sim.refill()
        t = clock()
        held = [h for r in sim.running.values() for h in r.held]
        views = [NodeView(n.node_id, dict(n.free), n.total, n.labels) for n in sim.nodes]
        by = {v.node_id: v for v in views}
        for h in held:
            for k, v in h.bundle.items():
                by[h.node_id].free[k] -= v
        placer = LivePlacer(sim.policy, views, held)
        sim.fair.advance(sim.now, _allocated(sim.running.values()))
        plan = plan_cycle(
            placer, sim.candidates(), list(sim.running.values()), sim.st, sim.fair, sim.cap, sim.now
        )
        plan.apply_fair_share(sim.fair)
        times.append(clock() - t)
        decisions += len(plan.order)
        sim.carry_out(plan)
    return {
        "decisions_per_s": decisions / sum(times),
        "fill_s": times[0],
        "cycle_p50_ms": median(times) * 1000,
        "cycle_p99_ms": pct(times, 99) * 1000,
        "steady_pass_p50_ms": median(times[1:]) * 1000,
        "steady_pass_p99_ms": pct(times[1:], 99) * 1000,
    }


def _figures(
    slices: dict[str, list[float]],
    passes: dict[str, list[float]],
    decisions: dict[str, int],
    first_admission: float,
) -> dict[str, float]:
    every = slices["fill"] + slices["steady"] + slices["delta"]
    full = slices["fill"] + slices["steady"]
    return {
        # full passes, as before (and as legacy): a delta pass is reported on its own
        "decisions_per_s": (decisions["fill"] + decisions["steady"]) / sum(full),
        "cycle_p50_ms": median(every) * 1000,
        "cycle_p99_ms": pct(every, 99) * 1000,
        "fill_s": sum(slices["fill"]),
        "fill_slice_p99_ms": pct(slices["fill"], 99) * 1000,
        "fill_slice_max_ms": max(slices["fill"]) * 1000,
        "fill_slices": len(slices["fill"]),
        "first_admission_ms": first_admission * 1000,
        "steady_slice_p99_ms": pct(slices["steady"], 99) * 1000,
        "steady_pass_p50_ms": median(passes["steady"]) * 1000,
        "steady_pass_p99_ms": pct(passes["steady"], 99) * 1000,
        "steady_decisions_per_s": decisions["steady"] / sum(slices["steady"]),
        "delta_decisions_per_s": decisions["delta"] / sum(slices["delta"]),
        "delta_pass_p50_ms": median(passes["delta"]) * 1000,
        "delta_pass_p99_ms": pct(passes["delta"], 99) * 1000,
        "max_slice_ms": max(every) * 1000,
    }


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--queue", type=int, default=10_000)
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--cycles", type=int, default=30, help="steady cycles after the fill")
    p.add_argument("--repeats", type=int, default=3, help="runs per mode (figures are medians)")
    p.add_argument("--slice-ms", type=float, default=80.0, help="work per slice")
    p.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="what a slice's and a pass's work is measured with",
    )
    p.add_argument(
        "--gc",
        choices=["on", "off", "freeze"],
        default="freeze",
        help="freeze (default, as the live scheduler does after recovery): the queue's objects are "
        "moved out of the collector's generations once built; off: no cyclic garbage collector; "
        "on: plain (its gen-2 collections over the queue's objects make a slice overrun)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--traces", type=Path, default=TRACES, help="folder with the openb CSV files")
    args = p.parse_args()
    if not args.traces.exists():
        raise SystemExit(f"traces not found at {args.traces} (--traces)")
    global clock
    clock = CLOCKS[args.clock]
    if args.gc == "off":
        gc.disable()
    runs: dict[str, list[dict[str, float]]] = {"orion": [], "baseline": [], "legacy": []}
    for _ in range(args.repeats):  # interleaved, so a noisy minute hits every mode alike
        runs["orion"].append(run_planner(args, "orion", args.traces))
        runs["baseline"].append(run_planner(args, "baseline", args.traces))
        runs["legacy"].append(run_legacy(args, args.traces))
    orion, base, legacy = (medians(runs[k]) for k in ("orion", "baseline", "legacy"))
    print(
        f"medians of {args.repeats} run(s); cycle = one slice of <= {args.slice_ms:g} ms of "
        f"work (legacy: one whole pass); work = {args.clock} time"
    )
    print(f"{'':24}{'orion':>12}{'baseline':>12}{'legacy':>12}")
    for k in orion:
        row = [orion[k], base.get(k, float("nan")), legacy.get(k, float("nan"))]
        print(f"{k:24}" + "".join(f"{v:>12.1f}" for v in row))
    headline = {k: orion[k] for k in ("decisions_per_s", "cycle_p50_ms", "cycle_p99_ms", "fill_s")}
    print(
        json.dumps(
            {
                "benchmark": "policy",
                **headline,
                "orion": orion,
                "baseline": base,
                "legacy": legacy,
                "ratio_decisions_per_s_vs_baseline": orion["decisions_per_s"] / base["decisions_per_s"],
                "ratio_decisions_per_s_vs_legacy": orion["decisions_per_s"] / legacy["decisions_per_s"],
                "ratio_cycle_p99_vs_legacy": orion["cycle_p99_ms"] / legacy["cycle_p99_ms"],
                "ratio_fill_s_vs_legacy": orion["fill_s"] / legacy["fill_s"],
                "repeats": args.repeats,
                "slice_ms": args.slice_ms,
                "clock": args.clock,
                "gc": args.gc,
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
