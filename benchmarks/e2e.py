"""e2e: trivial 1-CPU task workloads through the SDK to a local `orion up`, against plain Ray.

What is measured, on one private `orion up --num-cpus 2` (fresh ORION_HOME, non-default ports):

* Orion: N task workloads (``benchmarks._tasks:started_at``, which returns ``time.time()`` when it
  starts) submitted back to back with ``OrionClient.submit_workload``, run to completion.
  throughput = N / (last ``finished_at`` - time of the first submission);
  submit->running latency = task start - the client's clock right after the POST returned (the ack).
* Baseline, same run, same cluster, one driver (``ray.init(address=...)``): the same function as a
  plain Ray task, each in its own ``placement_group([{"CPU": 1}])``: group created, ``pg.ready()``,
  task launched with ``PlacementGroupSchedulingStrategy``, group removed once the task is done.
  N groups are created back to back; latency = task start - the ``placement_group()`` call.
* Second baseline: the same N as plain Ray tasks with ``num_cpus=1`` and no group at all, launched
  back to back from the driver (what a Ray user gets without any reservation).
* Idle: ``--idle-n`` workloads one at a time (each waited for before the next), Orion and Ray,
  so the latency has no queueing in it. Both sides wait the same way: the next one starts once the
  previous one is seen finished, and the latency is measured by the task's own clock. The headline
  overhead (``p50_overhead_ms``, ``p99_overhead_ms``) is Orion's idle latency percentile minus plain
  Ray's, over the samples of every repeat pooled (``samples`` per side; ≥ 200 by default, so the p99
  is not simply the maximum). Orion's own segments come from its recorded transitions: ack →
  ``starting`` (admitted and reserved) and ack → ``running`` (launched).

``--tracing on`` starts Orion with ``orion.tracing`` on, every span appended to a JSON-lines file;
``--tracing both`` runs everything twice (one `orion up` with tracing off, then one with it on, each
in a process of its own) and
ends with the overheads: burst throughput lost, the same against each run's plain-Ray baseline, and
the idle latency added (the last line is then ``{"benchmark": "e2e-tracing", ...}``).

``--pin`` starts Orion with ``scheduler.pin_single_bundle_tasks`` on: each trivial task is pinned
to the node Orion chose, with no placement group of its own (the plain-Ray baselines are unchanged;
the JSON line says ``"pin": true``).

Each of ``--repeats`` repeats runs all of them (Orion/Ray order alternating); throughputs are medians
over repeats. The last line of stdout is one JSON object (see ../shared/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time

from ._common import add_cluster_args, err, median, orion_up, pct, ts

SPEC = {"workload_type": "task", "function": "benchmarks._tasks:started_at", "resources": {"cpu": 1}}
TERMINAL = ("completed", "failed", "cancelled")


def _wait(client, wid: str, poll_s: float) -> dict:
    while True:
        w = client.get_workload(wid)
        if w["status"] in TERMINAL:
            if w["status"] != "completed":
                raise RuntimeError(f"workload {wid} ended {w['status']}: {w.get('error')}")
            return w
        time.sleep(poll_s)


NAN = float("nan")  # a baseline not measured (--quick)
SUBMIT_RATE: list[float] = []  # per Orion burst: submissions acked per second (the API's ceiling)
# per Orion burst: the backlog left when the last submission was acked, run off per second (the
# execution side's rate on a full cluster, without the API's ingestion in it); nan without backlog
DRAIN_RATE: list[float] = []


def orion_pids() -> list[int]:
    """Pids of Orion's own processes on the cluster: its named actors (scheduler, executor,
    serving manager, autoscaler) and the API's Serve replicas — where Orion's per-workload CPU goes
    (Ray's own processes and the tasks themselves are the same with tracing on or off)."""
    from ray.util.state import list_actors

    pids = set()
    for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000, raise_on_missing_output=False):
        name, cls = a.name or "", a.class_name or ""
        if a.pid and (name.startswith("orion-") or "OrionAPI" in cls):
            pids.add(int(a.pid))
    return sorted(pids)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def orion_burst(client, n: int) -> tuple[float, list[float]]:
    t_first = time.time()
    acks = []
    for _ in range(n):
        h = client.submit_workload(SPEC)
        acks.append((h.workload_id, time.time()))
    SUBMIT_RATE.append(n / (acks[-1][1] - t_first))
    lat, finished = [], []
    for wid, t_ack in acks:  # they finish roughly in order: poll the oldest unfinished one
        w = _wait(client, wid, 0.05)
        lat.append(w["result"] - t_ack)
        finished.append(ts(w["finished_at"]))
    t_last = acks[-1][1]
    backlog = sum(1 for f in finished if f > t_last)
    DRAIN_RATE.append(backlog / (max(finished) - t_last) if backlog >= 10 else float("nan"))
    return n / (max(finished) - t_first), lat


