"""Benchmark `regions` (issue 17): dispatch rate, the control plane's added launch latency, and the
time to redispatch after a region is lost.

1. ``dispatch_per_s``: the dispatch pass of ``benchmarks.regions_policy`` (10 simulated regions,
   10,000 queued, CPU time, median of 5); ``service_dispatch_per_s`` is the control plane's own
   ``dispatch`` (decision + global-quota reservation + assignment, one SQLite transaction each) over
   10 simulated regions, wall time.
2. ``added_p50_ms``: two real local regions (`orion up` each, its own Ray) under a real control
   plane process; the same trivial job submitted ``--n`` times straight to a region and ``--n``
   times through the control plane pinned to that region, alternating; submit → ``running`` as the
   region's store records it, from the client's clock just before the POST (one machine, one
   clock); the difference of the medians.
3. ``redispatch_over_timeout_s``: a run queued in region A (its GPUs taken; B drained for the
   submit, then active again), A's agent stopped (SIGSTOP: A goes silent); from that moment to the
   run ``running`` in B, minus ``region_lost_timeout``.

    python -m benchmarks.regions [--n 15] [--skip-live]

It reuses the region tests' helpers (``tests/regions/live.py``) to start the processes.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.regions_policy import make_regions, make_runs
from orion_ray.control_plane.service import ControlPlane
from orion_ray.policy.region_state import Heartbeat
from orion_ray.policy.regions import Blocklist, plan_dispatch
from orion_ray.store.sqlite import SQLiteStore


def policy_rate(queue: int = 10_000, regions: int = 10, repeats: int = 5) -> float:
    """Decisions/s of the dispatch pass (CPU time, median)."""
    rng = random.Random(17)
    views = make_regions(regions, rng)
    runs = make_runs(queue, views, rng)
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        plan_dispatch(runs, views, blocklist=Blocklist(), now=1.0)
        times.append(time.thread_time() - t0)
    return queue / statistics.median(times)


def service_rate(n: int = 2000, regions: int = 10) -> float:
    """``ControlPlane.dispatch`` calls/s, each durable, over ``regions`` simulated regions."""
    rng = random.Random(17)
    views = make_regions(regions, rng)
    runs = make_runs(n, views, rng)
    with tempfile.TemporaryDirectory() as d:
        plane = ControlPlane(SQLiteStore(str(Path(d) / "cp.db")))
        for v in views:
            plane.add_region(v.name)
            hb = Heartbeat(
                labels=v.labels, free_gpus=v.free_gpus, free_cpus=v.free_cpus, queue_depth=v.queue_depth
            )
            plane.heartbeat(v.name, hb)
            if v.state != "active":
                plane.set_region_state(v.name, v.state)
        t0 = time.perf_counter()
        for r in runs:
            try:
                plane.dispatch(r)
            except Exception:  # 429: no region for this one (still a decision)
                pass
        return n / (time.perf_counter() - t0)


def _running_at(db: Path, wid: str) -> float | None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        row = c.execute(
            "SELECT MIN(at) FROM transitions WHERE workload_id=? AND status='running'", (wid,)
        ).fetchone()
    return row[0] if row and row[0] is not None else None


def live_figures(n: int) -> dict[str, Any]:
    """The two figures that need real regions (about three minutes on two cores)."""
    from tests.live_orion import free_port
    from tests.regions.live import (
        LOST_TIMEOUT_S,
        pause,
        resume,
        start_region,
        stop_home,
        stop_region,
        wait_for,
    )
    from tests.regions.live import (
        ControlPlane as CpProc,
    )

    root = Path(tempfile.mkdtemp(prefix="orion-bench-regions-"))
    cp = CpProc(root / "cp", free_port())
    cp.up()
    regions: dict[str, Any] = {}
    try:  # one after the other: two Ray heads starting at once overrun Ray's bounds here
        for nm in ("b-east", "b-west"):
            regions[nm] = start_region(nm, root / nm, cp.url, cp.home, {})
    except BaseException:
        for nm in ("b-east", "b-west"):
            stop_home(root / nm)
        cp.down()
        raise
    job = {
        "workload_type": "job",
        "entrypoint": "true",
        "resources": {"cpu": 0.5},
        "metadata": {"tenant_id": "acme"},
    }
    east = regions["b-east"]
    db = east.home / "orion.db"
    direct, through = [], []
    try:
        for _ in range(n):
            with east.client() as c:
                t0 = time.time()
                wid = c.post("/api/v1/workloads", json=job).json()["workload_id"]
            direct.append(wait_for(lambda w=wid: _running_at(db, w), within_s=120) - t0)
            t0 = time.time()
            rid = cp.submit({**job, "region": "b-east"}).json()["workload_id"]
            copy = wait_for(lambda r=rid: (cp.run(r)["copies"] or [None])[0], every_s=0.05, within_s=120)
            wid = copy["region_workload_id"]
            through.append(wait_for(lambda w=wid: _running_at(db, w), within_s=120) - t0)
        # loss: fill east's GPUs, queue a run there (east preferred), silence east
        with east.client() as c:
            c.post(
                "/api/v1/workloads",
                json={**job, "entrypoint": "sleep 120", "resources": {"cpu": 0.5, "gpu": 2}},
            )
        wait_for(lambda: cp.region("b-east")["free_gpus"].get("gpu") == 0, within_s=120)
        body = {**job, "resources": {"cpu": 0.5, "gpu": 1}, "regions": ["b-east", "b-west"]}
        cp.set_state("b-west", "draining")  # a region that fits wins over one that queues
        rid = cp.submit(body).json()["workload_id"]
        cp.set_state("b-west", "active")
        wait_for(lambda: cp.run(rid)["status"] == "queued", within_s=120)
        agent = east.agent_pid()
        t_loss = time.time()
        pause(agent)
        moved = wait_for(
            lambda: next((c for c in cp.run(rid)["copies"] if c["region"] == "b-west"), None), every_s=0.1
        )
        west_db = regions["b-west"].home / "orion.db"
        t_run = wait_for(lambda: _running_at(west_db, moved["region_workload_id"]), every_s=0.1)
        resume(agent)
    finally:
        for r in regions.values():
            stop_region(r)
        cp.down()
    return {
        "direct_p50_ms": round(statistics.median(direct) * 1000, 1),
        "through_p50_ms": round(statistics.median(through) * 1000, 1),
        "added_p50_ms": round((statistics.median(through) - statistics.median(direct)) * 1000, 1),
        "redispatch_s": round(t_run - t_loss, 2),
        "redispatch_over_timeout_s": round(t_run - t_loss - LOST_TIMEOUT_S, 2),
        "region_lost_timeout_s": LOST_TIMEOUT_S,
        "n": n,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=15, help="submissions each way for the added latency")
    p.add_argument("--skip-live", action="store_true", help="only the dispatch rates (no processes)")
    a = p.parse_args()
    out: dict[str, Any] = {"benchmark": "regions"}
    out["dispatch_per_s"] = round(policy_rate())
    out["service_dispatch_per_s"] = round(service_rate())
    print(
        f"dispatch pass: {out['dispatch_per_s']:,}/s; "
        f"ControlPlane.dispatch: {out['service_dispatch_per_s']:,}/s"
    )
    if not a.skip_live:
        live = live_figures(a.n)
        out.update(live)
        print(
            f"submit→running p50: straight {live['direct_p50_ms']} ms, through the control plane "
            f"{live['through_p50_ms']} ms (added {live['added_p50_ms']} ms); redispatch "
            f"{live['redispatch_s']} s after the loss = timeout + {live['redispatch_over_timeout_s']} s"
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
