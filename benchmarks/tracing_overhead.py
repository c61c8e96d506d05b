"""tracing_overhead: Orion's own cost per workload with tracing off and on, in one process, no Ray.

The REST app (TestClient, store access as a Serve replica has it) and the scheduler over the
in-memory ``FakeRuntime``: each repeat submits N workloads through ``POST /api/v1/workloads``, admits
them, runs each to completion and reads each back (``GET``). Repeats alternate off / on (every span
of the API request, submit, admission, placement and run written to a JSON-lines file), so the
machine's drift falls on both; the figure is the ratio of the medians, of wall time and of the
process's CPU time (all threads: the batch processor's writes count). This is the part of the
``e2e`` path tracing adds to (Ray's side is the same either way); ``python -m benchmarks.e2e
--tracing both`` measures it end to end on a real cluster. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

from ._common import err, median


def one_repeat(n: int, traced: bool, workdir: str) -> tuple[float, float]:
    """Wall and CPU seconds (the process's, every thread's) for ``n`` workloads through submit →
    run → read back. A traced repeat stops its clocks once its spans are written
    (``tracing.flush``): a write moved to the batch processor's thread is still counted."""
    from fastapi.testclient import TestClient

    from orion_ray import tracing
    from orion_ray.api.app import build_app
    from orion_ray.api.auth import KeyRing, hash_key
    from orion_ray.api.store_access import StoreAccess
    from orion_ray.config import PolicyConfig, SchedulerConfig
    from orion_ray.observability_config import TracingConfig
    from orion_ray.runtime.fake import FakeRuntime, fake_node
    from orion_ray.scheduler import Scheduler
    from orion_ray.store import SQLiteStore

    tag = f"{'on' if traced else 'off'}-{time.monotonic_ns()}"
    path = os.path.join(workdir, f"{tag}.db")
    if traced:
        tracing.setup(
            TracingConfig(enabled=True, exporter="file", path=os.path.join(workdir, f"{tag}.jsonl")),
            service="bench",
        )
    else:
        tracing.shutdown()

    async def run() -> tuple[float, float]:
        rt = FakeRuntime([fake_node(f"n{i}", gpus=0, cpus=64) for i in range(4)])
        sched = Scheduler(SQLiteStore(path), rt, SchedulerConfig(), PolicyConfig())
        access = StoreAccess(path, max_queue_size=100_000)
        client = TestClient(build_app(KeyRing([hash_key("k")]), backend=sched, access=access))
        head = {"Authorization": "Bearer k"}
        body = {"workload_type": "task", "function": "math:factorial", "resources": {"cpu": 1}}
        t0, c0 = time.perf_counter(), time.process_time()
        wids = [
            client.post("/api/v1/workloads", json=body, headers=head).json()["workload_id"] for _ in range(n)
        ]
        sched.ingest.pull()
        sched.run_cycle()
        for _ in range(2000):  # let the drivers launch
            if all(sched.active.get(w) is None or sched.active[w].status.value == "running" for w in wids):
                break
            await asyncio.sleep(0)
        for w in wids:
            rt.complete(w, result=1)
        for _ in range(5000):
            if not any(w in sched.active for w in wids):
                break
            await asyncio.sleep(0)
        for w in wids:
            assert client.get(f"/api/v1/workloads/{w}", headers=head).json()["status"] == "completed"
        tracing.flush()  # every span of the repeat on disk (a no-op when off)
        took = time.perf_counter() - t0, time.process_time() - c0
        client.close()
        access.close()
        sched.store.close()
        return took

    try:
        return asyncio.run(run())
    finally:
        tracing.shutdown()


def per_span(n: int = 5000, rounds: int = 9) -> dict[str, float]:
    """CPU microseconds a span, best of ``rounds`` rounds of ``n``: a request-like span
    (``tracing.span``, the SDK's) and a workload-phase span (``tracing.record``), with the exporter
    ``none`` (only making the span: what stays on the calling thread) and ``file`` (the batch
    thread's encoding and write counted too: each round ends with a flush)."""
    from orion_ray import tracing
    from orion_ray.observability_config import TracingConfig

    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    phase = dict(outcome="completed", worker_id="w1", note="ok", workload_id="w-1", tenant_id="alice")

    def records() -> None:
        for i in range(n):
            tracing.record("orion.run", parent=tp, own=tracing.derive(tp, i), start=1.0, end=2.0, **phase)

    def spans() -> None:
        for _ in range(n):
            with tracing.span("orion.submit", tenant_id="alice", workload_type="task") as s:
                s.set_attribute("orion.workload_id", "w-1")

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="orion-trace-bench-") as workdir:
        for exporter in ("none", "file"):
            path = os.path.join(workdir, "spans.jsonl")
            tracing.setup(TracingConfig(enabled=True, exporter=exporter, path=path), service="bench")
            for name, f in (("span", spans), ("record", records)):
                best = float("inf")
                for _ in range(rounds):
                    c0 = time.process_time()
                    f()
                    tracing.flush()
                    best = min(best, time.process_time() - c0)
                out[f"{name}_{exporter}_us"] = round(best / n * 1e6, 1)
            tracing.shutdown()
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.tracing_overhead", description=__doc__.split("\n")[0]
    )
    p.add_argument("--n", type=int, default=200, help="workloads per repeat")
    p.add_argument("--repeats", type=int, default=7, help="repeats per side (alternating)")
    p.add_argument(
        "--per-span", action="store_true", help="only the CPU a span costs, per helper and exporter"
    )
    args = p.parse_args()
    if args.per_span:
        print(json.dumps({"benchmark": "tracing_per_span", **per_span()}))
        return
    times: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="orion-trace-bench-") as workdir:
        one_repeat(20, False, workdir)  # warm-up: imports, first connections
        one_repeat(20, True, workdir)
        for r in range(args.repeats):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                wall, used = one_repeat(args.n, mode == "on", workdir)
                times[mode].append(wall)
                cpu[mode].append(used)
                err(f"repeat {r + 1}/{args.repeats} {mode}: {wall:.3f} s, cpu {used:.3f} s")
        spans = sum(1 for f in os.listdir(workdir) if f.endswith(".jsonl"))
    off, on = median(times["off"]), median(times["on"])
    cpu_off, cpu_on = median(cpu["off"]), median(cpu["on"])
    print(f"\n{args.n} workloads (submit, run, read back), medians of {args.repeats} alternating repeats")
    print(f"tracing off {off:.3f} s ({args.n / off:.1f}/s), on {on:.3f} s ({args.n / on:.1f}/s)")
    print(f"overhead {100 * (on / off - 1):.1f} % wall")
    # CPU: what a shared machine disturbs less, and what an actor's throughput is bound by
    print(f"cpu off {cpu_off:.3f} s, on {cpu_on:.3f} s: overhead {100 * (cpu_on / cpu_off - 1):.1f} %")
    print(
        json.dumps(
            {
                "benchmark": "tracing_overhead",
                "n": args.n,
                "repeats": args.repeats,
                "off_s": round(off, 4),
                "on_s": round(on, 4),
                "ratio": round(on / off, 4),
                "overhead": round(on / off - 1, 4),
                "cpu_off_s": round(cpu_off, 4),
                "cpu_on_s": round(cpu_on, 4),
                "cpu_ratio": round(cpu_on / cpu_off, 4),
                "traced_repeats": spans,
            }
        )
    )


if __name__ == "__main__":
    main()