def orion_idle(client, n: int) -> tuple[list[float], list[float], list[float]]:
    """Latencies ack -> task start, and ack -> the 'starting' and 'running' transitions Orion
    recorded (its own segments)."""
    lat, admit, sched = [], [], []
    for _ in range(n):
        h = client.submit_workload(SPEC)
        t_ack = time.time()
        w = _wait(client, h.workload_id, 0.01)
        lat.append(w["result"] - t_ack)
        at = {x["status"]: ts(x["at"]) for x in w["history"]}
        admit.append(at["starting"] - t_ack)
        sched.append(at["running"] - t_ack)
    return lat, admit, sched


def _ray_fns():
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from ._tasks import started_at

    fn = ray.remote(started_at)

    def launch(pg):
        return fn.options(
            num_cpus=1,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0),
        ).remote()

    return ray, placement_group, remove_placement_group, launch


def ray_burst(n: int) -> tuple[float, list[float]]:
    ray, placement_group, remove_placement_group, launch = _ray_fns()
    t_first = time.time()
    waiting = {}  # pg.ready() ref -> (pg, t0)
    for _ in range(n):
        t0 = time.time()
        pg = placement_group([{"CPU": 1}])
        waiting[pg.ready()] = (pg, t0)
    running, lat = {}, []
    while waiting or running:
        done, _ = ray.wait(list(waiting) + list(running), num_returns=1, fetch_local=False)
        for ref in done:
            if ref in waiting:  # group ready: launch its task
                pg, t0 = waiting.pop(ref)
                running[launch(pg)] = (pg, t0)
            else:  # task done: record its start, give the group back
                pg, t0 = running.pop(ref)
                lat.append(ray.get(ref) - t0)
                remove_placement_group(pg)
    return n / (time.time() - t_first), lat


def ray_plain_burst(n: int) -> float:
    """N plain Ray tasks, no group: throughput (the second baseline)."""
    import ray

    from ._tasks import started_at

    fn = ray.remote(started_at).options(num_cpus=1)
    t_first = time.time()
    ray.get([fn.remote() for _ in range(n)])
    return n / (time.time() - t_first)


def ray_idle(n: int) -> list[float]:
    ray, placement_group, remove_placement_group, launch = _ray_fns()
    lat = []
    for _ in range(n):
        t0 = time.time()
        pg = placement_group([{"CPU": 1}])
        ray.get(pg.ready())
        lat.append(ray.get(launch(pg)) - t0)
        remove_placement_group(pg)
    return lat


def ms(x: float) -> float:
    return round(x * 1000, 1)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200, help="workloads per burst (default 200)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--idle-n",
        type=int,
        default=70,
        help="workloads per idle run (default 70: 210 pooled samples over 3 repeats)",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="Orion with scheduler.pin_single_bundle_tasks on (no placement group per task)",
    )
    p.add_argument(
        "--tracing",
        choices=("off", "on", "both"),
        default=os.environ.get("ORION_BENCH_TRACING", "off"),
        help="Orion with orion.tracing on (every span to a JSON-lines file); both: one `orion up` "
        "with it off, then one with it on, and the ratios (env ORION_BENCH_TRACING)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="Orion and plain Ray tasks only (no placement group per Ray task): the Ray-with-groups "
        "baseline takes minutes a repeat and the tracing comparison does not need it",
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="with --tracing both: off/on pairs, each its own `orion up`, in ABBA order (off-on, "
        "on-off, …: a drifting machine weighs on both sides); the overhead is the median over pairs",
    )
    add_cluster_args(p)
    args = p.parse_args()
    if args.tracing != "both":
        args.tracing_on = args.tracing == "on"
        run(args)
        return
    # each mode in a process of its own: Serve's client is cached per process, and a second
    # `orion up` in the same one reached for the first cluster's controller
    argv, skip = [], False
    for a in sys.argv[1:]:  # every option but --tracing and --pairs, passed on to each run
        if skip:
            skip = False
        elif a in ("--tracing", "--pairs"):
            skip = True
        elif not a.startswith(("--tracing=", "--pairs=")):
            argv.append(a)
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for pair in range(max(1, args.pairs)):
        # ABBA: every other pair starts with tracing on, so a drift over the run weighs on both
        for mode in ("off", "on") if pair % 2 == 0 else ("on", "off"):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.e2e", *argv, "--tracing", mode],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            ).stdout
            print(out, end="")
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
    pairs = list(zip(runs["off"], runs["on"]))
    overhead = {
        # throughput lost, and latency added, with every span exported (5 % is the target):
        # per pair, then the median over pairs
        "throughput_overhead": round(
            median([1 - on["orion_per_s"] / off["orion_per_s"] for off, on in pairs]), 4
        ),
        # the same against each run's own plain-Ray tasks (the machine's drift taken out)
        "throughput_overhead_vs_plain_ray": round(
            median(
                [
                    1
                    - (on["orion_per_s"] / on["ray_plain_per_s"])
                    / (off["orion_per_s"] / off["ray_plain_per_s"])
                    for off, on in pairs
                ]
            ),
            4,
        ),
        # Orion's processes' CPU per workload in the bursts: what tracing costs Orion itself,
        # which a drifting machine disturbs far less than the wall clock
        "cpu_per_workload_overhead": round(
            median(
                [on["orion_cpu_ms_per_workload"] / off["orion_cpu_ms_per_workload"] - 1 for off, on in pairs]
            ),
            4,
        ),
        "idle_p50_overhead": round(
            median([on["orion_idle_p50_ms"] / off["orion_idle_p50_ms"] - 1 for off, on in pairs]), 4
        ),
        "pairs": len(pairs),
        "orion_per_s_off": [r["orion_per_s"] for r in runs["off"]],
        "orion_per_s_on": [r["orion_per_s"] for r in runs["on"]],
    }
    print(f"\ntracing on vs off: {json.dumps(overhead)}")
    print(json.dumps({"benchmark": "e2e-tracing", "off": runs["off"], "on": runs["on"], **overhead}))


def run(args: argparse.Namespace) -> dict:
    """One `orion up` (tracing as ``args.tracing_on``), every measurement; prints the table and
    the JSON line, and returns that line's object."""
    from orion_ray.client import OrionClient

    rows = []
    pooled: dict[str, list[float]] = {"orion_idle": [], "ray_idle": [], "admit": [], "sched": []}
    with orion_up(args) as info:
        import ray  # after `orion up` has set Ray's auth mode for this process (read once)

        ray.init(address=info["ray_address"], logging_level=logging.WARNING, log_to_driver=False)
        try:
            with OrionClient() as client:
                err("warm-up ...")  # first run starts the executor actor / the driver's workers
                orion_idle(client, 2)
                if not args.quick:
                    ray_idle(2)
                for r in range(args.repeats):
                    res = {}
                    order = ("orion", "ray") if r % 2 == 0 else ("ray", "orion")
                    for who in order:
                        if who == "ray" and args.quick:
                            res["ray"] = (NAN, [NAN])
                            continue
                        err(f"repeat {r + 1}/{args.repeats}: {who} burst of {args.n} ...")
                        if who == "orion":
                            pids = orion_pids()
                            cpu0 = cpu_s(pids)
                            res[who] = orion_burst(client, args.n)
                            # Orion's CPU per workload: a noisy machine stretches the wall clock,
                            # far less the CPU a workload costs Orion's processes
                            res["orion_cpu_ms"] = (cpu_s(pids) - cpu0) / args.n * 1000
                        else:
                            res[who] = ray_burst(args.n)
                    err(f"repeat {r + 1}/{args.repeats}: plain Ray tasks (no group) x{args.n} ...")
                    res["ray_plain_per_s"] = ray_plain_burst(args.n)
                    for who in order:
                        if who == "ray" and args.quick:
                            res["ray_idle"] = [NAN]
                            continue
                        err(f"repeat {r + 1}/{args.repeats}: {who} idle x{args.idle_n} ...")
                        if who == "orion":
                            res["orion_idle"], res["admit"], res["sched"] = orion_idle(client, args.idle_n)
                        else:
                            res["ray_idle"] = ray_idle(args.idle_n)
                    for k in pooled:
                        pooled[k] += res[k]
                    row = {
                        "orion_per_s": res["orion"][0],
                        "orion_submit_per_s": SUBMIT_RATE[-1],
                        "orion_drain_per_s": DRAIN_RATE[-1],
                        "ray_per_s": res["ray"][0],
                        "ray_plain_per_s": res["ray_plain_per_s"],
                        "orion_cpu_ms_per_workload": res["orion_cpu_ms"],
                    }
                    for q in (50, 99):
                        for who in ("orion", "ray"):
                            row[f"{who}_burst_p{q}"] = pct(res[who][1], q)
                            row[f"{who}_idle_p{q}"] = pct(res[who + "_idle"], q)
                        row[f"sched_p{q}"] = pct(res["sched"], q)
                        row[f"admit_p{q}"] = pct(res["admit"], q)
                    row["ratio"] = row["orion_per_s"] / row["ray_per_s"]
                    for q in (50, 99):
                        row[f"idle_overhead_p{q}"] = row[f"orion_idle_p{q}"] - row[f"ray_idle_p{q}"]
                        row[f"burst_overhead_p{q}"] = row[f"orion_burst_p{q}"] - row[f"ray_burst_p{q}"]
                    rows.append(row)
                    err(f"  {json.dumps({k: round(v, 4) for k, v in row.items()})}")
        finally:
            ray.shutdown()
        spans_file = os.path.join(info["home"], "spans.jsonl")  # proof the spans were made
        n_spans = sum(1 for _ in open(spans_file)) if os.path.exists(spans_file) else 0

    med = {k: median([row[k] for row in rows]) for k in rows[0]}
    # idle latencies: percentiles over every repeat's samples pooled (the headline)
    pooled_pct = {f"{k}_p{q}": pct(v, q) for k, v in pooled.items() for q in (50, 99)}
    samples = len(pooled["orion_idle"])
    print(
        f"\ne2e: {args.n} workloads per burst, {args.idle_n} at idle, {args.repeats} repeats, "
        f"{args.num_cpus:g} CPUs{', Orion with pinned tasks' if args.pin else ''}; "
        "medians over repeats (per-repeat values in brackets)"
    )
    print(f"{'':34}{'Orion':>12}{'plain Ray':>12}{'Orion - Ray':>14}")

    def line(label, o, r, d=None, fmt=ms):
        print(
            f"{label:34}{fmt(med[o]):>12}{fmt(med[r]):>12}"
            + (f"{fmt(med[d]):>14}" if d else "")
            + "   ["
            + ", ".join(str(fmt(row[d or o])) for row in rows)
            + "]"
        )

    line("burst throughput (workloads/s)", "orion_per_s", "ray_per_s", fmt=lambda x: round(x, 2))
    print(
        f"{'  ratio Orion / Ray':34}{round(med['ratio'], 3):>12}{'':26}   ["
        + ", ".join(str(round(row["ratio"], 3)) for row in rows)
        + "]"
    )
    line("burst submit->running p50 (ms)", "orion_burst_p50", "ray_burst_p50", "burst_overhead_p50")
    line("burst submit->running p99 (ms)", "orion_burst_p99", "ray_burst_p99", "burst_overhead_p99")
    print(f"{'plain Ray tasks, no group (per s)':34}{'':12}{round(med['ray_plain_per_s'], 2):>12}")
    print(f"{'Orion submissions acked (per s)':34}{round(med['orion_submit_per_s'], 2):>12}")
    print(f"{'Orion backlog run off (per s)':34}{round(med['orion_drain_per_s'], 2):>12}")
    print(f"{'Orion CPU per workload (ms)':34}{round(med['orion_cpu_ms_per_workload'], 3):>12}")
    for q in (50, 99):
        o, r = pooled_pct[f"orion_idle_p{q}"], pooled_pct[f"ray_idle_p{q}"]
        print(
            f"{f'idle submit->running p{q} (ms) *':34}{ms(o):>12}{ms(r):>12}{ms(o - r):>14}"
            f"   ({samples} samples each, pooled)"
        )
    for seg, label in (("admit", "starting"), ("sched", "running")):
        for q in (50, 99):
            print(f"{f'  idle ack->{label} recorded p{q}':34}{ms(pooled_pct[f'{seg}_p{q}']):>12}")
    print(
        "* headline overhead = Orion - Ray at idle (one workload at a time, no queueing); "
        "Orion: ack of the POST -> task start; Ray: placement_group() -> task start"
    )
    out = {
        "benchmark": "e2e",
        "pin": args.pin,
        "tracing": args.tracing_on,
        "spans_exported": n_spans,
        "orion_per_s": round(med["orion_per_s"], 3),
        "ray_per_s": round(med["ray_per_s"], 3),
        "ray_plain_per_s": round(med["ray_plain_per_s"], 3),
        "orion_submit_per_s": round(med["orion_submit_per_s"], 3),
        "orion_drain_per_s": (  # null: no backlog to measure
            round(med["orion_drain_per_s"], 3)
            if med["orion_drain_per_s"] == med["orion_drain_per_s"]
            else None
        ),
        "ratio": round(med["ratio"], 3),
        "p50_overhead_ms": ms(pooled_pct["orion_idle_p50"] - pooled_pct["ray_idle_p50"]),
        "p99_overhead_ms": ms(pooled_pct["orion_idle_p99"] - pooled_pct["ray_idle_p99"]),
        "samples": samples,
        "ack_to_starting_p50_ms": ms(pooled_pct["admit_p50"]),
        "ack_to_starting_p99_ms": ms(pooled_pct["admit_p99"]),
        "ack_to_running_p50_ms": ms(pooled_pct["sched_p50"]),
        "ack_to_running_p99_ms": ms(pooled_pct["sched_p99"]),
        "orion_idle_p50_ms": ms(pooled_pct["orion_idle_p50"]),
        "orion_cpu_ms_per_workload": round(med["orion_cpu_ms_per_workload"], 3),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
